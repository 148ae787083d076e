//! Graceful shutdown: what SIGTERM starts, and when the process may exit.
//!
//! On SIGTERM the gateway says it is no longer ready (`/readyz` answers 503) at once and keeps
//! accepting for `--shutdown-drain-delay-secs`, so a load balancer that polls readiness stops
//! sending it traffic. Then Pingora stops accepting and closes idle keep-alive connections, while
//! the requests and streams in flight go on. The process exits as soon as none is left (at once,
//! when it was idle), or when `--shutdown-grace-secs` ends. SIGINT exits at once; SIGQUIT is
//! Pingora's graceful upgrade.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};

/// Whether the gateway is draining, and how many requests are in flight.
#[derive(Debug, Default)]
pub struct Drain {
    draining: AtomicBool,
    in_flight: AtomicUsize,
}

impl Drain {
    /// A request starts: it counts as in flight until the returned guard is dropped.
    pub fn enter(self: &Arc<Self>) -> Flight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Flight(self.clone())
    }

    /// SIGTERM has come: readiness is withdrawn.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    fn start(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Block until nothing has been in flight for a moment (a connection accepted just before
    /// the listener closed gets to start its request), or until `deadline`.
    fn wait_idle(&self, deadline: Instant) {
        const SETTLE: Duration = Duration::from_millis(50);
        let mut idle_since: Option<Instant> = None;
        while Instant::now() < deadline {
            if self.in_flight() == 0 {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= SETTLE {
                    return;
                }
            } else {
                idle_since = None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One request in flight (see [`Drain::enter`]).
#[derive(Debug)]
pub struct Flight(Arc<Drain>);

impl Drop for Flight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The process's signal handling, given to Pingora's server loop.
pub struct SignalWatch {
    pub drain: Arc<Drain>,
    /// How long readiness is withdrawn before the listeners close.
    pub delay: Duration,
    /// How long requests in flight get once the listeners close.
    pub grace: Duration,
    /// Runs just before the process exits (flushes the logs).
    pub before_exit: Arc<dyn Fn() + Send + Sync>,
}

#[async_trait]
impl ShutdownSignalWatch for SignalWatch {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            tracing::error!("cannot listen for shutdown signals; stopping");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => return ShutdownSignal::FastShutdown,
            _ = quit.recv() => return ShutdownSignal::GracefulUpgrade,
        }
        self.drain.start();
        tracing::info!(
            in_flight = self.drain.in_flight(),
            drain_delay_secs = self.delay.as_secs_f64(),
            grace_secs = self.grace.as_secs(),
            "SIGTERM: readiness withdrawn; draining"
        );
        tokio::select! {
            _ = tokio::time::sleep(self.delay) => {}
            _ = int.recv() => return ShutdownSignal::FastShutdown,
        }
        // Pingora closes the listeners on this signal, then waits out its whole grace period;
        // the process leaves as soon as what is in flight has finished.
        let drain = self.drain.clone();
        let before_exit = self.before_exit.clone();
        let deadline = Instant::now() + self.grace;
        let spawned = std::thread::Builder::new()
            .name("tollgate-drain".into())
            .spawn(move || {
                drain.wait_idle(deadline);
                tracing::info!(in_flight = drain.in_flight(), "drained; exiting");
                before_exit();
                std::process::exit(0);
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot watch the drain; waiting out the grace period");
        }
        ShutdownSignal::GracefulTerminate
    }
}
