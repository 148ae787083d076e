//! Local stand-ins for search engines, for tests and load runs: one server that answers as
//! SearXNG (`/searxng/search?q=`), Bing Web Search v7 (`/bing/v7.0/search?q=`), Google
//! Programmable Search (`/google/customsearch/v1?q=`), arXiv (`/arxiv/api/query?search_query=all:`)
//! and Elasticsearch (`POST /es/{index}/_search` with a `multi_match` query), each searching its
//! own part of one corpus by word overlap with the query. An engine can be made slow or broken,
//! and every query received is recorded (engine, query).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// One document of the corpus.
#[derive(Debug, Clone)]
pub struct Doc {
    /// The engine that knows it: `searxng`, `bing`, `google`, `arxiv` or `es`.
    pub engine: &'static str,
    pub title: String,
    pub url: String,
    pub text: String,
}

/// How one engine misbehaves.
#[derive(Debug, Clone, Default)]
pub struct Fault {
    pub delay: Duration,
    pub status: Option<u16>,
}

struct State {
    docs: Vec<Doc>,
    /// Pages served as HTML at their path (result pages to fetch).
    pages: Vec<(String, String)>,
    /// What `GET /questions` answers.
    questions: Vec<String>,
    faults: Mutex<Vec<(&'static str, Fault)>>,
    queries: Mutex<Vec<(String, String)>>,
}

/// A running fixture server; dropping it stops accepting connections.
pub struct EnginesHandle {
    pub addr: SocketAddr,
    state: Arc<State>,
    _stop: watch::Sender<bool>,
}

impl EnginesHandle {
    /// `http://addr/{engine path}`: the URL an engine of the config points at.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Make `engine` slow or failing from now on.
    pub fn set_fault(&self, engine: &'static str, fault: Fault) {
        if let Ok(mut f) = self.state.faults.lock() {
            f.retain(|(e, _)| *e != engine);
            f.push((engine, fault));
        }
    }

    /// Every query received, as (engine, query), oldest first.
    pub fn queries(&self) -> Vec<(String, String)> {
        self.state.queries.lock().map(|q| q.clone()).unwrap_or_default()
    }
}

/// Serve `docs` on `listener` in the current tokio runtime.
pub fn spawn(listener: TcpListener, docs: Vec<Doc>) -> anyhow::Result<EnginesHandle> {
    spawn_with_pages(listener, docs, Vec::new())
}

/// [`spawn`], also serving `pages` (path, HTML) as result pages; each read is recorded as a
/// query of engine `page`.
pub fn spawn_with_pages(
    listener: TcpListener,
    docs: Vec<Doc>,
    pages: Vec<(String, String)>,
) -> anyhow::Result<EnginesHandle> {
    spawn_with_questions(listener, docs, pages, Vec::new())
}

/// [`spawn_with_pages`], also answering `GET /questions` with `questions` (a JSON list).
pub fn spawn_with_questions(
    listener: TcpListener,
    docs: Vec<Doc>,
    pages: Vec<(String, String)>,
    questions: Vec<String>,
) -> anyhow::Result<EnginesHandle> {
    let addr = listener.local_addr()?;
    let state = Arc::new(State {
        docs,
        pages,
        questions,
        faults: Mutex::new(Vec::new()),
        queries: Mutex::new(Vec::new()),
    });
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let accept_state = state.clone();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop_rx.changed() => return,
            };
            let Ok((stream, _)) = accepted else { continue };
            let state = accept_state.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(state.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(EnginesHandle {
        addr,
        state,
        _stop: stop_tx,
    })
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if path == "/questions" {
        let list = serde_json::Value::from(state.questions.clone()).to_string();
        return Ok(reply(StatusCode::OK, "application/json", list));
    }
    if let Some((_, html)) = state.pages.iter().find(|(p, _)| *p == path) {
        if let Ok(mut q_log) = state.queries.lock() {
            q_log.push(("page".to_string(), path.clone()));
        }
        return Ok(reply(StatusCode::OK, "text/html; charset=utf-8", html.clone()));
    }
    let (engine, q, n) = if path.starts_with("/searxng/") {
        ("searxng", param(&query, "q"), 10)
    } else if path.starts_with("/bing/") {
        ("bing", param(&query, "q"), param(&query, "count").parse().unwrap_or(10))
    } else if path.starts_with("/google/") {
        ("google", param(&query, "q"), param(&query, "num").parse().unwrap_or(10))
    } else if path.starts_with("/arxiv/") {
        let q = param(&query, "search_query");
        let q = q.strip_prefix("all:").unwrap_or(&q).to_string();
        ("arxiv", q, param(&query, "max_results").parse().unwrap_or(10))
    } else if path.starts_with("/es/") && path.ends_with("/_search") {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let q = v["query"]["multi_match"]["query"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        ("es", q, v["size"].as_u64().unwrap_or(10) as usize)
    } else {
        return Ok(reply(StatusCode::NOT_FOUND, "text/plain", "no such engine".into()));
    };
    if let Ok(mut q_log) = state.queries.lock() {
        q_log.push((engine.to_string(), q.clone()));
    }
    let fault = state
        .faults
        .lock()
        .ok()
        .and_then(|f| f.iter().find(|(e, _)| *e == engine).map(|(_, f)| f.clone()))
        .unwrap_or_default();
    if !fault.delay.is_zero() {
        tokio::time::sleep(fault.delay).await;
    }
    if let Some(status) = fault.status {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Ok(reply(status, "application/json", r#"{"error":"injected"}"#.into()));
    }
    let found = search(&state.docs, engine, &q, n);
    let (ctype, body) = match engine {
        "searxng" => ("application/json", searxng(&q, &found)),
        "bing" => ("application/json", bing(&found)),
        "google" => ("application/json", google(&found)),
        "arxiv" => ("application/atom+xml", atom(&found)),
        _ => ("application/json", elastic(&found)),
    };
    Ok(reply(StatusCode::OK, ctype, body))
}

fn reply(status: StatusCode, ctype: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

/// A query string parameter, percent-decoded (`+` as space).
fn param(query: &str, name: &str) -> String {
    for pair in query.split('&') {
        if let Some(v) = pair.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            return crate::mock::percent_decode(&v.replace('+', " "));
        }
    }
    String::new()
}

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3)
        .map(str::to_lowercase)
        .collect()
}

/// The engine's documents that share a word with the query, most shared first.
fn search<'d>(docs: &'d [Doc], engine: &str, query: &str, n: usize) -> Vec<&'d Doc> {
    let q = words(query);
    let mut scored: Vec<(usize, &Doc)> = docs
        .iter()
        .filter(|d| d.engine == engine)
        .map(|d| {
            let w = words(&format!("{} {}", d.title, d.text));
            (q.iter().filter(|t| w.contains(t)).count(), d)
        })
        .filter(|(s, _)| *s > 0)
        .collect();
    scored.sort_by_key(|s| std::cmp::Reverse(s.0));
    scored.into_iter().take(n).map(|(_, d)| d).collect()
}

fn searxng(q: &str, found: &[&Doc]) -> String {
    let results: Vec<_> = found
        .iter()
        .map(|d| serde_json::json!({"url": d.url, "title": d.title, "content": d.text, "engine": "fixture"}))
        .collect();
    serde_json::json!({"query": q, "number_of_results": results.len(), "results": results}).to_string()
}

fn bing(found: &[&Doc]) -> String {
    let value: Vec<_> = found
        .iter()
        .map(|d| serde_json::json!({"name": d.title, "url": d.url, "snippet": d.text}))
        .collect();
    serde_json::json!({"_type": "SearchResponse", "webPages": {"value": value}}).to_string()
}

fn google(found: &[&Doc]) -> String {
    let items: Vec<_> = found
        .iter()
        .map(|d| serde_json::json!({"kind": "customsearch#result", "title": d.title, "link": d.url, "snippet": d.text}))
        .collect();
    serde_json::json!({"kind": "customsearch#search", "items": items}).to_string()
}

fn elastic(found: &[&Doc]) -> String {
    let hits: Vec<_> = found
        .iter()
        .enumerate()
        .map(|(i, d)| serde_json::json!({"_id": format!("doc{i}"), "_score": 1.0, "_source": {"title": d.title, "content": d.text, "url": d.url}}))
        .collect();
    serde_json::json!({"took": 1, "hits": {"total": {"value": hits.len()}, "hits": hits}}).to_string()
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn atom(found: &[&Doc]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n<title>arXiv Query</title>\n");
    for d in found {
        out.push_str(&format!(
            "<entry>\n<id>{}</id>\n<title>{}</title>\n<summary>{}</summary>\n<link href=\"{}\" rel=\"alternate\" type=\"text/html\"/>\n</entry>\n",
            xml(&d.url),
            xml(&d.title),
            xml(&d.text),
            xml(&d.url)
        ));
    }
    out.push_str("</feed>\n");
    out
}

/// A generated corpus for load runs: `per_engine` documents for each engine kind over a
/// vocabulary of made-up words (so queries match only what they should), result pages of
/// about `page_bytes` each for the web and paper engines' documents (served at
/// `http://{addr}/page/{engine}/N`), and questions that name a document's topic.
pub fn corpus(addr: &str, per_engine: usize, page_bytes: usize) -> (Vec<Doc>, Vec<(String, String)>, Vec<String>) {
    const SYLLABLES: [&str; 12] = [
        "ka", "lo", "mi", "ra", "te", "zu", "no", "shi", "va", "pe", "dor", "glin",
    ];
    let word = |n: usize| -> String {
        let a = SYLLABLES[n % 12];
        let b = SYLLABLES[(n / 12) % 12];
        let c = SYLLABLES[(n / 144) % 12];
        format!("{a}{b}{c}")
    };
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 1728) as usize
    };
    let mut docs = Vec::new();
    let mut pages = Vec::new();
    let mut questions = Vec::new();
    for engine in ["searxng", "bing", "google", "arxiv", "es"] {
        for i in 0..per_engine {
            let topic = [word(next()), word(next())];
            let mut sentence = || -> String {
                let mut w: Vec<String> = (0..12).map(|_| word(next())).collect();
                w[3] = topic[0].clone();
                w[8] = topic[1].clone();
                format!("{}.", w.join(" "))
            };
            let text: Vec<String> = (0..4).map(|_| sentence()).collect();
            // Every result's page is served here (a knowledge base's documents have none).
            let url = if engine == "es" {
                format!("kb://{engine}/{i}")
            } else {
                format!("http://{addr}/page/{engine}/{i}")
            };
            if engine != "es" {
                let mut body = String::with_capacity(page_bytes + 512);
                body.push_str(&format!(
                    "<html><head><title>{} {}</title><script>var x = 1;</script></head><body><nav>Home | About</nav><main>",
                    topic[0], topic[1]
                ));
                while body.len() < page_bytes {
                    body.push_str(&format!("<p>{}</p>", sentence()));
                }
                body.push_str("</main><footer>Example footer</footer></body></html>");
                pages.push((format!("/page/{engine}/{i}"), body));
            }
            if i % 5 == 0 {
                questions.push(format!("What is known about {} and {}?", topic[0], topic[1]));
            }
            docs.push(Doc {
                engine,
                title: format!("{} {}", topic[0], topic[1]),
                url,
                text: text.join(" "),
            });
        }
    }
    (docs, pages, questions)
}
