//! Embedding off the I/O threads: a fixed set of threads, each with its own ONNX session, fed by
//! one bounded queue.
//!
//! A thread takes the first waiting text, then every other one already queued (up to
//! `max_batch`), and embeds them in one run of the model: under load the batches grow and the
//! cost per text falls. [`EmbedPool::submit_within`] refuses at once ([`Shed`]) when the texts
//! already waiting would keep this one waiting longer than the caller's budget (from the recent
//! time per text), or when the queue is full: the caller skips the semantic lookup instead of
//! queueing, so a saturated pool adds at most the budget and one batch to a request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::{Embedder, ModelFiles, SemanticError};

/// The queue was full: this lookup goes without an embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shed;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSize {
    pub threads: usize,
    /// Texts waiting at most (beyond those being embedded).
    pub queue: usize,
    pub max_batch: usize,
}

type Reply = oneshot::Sender<Result<Vec<f32>, SemanticError>>;

struct Job {
    text: String,
    reply: Reply,
}

/// Counters a metrics layer reads.
#[derive(Debug, Default)]
pub struct PoolStats {
    pub embedded: AtomicU64,
    pub batches: AtomicU64,
    pub shed: AtomicU64,
    pub failed: AtomicU64,
    /// Texts queued and not yet taken by a thread.
    pub waiting: AtomicU64,
    /// Recent model time per text, in nanoseconds (a moving average over batches).
    pub ns_per_text: AtomicU64,
}

pub struct EmbedPool {
    jobs: SyncSender<Job>,
    stats: Arc<PoolStats>,
    dims: usize,
    threads: usize,
}

impl EmbedPool {
    /// Opens one session per thread (failing if the model does not open) and starts them.
    pub fn start(files: &ModelFiles, size: PoolSize) -> Result<EmbedPool, SemanticError> {
        let (jobs, queue) = mpsc::sync_channel::<Job>(size.queue.max(1));
        let queue = Arc::new(Mutex::new(queue));
        let stats = Arc::new(PoolStats::default());
        let mut dims = 0;
        for n in 0..size.threads.max(1) {
            let mut embedder = Embedder::open(files, 1)?;
            if n == 0 {
                dims = embedder.embed(&["dimension probe"])?.first().map_or(0, Vec::len);
            }
            let (queue, stats) = (Arc::clone(&queue), Arc::clone(&stats));
            let max_batch = size.max_batch.max(1);
            thread::Builder::new()
                .name(format!("tollgate-embed-{n}"))
                .spawn(move || work(&mut embedder, &queue, &stats, max_batch))
                .map_err(|e| SemanticError::Run(format!("embedding thread: {e}")))?;
        }
        Ok(EmbedPool {
            jobs,
            stats,
            dims,
            threads: size.threads.max(1),
        })
    }

    /// The model's vector length.
    pub fn dims(&self) -> usize {
        self.dims
    }

    pub fn stats(&self) -> &PoolStats {
        &self.stats
    }

    /// How long a text queued now would wait before a thread takes it, from the texts already
    /// waiting and the recent time per text.
    pub fn expected_wait(&self) -> Duration {
        let waiting = self.stats.waiting.load(Ordering::Relaxed);
        let per_text = self.stats.ns_per_text.load(Ordering::Relaxed);
        Duration::from_nanos(waiting.saturating_mul(per_text) / self.threads as u64)
    }

    /// Queues `text` unless it would wait longer than `budget` ([`EmbedPool::expected_wait`]).
    pub fn submit_within(
        &self,
        text: String,
        budget: Duration,
    ) -> Result<oneshot::Receiver<Result<Vec<f32>, SemanticError>>, Shed> {
        if self.expected_wait() > budget {
            self.stats.shed.fetch_add(1, Ordering::Relaxed);
            return Err(Shed);
        }
        self.submit(text)
    }

    /// Queues `text`; the receiver gets its unit vector. [`Shed`] when the queue is full.
    pub fn submit(&self, text: String) -> Result<oneshot::Receiver<Result<Vec<f32>, SemanticError>>, Shed> {
        let (reply, answer) = oneshot::channel();
        self.stats.waiting.fetch_add(1, Ordering::Relaxed);
        match self.jobs.try_send(Job { text, reply }) {
            Ok(()) => Ok(answer),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
                self.stats.shed.fetch_add(1, Ordering::Relaxed);
                Err(Shed)
            }
        }
    }

    /// Embeds `text` and waits (for tools and tests; the proxy awaits [`EmbedPool::submit`]).
    pub fn embed_blocking(&self, text: &str) -> Result<Vec<f32>, SemanticError> {
        let receiver = self
            .submit(text.to_string())
            .map_err(|Shed| SemanticError::Run("embedding queue full".to_string()))?;
        receiver
            .blocking_recv()
            .map_err(|_| SemanticError::Run("embedding thread stopped".to_string()))?
    }
}

fn work(embedder: &mut Embedder, queue: &Mutex<Receiver<Job>>, stats: &PoolStats, max_batch: usize) {
    loop {
        let batch: Vec<Job> = {
            let Ok(queue) = queue.lock() else { return };
            let Ok(first) = queue.recv() else { return };
            let mut batch = vec![first];
            while batch.len() < max_batch {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        stats.waiting.fetch_sub(batch.len() as u64, Ordering::Relaxed);
        // A request that gave up waiting has dropped its receiver: its text is not embedded.
        let batch: Vec<Job> = batch.into_iter().filter(|j| !j.reply.is_closed()).collect();
        if batch.is_empty() {
            continue;
        }
        let texts: Vec<&str> = batch.iter().map(|j| j.text.as_str()).collect();
        let started = Instant::now();
        let result = embedder.embed(&texts);
        let per_text = started.elapsed().as_nanos() as u64 / texts.len() as u64;
        let old = stats.ns_per_text.load(Ordering::Relaxed);
        let average = if old == 0 { per_text } else { (old * 3 + per_text) / 4 };
        stats.ns_per_text.store(average, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(vectors) => {
                stats.embedded.fetch_add(vectors.len() as u64, Ordering::Relaxed);
                for (job, v) in batch.into_iter().zip(vectors) {
                    let _ = job.reply.send(Ok(v));
                }
            }
            Err(e) => {
                stats.failed.fetch_add(batch.len() as u64, Ordering::Relaxed);
                let reason = e.to_string();
                for job in batch {
                    let _ = job.reply.send(Err(SemanticError::Run(reason.clone())));
                }
            }
        }
    }
}
