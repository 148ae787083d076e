//! Access and audit lines in their own rotated files; conversations logged, redacted.

use crate::common::*;
use crate::support::*;

/// The JSON lines of `name` and its rotated files (`name.1`, `name.2`, ...) in `dir`; every
/// line must parse (no line split by a rotation).
fn lines_of(dir: &std::path::Path, name: &str) -> (Vec<serde_json::Value>, usize) {
    let mut out = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        if file != name && !file.starts_with(&format!("{name}.")) {
            continue;
        }
        // Renamed away by a rotation since the listing: its lines are under the next name.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        files += 1;
        for line in text.lines() {
            out.push(serde_json::from_str(line).unwrap_or_else(|e| panic!("{file}: {e}: {line}")));
        }
    }
    (out, files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_and_audit_lines_go_to_their_own_files_and_rotation_loses_no_line() {
    let mock = start_mock("mock").await;
    let dir = temp_dir();
    let (access, audit) = (dir.join("access.log"), dir.join("audit.log"));
    let (access_s, audit_s) = (access.display().to_string(), audit.display().to_string());
    let flags = [
        "--access-log",
        access_s.as_str(),
        "--audit-log",
        audit_s.as_str(),
        "--log-rotate-kb",
        "4",
        "--log-keep",
        "10000",
    ];
    let gw = Gateway::start_with(&config(&mock.base_url()), &flags).await;
    let mut ids = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let r = ask(&gw, KEY_A, "priced").await;
        assert_eq!(r.status, 200);
        ids.insert(r.request_id());
    }
    let of = |lines: &[serde_json::Value], message: &str| -> Vec<String> {
        let mut v: Vec<String> = lines
            .iter()
            .filter(|l| l["message"] == message && l["model"] == "priced")
            .map(|l| l["request_id"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let expected: Vec<String> = ids.iter().cloned().collect();
    // Until every request's lines are there: a count alone can be met early by a file read twice
    // while the writer renames the rotated ones (`name.1` → `name.2`, ...) under the reader.
    let all_written = eventually(std::time::Duration::from_secs(10), || async {
        of(&lines_of(&dir, "access.log").0, "access") == expected
            && of(&lines_of(&dir, "audit.log").0, "audit") == expected
    })
    .await;
    assert!(all_written, "each line once, none lost, within 10 s");
    let (access_lines, access_files) = lines_of(&dir, "access.log");
    let (audit_lines, audit_files) = lines_of(&dir, "audit.log");
    assert!(
        access_files > 2 && audit_files > 2,
        "rotated: {access_files} and {audit_files} files"
    );
    assert_eq!(
        of(&access_lines, "access"),
        expected,
        "each access line once, none lost"
    );
    assert_eq!(of(&audit_lines, "audit"), expected, "each audit line once, none lost");
    assert!(access_lines.iter().all(|l| l["message"] == "access"));
    assert!(audit_lines.iter().all(|l| l["message"] == "audit"));
    assert!(!gw.log().contains("\"message\":\"access\""), "no access line on stdout");
}

/// `team-b` logs its conversations (and may send 100 requests a minute); `mask-email` masks
/// e-mail addresses in prompts, `no-cards` blocks prompts with card numbers; answers are cached.
fn conversation_config(mock: &str) -> String {
    let cfg = config(mock)
        .replace(
            "[[consumers]]\nname = \"team-b\"",
            "[[guardrails]]\nname = \"mask-email\"\ndetect = \"pii\"\nkinds = [\"email\"]\naction = \"mask\"\n\n\
             [[guardrails]]\nname = \"no-cards\"\ndetect = \"pii\"\nkinds = [\"card\"]\naction = \"block\"\n\n\
             [cache]\n\n\
             [[consumers]]\nname = \"team-b\"\nlog_prompts = true\nlog_answers = true",
        )
        .replace("requests = 1\n", "requests = 100\n");
    assert!(cfg.contains("log_answers = true") && cfg.contains("requests = 100"));
    cfg
}

async fn converse(gw: &Gateway, key: &str, prompt: &str, stream: bool, answer: &[&str]) -> (Resp, serde_json::Value) {
    let body =
        serde_json::json!({"model": "free", "stream": stream, "messages": [{"role": "user", "content": prompt}]});
    let r = gw
        .post(
            "/v1/chat/completions",
            &[
                ("authorization", &format!("Bearer {key}")),
                ("x-mock-reply", &mock_reply(answer)),
            ],
            &body.to_string(),
        )
        .await;
    let audit = gw.log_line("audit", &r.request_id()).await;
    (r, audit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_are_logged_redacted_by_the_maskers() {
    let mock = start_mock("mock").await;
    let dir = models_dir();
    let gw = Gateway::start_with(&conversation_config(&mock.base_url()), &["--models-dir", &dir]).await;
    let answer = ["Sure: I wrote to jane.doe@", "example.com and ", "bob@example.org."];

    // A JSON answer: the prompt as the provider got it, the answer as the client got it (no
    // output rule: the client reads the addresses), both redacted in the log.
    let (r, audit) = converse(
        &gw,
        KEY_B,
        "Write to jane.doe@example.com about the tides",
        false,
        &answer,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("bob@example.org"), "{}", r.text());
    assert!(!mock.requests().last().unwrap().body.contains("jane.doe"));
    let logged = audit["request_body"].as_str().unwrap();
    assert!(logged.contains("Write to [EMAIL] about the tides"), "{logged}");
    assert!(!logged.contains("jane.doe"), "{logged}");
    assert_eq!(audit["answer"], "Sure: I wrote to [EMAIL] and [EMAIL].");

    // A stream: its text, whole, redacted across the chunks an address was cut into.
    let (r, audit) = converse(&gw, KEY_B, "And to the harbour master?", true, &answer).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("data: [DONE]"));
    assert_eq!(audit["answer"], "Sure: I wrote to [EMAIL] and [EMAIL].");
    assert!(audit["request_body"].as_str().unwrap().contains("harbour master"));

    // The same question again: answered from the cache, logged the same way.
    let (r, audit) = converse(&gw, KEY_B, "And to the harbour master?", false, &["not asked"]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-tollgate-cache"), Some("hit"), "{:?}", r.headers);
    assert_eq!(audit["answer"], "Sure: I wrote to [EMAIL] and [EMAIL].");
    gw.access_line(&r.request_id()).await;
    let hits = r#"tollgate_consumer_requests_total{class="2xx",consumer="team-b",model="free",source="cache"}"#;
    assert_eq!(metric(&gw, hits).await, Some(1.0));

    // A prompt blocked for the card it carries is logged, the card number redacted.
    let card = "4111 1111 1111 1111";
    let (r, audit) = converse(&gw, KEY_B, &format!("Charge {card} for the boat"), false, &answer).await;
    assert_eq!(r.status, 400);
    assert_eq!(audit["decision"], "denied");
    let logged = audit["request_body"].as_str().unwrap();
    assert!(logged.contains("Charge [CARD] for the boat"), "{logged}");
    assert!(audit.get("answer").is_none(), "{audit}");

    // A consumer that does not log conversations: neither side in its audit line.
    let (r, audit) = converse(&gw, KEY_A, "Write to jane.doe@example.com", false, &answer).await;
    assert_eq!(r.status, 200);
    assert!(
        audit.get("request_body").is_none() && audit.get("answer").is_none(),
        "{audit}"
    );
    assert!(!gw.log().contains("jane.doe"), "an address reached the log");
}
