//! A `redis-server` of a test's own on a port it names, stopped on drop: for tests that stop
//! and restart Redis, or start one configured differently, without touching the shared one.
//! Used by this crate's tests and by the gateway's (`proxy/tests/limits.rs`, by path).

use std::time::Duration;

pub struct OwnRedis {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    pub fn start(port: u16) -> OwnRedis {
        Self::start_with(port, &[])
    }

    /// Start with extra `redis-server` arguments; waits until the port accepts connections.
    #[expect(clippy::expect_used, reason = "a test without redis-server cannot run")]
    pub fn start_with(port: u16, extra: &[&str]) -> OwnRedis {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (installed by scripts/setup.sh)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnRedis {
            port,
            child: Some(child),
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
