//! Prompt tokens counted by the gateway before forwarding: exact with the model's tokenizer
//! (built in or a tokenizer.json file), a marked estimate otherwise.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

mod common;

use common::*;
use tollgate_tokenize::{ChatTemplate, Message, Tokenizer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_tokens_are_counted_exactly_where_a_tokenizer_is_configured() {
    let mock = start_mock("m").await;
    let qwen_file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.models/tokenizers/qwen3.json");
    assert!(qwen_file.exists(), "run scripts/setup.sh to fetch the tokenizer files");
    let config = format!(
        "{}[[tokenizers]]\nname = \"qwen3\"\nfile = \"{}\"\n\n\
         [[models]]\nname = \"gpt-4o\"\ntokenizer = \"o200k\"\ntargets = [{{ provider = \"mock\" }}]\n\n\
         [[models]]\nname = \"qwen\"\ntokenizer = \"qwen3\"\nchat_template = \"chatml\"\ntargets = [{{ provider = \"mock\" }}]\n\n\
         [[models]]\nname = \"plain\"\ntargets = [{{ provider = \"mock\" }}]\n",
        provider("mock", &mock.base_url()),
        qwen_file.display()
    );
    let gw = Gateway::start(&config).await;
    let messages =
        r#"[{"role":"system","content":"Be brief."},{"role":"user","content":"Wie spät ist es in 東京? 🙂"}]"#;
    let msgs = [
        Message {
            role: "system",
            content: "Be brief.",
            name: None,
        },
        Message {
            role: "user",
            content: "Wie spät ist es in 東京? 🙂",
            name: None,
        },
    ];
    for (model, id) in [
        ("gpt-4o", "req-tok-openai"),
        ("qwen", "req-tok-qwen"),
        ("plain", "req-tok-plain"),
    ] {
        let body = format!(r#"{{"model":"{model}","messages":{messages}}}"#);
        assert_eq!(
            gw.post("/v1/chat/completions", &[("x-request-id", id)], &body)
                .await
                .status,
            200
        );
    }
    let openai = ChatTemplate::OpenAi.count(&Tokenizer::o200k(), &msgs);
    let line = gw.access_line("req-tok-openai").await;
    assert_eq!(line["prompt_tokens_counted"], openai as u64);
    assert_eq!(line["prompt_count_estimated"], false);

    let qwen = ChatTemplate::ChatMl.count(&Tokenizer::from_tokenizer_json("qwen3", &qwen_file).unwrap(), &msgs);
    let line = gw.access_line("req-tok-qwen").await;
    assert_eq!(line["prompt_tokens_counted"], qwen as u64);
    assert_eq!(line["prompt_count_estimated"], false);

    let line = gw.access_line("req-tok-plain").await;
    assert_eq!(line["prompt_count_estimated"], true);
    assert!(line["prompt_tokens_counted"].as_u64().unwrap() > 0);

    let metrics = request(gw.admin, "GET", "/metrics", &[], bytes::Bytes::new())
        .await
        .unwrap()
        .text();
    assert!(
        metrics.contains(r#"tollgate_prompt_tokens_counted_total{method="estimate",model="plain"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            r#"tollgate_prompt_tokens_counted_total{{method="exact",model="gpt-4o"}} {openai}"#
        )),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokenizer_file_that_cannot_be_read_is_a_config_error() {
    let dir = temp_dir();
    let cfg = dir.join("bad.toml");
    std::fs::write(
        &cfg,
        "[[tokenizers]]\nname = \"x\"\nfile = \"missing.json\"\n\n[[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\n\n\
         [[models]]\nname = \"m\"\ntokenizer = \"x\"\nchat_template = \"chatml\"\ntargets = [{ provider = \"p\" }]\n\n\
         [[models]]\nname = \"n\"\ntokenizer = \"nope\"\ntargets = [{ provider = \"p\" }]\n",
    )
    .unwrap();
    let (passed, err) = check_config(&cfg);
    assert!(!passed);
    assert!(
        err.contains("line 3: tokenizers[0].file: cannot read tokenizer"),
        "{err}"
    );
    assert!(err.contains("models[1].tokenizer: unknown tokenizer `nope`"), "{err}");
}

/// The generated text of a direct answer from the mock, read with a real JSON parser.
fn generated_text(body: &[u8], sse: bool) -> String {
    let docs: Vec<serde_json::Value> = if sse {
        String::from_utf8_lossy(body)
            .split("\n\n")
            .filter_map(|ev| ev.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str(d).ok())
            .collect()
    } else {
        vec![serde_json::from_slice(body).unwrap()]
    };
    docs.iter()
        .flat_map(|d| d["choices"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| {
            c["delta"]["content"]
                .as_str()
                .or(c["message"]["content"].as_str())
                .map(str::to_string)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_tokens_are_counted_when_the_provider_reports_no_usage() {
    let mock = start_mock("m").await;
    let config = format!(
        "{}[[models]]\nname = \"gpt-4o\"\ntokenizer = \"o200k\"\ntargets = [{{ provider = \"mock\" }}]\n",
        provider("mock", &mock.base_url())
    );
    let gw = Gateway::start(&config).await;
    let o200k = Tokenizer::o200k();
    for (stream, id) in [(true, "req-nousage-sse"), (false, "req-nousage-json")] {
        let body = format!(r#"{{"model":"gpt-4o","stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#);
        let r = gw
            .post(
                "/v1/chat/completions",
                &[("x-mock-no-usage", "1"), ("x-request-id", id)],
                &body,
            )
            .await;
        assert_eq!(r.status, 200);
        let want = o200k.count(&generated_text(&r.body, stream));
        assert!(want > 0);
        let line = gw.access_line(id).await;
        assert_eq!(line["usage_known"], false, "{line}");
        assert_eq!(line["completion_tokens_counted"], want as u64, "{line}");
    }
    // With usage reported, the provider's figure stands and nothing is counted.
    let r = gw
        .post(
            "/v1/chat/completions",
            &[("x-request-id", "req-usage")],
            r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    let line = gw.access_line("req-usage").await;
    assert_eq!(line["usage_known"], true);
    assert_eq!(line["completion_tokens_counted"], -1);
}

/// The value of the metric line that starts with `series` (`name{labels}`), 0 if absent.
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_without_tokenizer_books_estimated_completions_against_limits_and_metrics() {
    let mock = start_mock("m").await;
    let config = format!(
        "{}[[models]]\nname = \"plain\"\ntargets = [{{ provider = \"mock\" }}]\n\n\
         [[limits]]\nname = \"tpd\"\ntokens = 1000000\nper = \"day\"\n",
        provider("mock", &mock.base_url())
    );
    let gw = Gateway::start(&config).await;
    let o200k = Tokenizer::o200k();
    let no_usage = ("x-mock-no-usage", "1");
    let mut booked = 0;
    let mut completions = 0;
    // A whole stream, a whole JSON answer, and a stream the provider cuts after five chunks.
    for (stream, id, extra) in [
        (true, "plain-sse", None),
        (false, "plain-json", None),
        (true, "plain-cut", Some(("x-mock-cut-after", "5"))),
    ] {
        let body = format!(r#"{{"model":"plain","stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#);
        let mut headers = vec![no_usage, ("x-request-id", id), ("x-mock-chunks", "40")];
        headers.extend(extra);
        let r = open(
            gw.addr,
            "POST",
            "/v1/chat/completions",
            &headers,
            bytes::Bytes::from(body),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        // The cut stream ends in an error after what was generated; that text is what counts.
        let (_, received, _) = read_body(r).await;
        let want = o200k.count(&generated_text(&received, stream));
        assert!(want > 0, "{id}: text reached the client");
        let line = gw.access_line(id).await;
        assert_eq!(line["usage_known"], false, "{line}");
        assert_eq!(line["completion_tokens_counted"], want as u64, "{id}: {line}");
        assert_eq!(line["completion_count_estimated"], true, "{line}");
        booked += line["prompt_tokens_counted"].as_u64().unwrap() + want as u64;
        completions += want as u64;
    }
    // A client that leaves mid-stream: what was generated until then is counted.
    let resp = open(
        gw.addr,
        "POST",
        "/v1/chat/completions",
        &[
            no_usage,
            ("x-request-id", "plain-gone"),
            ("x-mock-chunks", "200"),
            ("x-mock-chunk-delay-ms", "20"),
        ],
        bytes::Bytes::from_static(br#"{"model":"plain","stream":true,"messages":[{"role":"user","content":"hi"}]}"#),
    )
    .await
    .unwrap();
    let mut body = resp.into_body();
    let mut seen = 0;
    while seen < 3 {
        match http_body_util::BodyExt::frame(&mut body).await {
            Some(Ok(frame)) => seen += usize::from(frame.is_data()),
            _ => panic!("the stream ended before the client left"),
        }
    }
    drop(body);
    let line = gw.access_line("plain-gone").await;
    let gone = line["completion_tokens_counted"].as_u64().unwrap_or(0);
    assert!(gone > 0, "{line}");
    assert_eq!(line["completion_count_estimated"], true, "{line}");
    booked += line["prompt_tokens_counted"].as_u64().unwrap() + gone;
    completions += gone;

    let metrics = request(gw.admin, "GET", "/metrics", &[], bytes::Bytes::new())
        .await
        .unwrap()
        .text();
    assert_eq!(
        metric(&metrics, r#"tollgate_limit_tokens_total{kind="used",rule="tpd"}"#),
        booked,
        "the token limit is charged what was counted"
    );
    assert_eq!(
        metric(&metrics, r#"tollgate_tokens_total{kind="completion",model="plain"}"#),
        completions,
        "{metrics}"
    );
}
