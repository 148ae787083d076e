//! Search engines behind one trait: each [`Protocol`] says how to ask an engine for a query
//! (one HTTP request) and how to read its answer into [`Hit`]s; [`search`] does the I/O, over
//! the gateway's pooled connections, within the engine's timeout. Engines are asked in
//! parallel by the search stage; one that fails or times out leaves the others' results.

mod arxiv;
mod elastic;
mod web;

use bytes::Bytes;

use std::sync::Arc;

use crate::config::search::{Backend, Engine, EngineKind};
use crate::config::Provider;
use crate::kb::KnowledgeBase;
use crate::pipeline::attempts::UpstreamError;
use crate::upstream::{self, Connections, UpstreamOptions, WholeError};

/// Largest answer read from an engine.
const MAX_ANSWER: usize = 4 << 20;

/// One search result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub title: String,
    /// The page's URL (or the document's path, for a knowledge base).
    pub url: String,
    /// What the engine shows of the page (or the document's text).
    pub text: String,
}

/// One request to an engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: &'static str,
    /// The path and query string, under the engine's URL path.
    pub target: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Call {
    fn get(target: String) -> Call {
        Call {
            method: "GET",
            target,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }
}

/// How one kind of engine is asked and answers.
pub trait Protocol: Sync {
    /// The request for `query`, asking for `n` results.
    fn request(&self, engine: &Engine, query: &str, n: usize) -> Call;
    /// The results in the engine's answer (at most `n`), or why it cannot be read.
    fn parse(&self, body: &[u8], n: usize) -> Result<Vec<Hit>, String>;
}

/// The protocol of an engine kind reached over HTTP (`None`: the embedded knowledge base).
pub fn protocol(kind: EngineKind) -> Option<&'static dyn Protocol> {
    match kind {
        EngineKind::Searxng => Some(&web::Searxng),
        EngineKind::Bing => Some(&web::Bing),
        EngineKind::Google => Some(&web::Google),
        EngineKind::Arxiv => Some(&arxiv::Arxiv),
        EngineKind::Elasticsearch => Some(&elastic::Elastic),
        EngineKind::Local => None,
    }
}

/// Why an engine gave nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineError {
    Timeout,
    Failed(String),
}

impl EngineError {
    /// The outcome's name in metrics and logs.
    pub fn outcome(&self) -> &'static str {
        match self {
            EngineError::Timeout => "timeout",
            EngineError::Failed(_) => "error",
        }
    }
}

/// Ask `engine` for `query`, within its timeout.
pub async fn search(
    conns: &Connections,
    opts: &UpstreamOptions,
    engine: &Engine,
    query: &str,
    n: usize,
    request_id: &str,
) -> Result<Vec<Hit>, EngineError> {
    let asked = async {
        match (&engine.backend, protocol(engine.kind)) {
            (Backend::Http(endpoint), Some(proto)) => {
                let call = proto.request(engine, query, n);
                let body = fetch(conns, opts, endpoint, engine, &call, request_id).await?;
                proto.parse(&body, n).map_err(EngineError::Failed)
            }
            (Backend::Local(Some(kb)), _) => local(kb, query, n).await.map_err(EngineError::Failed),
            _ => Err(EngineError::Failed("the engine is not open".to_string())),
        }
    };
    // The connection's read timeout is the engine's too: whichever clock is seen first, a slow
    // engine is a timeout.
    tokio::time::timeout(engine.timeout, asked)
        .await
        .unwrap_or(Err(EngineError::Timeout))
}

/// The embedded knowledge base, searched on the blocking pool (an index read is CPU and disk
/// work, not for the I/O threads).
async fn local(kb: &Arc<KnowledgeBase>, query: &str, n: usize) -> Result<Vec<Hit>, String> {
    let (kb, query) = (kb.clone(), query.to_string());
    let found = tokio::task::spawn_blocking(move || kb.search(&query, n))
        .await
        .map_err(|_| "the knowledge base search stopped".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(found
        .into_iter()
        .map(|f| Hit {
            title: f.title,
            url: f.path,
            text: f.text,
        })
        .collect())
}

/// Send `call` to the engine and read the whole answer of a success.
async fn fetch(
    conns: &Connections,
    opts: &UpstreamOptions,
    endpoint: &Provider,
    engine: &Engine,
    call: &Call,
    request_id: &str,
) -> Result<Bytes, EngineError> {
    let mut peer = upstream::peer(endpoint, opts);
    peer.options.read_timeout = Some(engine.timeout);
    let head = head(endpoint, call, request_id);
    let up = upstream::send(conns, &peer, &head, &call.body)
        .await
        .map_err(|e| match e {
            UpstreamError::Timeout(_) => EngineError::Timeout,
            e => EngineError::Failed(e.outcome().to_string()),
        })?;
    let (status, answer) = upstream::read_whole(conns, &peer, up, MAX_ANSWER)
        .await
        .map_err(|e| match e {
            WholeError::TimedOut => EngineError::Timeout,
            WholeError::TooLarge => EngineError::Failed("the engine's answer is too large".to_string()),
            WholeError::Broke(kind) => EngineError::Failed(kind.to_string()),
        })?;
    if !status.is_success() {
        return Err(EngineError::Failed(format!("the engine answered {}", status.as_u16())));
    }
    Ok(answer)
}

fn head(e: &Provider, call: &Call, request_id: &str) -> Vec<u8> {
    let mut head = Vec::with_capacity(256 + call.target.len());
    head.extend_from_slice(call.method.as_bytes());
    head.push(b' ');
    head.extend_from_slice(e.path_prefix.as_bytes());
    head.extend_from_slice(call.target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(e.host_header.as_bytes());
    head.extend_from_slice(b"\r\naccept: application/json, application/atom+xml;q=0.9\r\n");
    if call.method != "GET" {
        head.extend_from_slice(b"content-type: application/json\r\ncontent-length: ");
        head.extend_from_slice(itoa::Buffer::new().format(call.body.len()).as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if request_id.bytes().all(|b| b.is_ascii_graphic()) {
        head.extend_from_slice(b"x-request-id: ");
        head.extend_from_slice(request_id.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    for (name, value) in &call.headers {
        // Values come from the config (keys) and are checked to be one line.
        if value.bytes().all(|b| b != b'\r' && b != b'\n') {
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// `s` percent-encoded for a query string value (RFC 3986 unreserved characters kept).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(encode("Rust-1.85_x~"), "Rust-1.85_x~");
    }

    /// An engine at `addr` with a 50 ms timeout, as a config names it.
    fn engine_at(addr: std::net::SocketAddr) -> Arc<Engine> {
        let text = format!(
            "[[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\n\
             [[models]]\nname = \"chat\"\ntargets = [{{ provider = \"p\" }}]\n\n\
             [search]\nengines = [{{ name = \"kb\", kind = \"elasticsearch\", url = \"http://{addr}/es\", index = \"docs\", timeout_ms = 50 }}]\n"
        );
        let snapshot = crate::config::load_str(&text, "t.toml", None, 1).unwrap();
        snapshot.search.as_ref().unwrap().engines[0].clone()
    }

    #[tokio::test]
    async fn an_engine_that_never_answers_is_a_timeout_whichever_clock_sees_it_first() {
        // The engine reads the request and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        let engine = engine_at(addr);
        let conns = Connections::new(2, std::time::Duration::from_secs(30));
        let opts = UpstreamOptions {
            connect_timeout: std::time::Duration::from_secs(1),
            read_timeout: std::time::Duration::from_secs(60),
            idle_timeout: std::time::Duration::from_secs(30),
            total_timeout: None,
        };
        // The connection's own read timeout (the engine's) ends the call: a timeout, not an error.
        let Backend::Http(endpoint) = &engine.backend else {
            panic!("an HTTP engine")
        };
        let call = elastic::Elastic.request(&engine, "zephyrine", 3);
        let read = fetch(&conns, &opts, endpoint, &engine, &call, "r1").await;
        assert_eq!(read, Err(EngineError::Timeout));
        // And the engine's bound around the whole call.
        let asked = search(&conns, &opts, &engine, "zephyrine", 3, "r2").await;
        assert_eq!(asked, Err(EngineError::Timeout));
        assert_eq!(asked.unwrap_err().outcome(), "timeout");
    }
}
