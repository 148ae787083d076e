//! The live dashboard page in headless Chromium.

use crate::common::*;
use crate::support::*;

/// Debian's Chromium, headless (`scripts/setup.sh` installs it): `args` then `url`; stdout.
fn chromium(args: &[&str], url: &str) -> String {
    let chromium = std::path::Path::new("/usr/bin/chromium");
    assert!(
        chromium.exists(),
        "chromium is missing: run scripts/setup.sh (Debian's chromium package)"
    );
    let profile = temp_dir();
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the element with `id` in `dom`.
fn element_text<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom.find(&format!("id=\"{id}\">")).unwrap_or_else(|| panic!("no #{id}")) + id.len() + 6;
    &dom[start..start + dom[start..].find('<').unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_live_figures_in_a_headless_browser() {
    let mock = start_mock("mock").await;
    let gw = Gateway::start(&config(&mock.base_url())).await;
    for (key, model) in [
        (KEY_A, "priced"),
        (KEY_A, "priced"),
        (KEY_A, "free"),
        (KEY_B, "priced"),
        (KEY_B, "priced"),
    ] {
        ask(&gw, key, model).await;
    }
    // The data needs the admin token; the page itself holds none.
    assert_eq!(admin_get(&gw, "/admin/dashboard.json", false).await.status, 401);
    assert_eq!(admin_get(&gw, "/dashboard", false).await.status, 200);

    // What /metrics says was answered (the 5 requests, and the harness's readiness probe).
    let requests: f64 = exposition(&gw)
        .await
        .lines()
        .filter(|l| l.starts_with("tollgate_requests_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(requests >= 5.0);
    let url = format!("http://{}/dashboard#token=admin-token-for-tests", gw.admin);
    let dom = tokio::task::spawn_blocking(move || chromium(&["--virtual-time-budget=4000", "--dump-dom"], &url))
        .await
        .unwrap();
    assert_eq!(element_text(&dom, "requests-total"), requests.to_string(), "{dom}");
    assert_eq!(element_text(&dom, "rejections-total"), "1");
    assert_eq!(element_text(&dom, "errors-total"), "1");
    assert_ne!(element_text(&dom, "tokens-total"), "0");
    assert!(element_text(&dom, "cost-total").ends_with("USD"), "{dom}");
    assert!(element_text(&dom, "latency").ends_with(" ms"), "{dom}");
    // The page's first read has no earlier one to take a window from.
    assert!(dom.contains("<span class=\"window\">since start</span>"), "{dom}");
    let consumers = &dom[dom.find("id=\"consumers\"").unwrap()..dom.find("id=\"usage\"").unwrap()];
    assert!(
        consumers.contains("<td class=\"\">team-a</td><td class=\"n\">3</td>"),
        "{consumers}"
    );
    let usage = &dom[dom.find("id=\"usage\"").unwrap()..];
    assert!(
        usage.contains("team-a") && usage.contains("priced") && usage.contains("team-b"),
        "{usage}"
    );
    let upstreams = &dom[dom.find("id=\"upstreams\"").unwrap()..];
    assert!(upstreams.contains("<td class=\"\">mock</td>"), "{upstreams}");

    // A screenshot renders (docs/dashboard.png is one).
    let shot = temp_dir().join("dashboard.png");
    let arg = format!("--screenshot={}", shot.display());
    let url = format!("http://{}/dashboard#token=admin-token-for-tests", gw.admin);
    tokio::task::spawn_blocking(move || {
        chromium(&["--virtual-time-budget=4000", "--window-size=1280,1500", &arg], &url)
    })
    .await
    .unwrap();
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
}
