//! Test harness: the real `tollgate` binary as a child process on free ports, mocks on port 0
//! in the test's runtime, and a small HTTP/1.1 client over real sockets.

#![allow(dead_code)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test harness: a failed setup step should fail the test loudly"
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tollgate_loadtest::mock::{self, MockConfig, MockHandle, TlsFiles};

pub const PROVIDER_KEY: &str = "sk-provider-secret-7f3a";

/// Run the official `openai` SDK client (`tests/sdk/openai_client.py`) with `args`; its stdout.
pub fn openai_sdk(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/openai_client.py");
    let out = Command::new("python3").arg(&script).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "the SDK client failed (scripts/setup.sh installs `openai`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A free TCP port on 127.0.0.1 for a gateway to listen on.
///
/// Not port 0: the gateway process binds it itself, so the port is released in between, and
/// tests run in parallel threads. Ports come from a per-process counter below the ephemeral range
/// (where the mocks' port-0 sockets live), so two tests of one binary never get the same port and
/// a released port cannot be handed to a mock in between.
pub fn free_port() -> u16 {
    use std::sync::atomic::AtomicU16;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = 20_000 + (std::process::id() % 50) as u16 * 240;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = start + n % 240;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A name no earlier run used (state in Redis outlives a test run).
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// `tollgate check --config <path>`: whether the file passed, and what was said on stderr.
pub fn check_config(path: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["check", "--config"])
        .arg(path)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The `id`s of an OpenAI-style list (`{"data":[{"id":…},…]}`), in order.
pub fn list_ids(list: &serde_json::Value) -> Vec<&str> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap())
        .collect()
}

/// A fresh directory for one test's files.
pub fn temp_dir() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tollgate-test-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(1);
    h.finish()
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Start a mock upstream on a free port in the current runtime.
pub async fn start_mock(name: &str) -> MockHandle {
    start_mock_with(MockConfig {
        name: name.into(),
        ..MockConfig::default()
    })
    .await
}

pub async fn start_mock_with(config: MockConfig) -> MockHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    mock::spawn(listener, config, None).unwrap()
}

pub async fn start_tls_mock(name: &str) -> MockHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls = TlsFiles {
        cert_pem: std::fs::read(fixture("server.pem")).unwrap(),
        key_pem: std::fs::read(fixture("server.key")).unwrap(),
    };
    mock::spawn(
        listener,
        MockConfig {
            name: name.into(),
            ..MockConfig::default()
        },
        Some(tls),
    )
    .unwrap()
}

/// A provider section pointing at `base_url` with the test provider key.
pub fn provider(name: &str, base_url: &str) -> String {
    format!("[[providers]]\nname = \"{name}\"\nkind = \"openai\"\nbase_url = \"{base_url}\"\napi_key = \"env:TEST_PROVIDER_KEY\"\n\n")
}

/// A running gateway process; killed on drop.
pub struct Gateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    child: Child,
}

impl Gateway {
    pub async fn start(config: &str) -> Gateway {
        Self::start_with(config, &[]).await
    }

    /// Start with extra CLI flags; waits until `/healthz` answers.
    pub async fn start_with(config: &str, flags: &[&str]) -> Gateway {
        let dir = temp_dir();
        let config_path = dir.join("tollgate.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut last_log = String::new();
        let defaults = [
            ("--threads", "2"),
            ("--config-poll-ms", "100"),
            ("--log-format", "json"),
        ];
        for attempt in 0..5 {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let log_path = dir.join(format!("gateway-{attempt}.log"));
            let log = std::fs::File::create(&log_path).unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
                .arg("--config")
                .arg(&config_path)
                .args(["--listen", &addr.to_string(), "--admin-listen", &admin.to_string()])
                .args(
                    defaults
                        .iter()
                        .filter(|(k, _)| !flags.contains(k))
                        .flat_map(|(k, v)| [*k, *v]),
                )
                .args(flags)
                .env("TEST_PROVIDER_KEY", PROVIDER_KEY)
                .env("TEST_ADMIN_TOKEN", "admin-token-for-tests")
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .spawn()
                .unwrap();
            let mut gw = Gateway {
                addr,
                admin,
                config_path: config_path.clone(),
                log_path,
                child,
            };
            if gw.wait_ready().await {
                return gw;
            }
            let _ = gw.child.kill();
            last_log = gw.log();
        }
        panic!("gateway did not start; config:\n{config}\nlog:\n{last_log}");
    }

    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(r) = request(self.addr, "GET", "/healthz", &[], Bytes::new()).await {
                if r.status == 200 && request(self.admin, "GET", "/healthz", &[], Bytes::new()).await.is_ok() {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait up to `timeout` for the process to exit: its exit status, or `None` if it still runs.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Access-log lines, parsed.
    pub fn access_lines(&self) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["message"] == "access")
            .collect()
    }

    /// The access line of a request id, waiting briefly for it to be written.
    pub async fn access_line(&self, request_id: &str) -> serde_json::Value {
        self.log_line("access", request_id).await
    }

    /// The log line with this `message` for a request id, waiting briefly for it to be written.
    pub async fn log_line(&self, message: &str, request_id: &str) -> serde_json::Value {
        for _ in 0..100 {
            let found = self
                .log()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["message"] == message && v["request_id"] == request_id);
            if let Some(v) = found {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no {message} line for {request_id}; log:\n{}", self.log());
    }

    pub async fn chat(&self, body: &str) -> Resp {
        self.post("/v1/chat/completions", &[], body).await
    }

    /// `GET path` on the admin listener with the tests' admin token, read as JSON.
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        request(
            self.admin,
            "GET",
            path,
            &[("authorization", "Bearer admin-token-for-tests")],
            Bytes::new(),
        )
        .await
        .unwrap()
        .json()
    }

    pub async fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(headers);
        request(self.addr, "POST", path, &h, Bytes::from(body.to_string()))
            .await
            .unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A complete response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    /// Body frames as they arrived.
    pub frames: usize,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn request_id(&self) -> String {
        self.header("x-request-id").unwrap_or_default().to_string()
    }
}

/// Open a connection and send one request; returns the response head with its body unread.
pub async fn open(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<http::Response<Incoming>, String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
    sender.send_request(req).await.map_err(|e| e.to_string())
}

/// Read a response body to its end; `Err` with what was read if the stream broke.
pub async fn read_body(resp: http::Response<Incoming>) -> (Result<(), String>, Bytes, usize) {
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    let mut frames = 0;
    loop {
        match body.frame().await {
            None => return (Ok(()), Bytes::from(buf), frames),
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    frames += 1;
                    buf.extend_from_slice(&d);
                }
            }
            Some(Err(e)) => return (Err(e.to_string()), Bytes::from(buf), frames),
        }
    }
}

/// Send one request and read the whole response.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Resp, String> {
    let resp = open(addr, method, path, headers, body).await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let (done, body, frames) = read_body(resp).await;
    done?;
    Ok(Resp {
        status,
        headers,
        body,
        frames,
    })
}

/// Send SIGHUP (or another signal) to a process.
pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The value of one series (name and labels as exposed) on the gateway's `/metrics`.
pub async fn metric(gw: &Gateway, series: &str) -> Option<f64> {
    let text = request(gw.admin, "GET", "/metrics", &[], Bytes::new())
        .await
        .ok()?
        .text();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}

/// Poll `f` until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The `x-mock-reply` header value for these answer pieces (one stream chunk each).
pub fn mock_reply(pieces: &[&str]) -> String {
    pieces
        .iter()
        .map(|p| {
            p.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The directory of the ONNX Runtime and the embedding models (`scripts/setup.sh` fills it).
pub fn models_dir() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.models");
    assert!(
        dir.join("onnxruntime/libonnxruntime.so").exists(),
        "run scripts/setup.sh first"
    );
    dir.display().to_string()
}
