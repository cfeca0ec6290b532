//! What the network backends share: the runtime their clients run on, the deadline
//! every call gets, and the health each reports.
//!
//! The store traits are blocking (the embedded backends wait for the disk), while the
//! PostgreSQL and S3 clients are async. Their futures run on a small runtime of their
//! own, and a blocking caller waits on a channel, which works from any thread: a
//! blocking-pool thread, a plain thread, or an async worker, where blocking on another
//! runtime's handle would panic.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// How long one backend call may take before the caller is told the backend is
/// unavailable; a stopped server must not hang requests.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("nimbus-storage")
            .enable_all()
            .build()
            .expect("the storage runtime starts")
    })
}

/// Runs `future` on the storage runtime and waits for it, at most [`DEADLINE`].
pub(crate) fn block_on<T: Send + 'static>(
    future: impl Future<Output = T> + Send + 'static,
) -> Result<T, Elapsed> {
    block_on_within(DEADLINE, future)
}

/// [`block_on`] for work whose length grows with its size (a copy, a large batch, a
/// migration), which gets a deadline of its own.
pub(crate) fn block_on_within<T: Send + 'static>(
    deadline: Duration,
    future: impl Future<Output = T> + Send + 'static,
) -> Result<T, Elapsed> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(tokio::time::timeout(deadline, future).await);
    });
    // A task that panicked sent nothing: no answer, as far as the caller can tell.
    let wait = || rx.recv().map_err(|_| Elapsed)?.map_err(|_| Elapsed);
    // A caller on an async worker (the registry's handlers call stores directly) lets
    // the worker's other tasks move elsewhere while it waits on the network.
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}

/// [`DEADLINE`] plus a second per `bytes` at 8 MiB/s: the slowest copy or transfer a
/// healthy store is allowed.
pub(crate) fn deadline_for(bytes: u64) -> Duration {
    DEADLINE + Duration::from_secs(bytes / (8 << 20))
}

/// Starts `future` on the storage runtime without waiting for it.
pub(crate) fn spawn<T: Send + 'static>(
    future: impl Future<Output = T> + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    runtime().spawn(future)
}

/// A backend call outlived its deadline (or ended without an answer).
#[derive(Debug)]
pub(crate) struct Elapsed;

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no answer in time")
    }
}

impl std::error::Error for Elapsed {}

/// How often an unreachable backend is probed until it answers again.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// A call that reaches the backend without changing anything.
type Probe = Arc<dyn Fn() + Send + Sync>;

/// One backend's reachability and call latency, for health, metrics and error shapes.
pub struct BackendHealth {
    name: &'static str,
    up: AtomicBool,
    latency: Histogram,
    probe: Mutex<Option<Probe>>,
    /// Whether a probe thread runs: one at a time, however often the backend flaps.
    probing: AtomicBool,
    /// When a call last failed to reach the backend, in ms since [`clock`]'s start.
    failed_at: AtomicU64,
}

impl BackendHealth {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            up: AtomicBool::new(true),
            // 100 µs to about 13 s.
            latency: Histogram::new(exponential_buckets(0.000_1, 2.0, 18)),
            probe: Mutex::new(None),
            probing: AtomicBool::new(false),
            failed_at: AtomicU64::new(0),
        }
    }

    /// Sets the call that tells, while the backend is down, when it is back: without
    /// it, health would report a recovered backend down until traffic came.
    pub(crate) fn set_probe(&self, probe: impl Fn() + Send + Sync + 'static) {
        *self.probe.lock().expect("probe lock") = Some(Arc::new(probe));
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// False while the backend's last call could not reach it.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Seconds per backend call, for `/_nimbus/metrics`.
    pub fn latency(&self) -> &Histogram {
        &self.latency
    }

    /// Times `call` and records whether it reached the backend.
    pub(crate) fn observe<T, E: Unreachable + std::fmt::Display>(
        &'static self,
        call: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let started = Instant::now();
        let result = call();
        self.latency.observe(started.elapsed().as_secs_f64());
        let up = !matches!(&result, Err(err) if err.unreachable());
        if !up {
            self.failed_at.store(clock(), Ordering::Relaxed);
        }
        if self.up.swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!(backend = self.name, "backend reachable again");
            } else {
                if let Err(err) = &result {
                    tracing::warn!(backend = self.name, error = %err, "backend unreachable");
                }
                self.probe_until_up();
            }
        }
        result
    }

    fn probe_until_up(&'static self) {
        let Some(probe) = self.probe.lock().expect("probe lock").clone() else {
            return;
        };
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let started = std::thread::Builder::new()
            .name(format!("probe-{}", self.name))
            .spawn(move || {
                loop {
                    while !self.is_up() {
                        std::thread::sleep(PROBE_INTERVAL);
                        probe();
                    }
                    self.probing.store(false, Ordering::Release);
                    // Down again before the flag cleared: nobody else will probe.
                    if self.is_up() || self.probing.swap(true, Ordering::AcqRel) {
                        return;
                    }
                }
            });
        if let Err(err) = started {
            self.probing.store(false, Ordering::Release);
            tracing::warn!(backend = self.name, error = %err, "no probe thread: health waits for traffic");
        }
    }
}

/// Errors that say whether the backend could not be reached at all.
pub(crate) trait Unreachable {
    fn unreachable(&self) -> bool;
}

/// The metadata backend's health (whichever backend it is).
pub static METADATA: LazyLock<BackendHealth> = LazyLock::new(|| BackendHealth::new("metadata"));
/// The blob backends' health.
pub static BLOBS: LazyLock<BackendHealth> = LazyLock::new(|| BackendHealth::new("blobs"));

/// Milliseconds since the first call, never 0.
fn clock() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// How long after a call failed to reach a backend other failures are still put down
/// to it: a request that failed on a dead pooled connection may be answered just after
/// another call found the backend back.
const RECENT: u64 = 5_000;

/// Whether a backend is unreachable now, or was a moment ago: failures meanwhile are
/// reported to clients as retryable (503) rather than as internal errors.
pub fn backends_degraded() -> bool {
    [&*METADATA, &*BLOBS].iter().any(|backend| {
        let failed_at = backend.failed_at.load(Ordering::Relaxed);
        !backend.is_up() || (failed_at != 0 && clock().saturating_sub(failed_at) < RECENT)
    })
}
