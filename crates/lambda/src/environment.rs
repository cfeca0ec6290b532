//! An execution environment: one sandboxed runtime process with its own Runtime API
//! endpoint, serving one invocation at a time, its output captured line by line.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nimbus_engine::{SandboxRuntime, SandboxSpec};
use nimbus_logs::LogEvent;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::runtime_api::{InitFailure, Invocation, RuntimeApi, RuntimeOutcome};

/// CloudWatch Logs' largest event; longer lines are cut.
const MAX_LINE_BYTES: usize = 256 * 1024;
/// Lines kept per invocation before the rest are dropped (with a note).
const MAX_LINES: usize = 10_000;

/// How an invocation ended, as far as the environment can tell.
#[derive(Debug)]
pub enum RunOutcome {
    Runtime(RuntimeOutcome),
    TimedOut,
    /// The runtime failed to initialize, reporting why or exiting.
    InitFailed(Option<InitFailure>, String),
    /// The runtime process ended while the invocation was running.
    Exited(String),
    /// A warm runtime had ended before it could pick the invocation up; another
    /// environment can run it.
    Gone,
}

/// Output lines captured from the runtime, waiting to be attributed to an invocation.
#[derive(Default)]
pub struct LogCapture {
    lines: Mutex<Vec<LogEvent>>,
    dropped: Mutex<usize>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl LogCapture {
    pub fn push(&self, message: String) {
        let mut lines = self.lines.lock().expect("log capture");
        if lines.len() < MAX_LINES {
            lines.push(LogEvent {
                timestamp: now_ms(),
                message,
            });
        } else {
            *self.dropped.lock().expect("log capture") += 1;
        }
    }

    /// Everything captured since the last take.
    pub fn take(&self) -> Vec<LogEvent> {
        let mut lines = std::mem::take(&mut *self.lines.lock().expect("log capture"));
        let dropped = std::mem::take(&mut *self.dropped.lock().expect("log capture"));
        if dropped > 0 {
            lines.push(LogEvent {
                timestamp: now_ms(),
                message: format!("[nimbus] {dropped} more log lines were dropped"),
            });
        }
        lines
    }
}

/// Splits a stream into lines for `logs`, cutting any line at `MAX_LINE_BYTES`.
async fn capture(mut reader: impl AsyncRead + Unpin, logs: Arc<LogCapture>) {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut line: Vec<u8> = Vec::new();
    loop {
        let read = match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        for &byte in &buffer[..read] {
            if byte == b'\n' {
                logs.push(String::from_utf8_lossy(&line).into_owned());
                line.clear();
            } else if line.len() < MAX_LINE_BYTES {
                line.push(byte);
            }
        }
    }
    if !line.is_empty() {
        logs.push(String::from_utf8_lossy(&line).into_owned());
    }
}

pub struct Environment {
    pub log_stream: String,
    pub started: Instant,
    pub logs: Arc<LogCapture>,
    /// True until the first invocation has been picked up: that one reports the
    /// init duration.
    cold: AtomicBool,
    inbox: mpsc::Sender<Invocation>,
    init_failure: tokio::sync::Mutex<oneshot::Receiver<InitFailure>>,
    exit: watch::Receiver<Option<String>>,
    kill: Arc<Notify>,
    pid: u32,
    _api: RuntimeApi,
}

impl Environment {
    /// Starts the runtime in a sandbox; `spec` gets the Runtime API address added to
    /// its environment.
    pub async fn start(
        sandboxes: &dyn SandboxRuntime,
        mut spec: SandboxSpec,
        log_stream: String,
    ) -> Result<Self, String> {
        let (inbox, inbox_rx) = mpsc::channel(1);
        let (init_tx, init_rx) = oneshot::channel();
        let api = RuntimeApi::start(inbox_rx, init_tx)
            .await
            .map_err(|err| format!("cannot open the Runtime API endpoint: {err}"))?;
        spec.env
            .push(("AWS_LAMBDA_RUNTIME_API".to_owned(), api.address.to_string()));
        let mut sandbox = sandboxes.start(&spec).map_err(|err| err.to_string())?;
        let logs = Arc::new(LogCapture::default());
        for stream in [
            sandbox
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn AsyncRead + Send + Unpin>),
            sandbox
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            tokio::spawn(capture(stream, logs.clone()));
        }
        let pid = sandbox.pid();
        let (exit_tx, exit) = watch::channel(None);
        let kill = Arc::new(Notify::new());
        let killed = kill.clone();
        tokio::spawn(async move {
            let ended = tokio::select! {
                status = sandbox.wait() => match status {
                    Ok(status) => format!("Runtime exited with error: {status}"),
                    Err(err) => format!("Runtime exited with error: {err}"),
                },
                () = killed.notified() => "Runtime was stopped".to_owned(),
            };
            // Whatever the main process left running goes with it.
            sandbox.kill();
            let _ = sandbox.wait().await;
            let _ = exit_tx.send(Some(ended));
        });
        Ok(Self {
            log_stream,
            started: Instant::now(),
            logs,
            cold: AtomicBool::new(true),
            inbox,
            init_failure: tokio::sync::Mutex::new(init_rx),
            exit,
            kill,
            pid,
            _api: api,
        })
    }

    /// Whether the runtime process has ended.
    pub fn is_dead(&self) -> bool {
        self.exit.borrow().is_some()
    }

    /// Stops the runtime and everything it started.
    pub fn destroy(&self) {
        self.kill.notify_one();
    }

    /// The peak resident memory of the runtime process, in MB.
    pub fn max_memory_mb(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb.div_ceil(1024))
    }

    /// Runs one invocation. `init_timeout` bounds a cold start before the runtime asks
    /// for its first invocation; returns the outcome and, for the first invocation of
    /// the environment, how long init took.
    pub async fn run(
        &self,
        request_id: &str,
        payload: Bytes,
        invoked_arn: &str,
        client_context: Option<String>,
        timeout: Duration,
        init_timeout: Duration,
    ) -> (RunOutcome, Option<Duration>) {
        let (picked_tx, picked_rx) = oneshot::channel();
        let (outcome_tx, outcome_rx) = oneshot::channel();
        let invocation = Invocation {
            request_id: request_id.to_owned(),
            payload,
            timeout,
            invoked_arn: invoked_arn.to_owned(),
            client_context,
            picked_up: picked_tx,
            outcome: outcome_tx,
        };
        if self.inbox.try_send(invocation).is_err() {
            return (
                RunOutcome::Exited("Runtime is not accepting invocations".to_owned()),
                None,
            );
        }
        let cold = self.cold.swap(false, Ordering::AcqRel);
        let pickup_limit = if cold { init_timeout } else { timeout };
        let mut exit = self.exit.clone();
        let mut init_failure = self.init_failure.lock().await;
        let picked = tokio::select! {
            picked = picked_rx => picked.is_ok(),
            failure = &mut *init_failure, if cold => {
                let exit_reason = wait_exit(&mut exit, Duration::from_millis(200)).await;
                return (RunOutcome::InitFailed(failure.ok(), exit_reason), None);
            }
            reason = exited(&mut exit) => {
                let outcome = if cold { RunOutcome::InitFailed(None, reason) } else { RunOutcome::Gone };
                return (outcome, None);
            }
            () = tokio::time::sleep(pickup_limit) => false,
        };
        drop(init_failure);
        if !picked {
            let outcome = if cold {
                RunOutcome::InitFailed(
                    None,
                    format!(
                        "Runtime did not finish initializing within {} seconds",
                        init_timeout.as_secs()
                    ),
                )
            } else {
                RunOutcome::TimedOut
            };
            return (outcome, None);
        }
        let init_duration = cold.then(|| self.started.elapsed());
        let outcome = tokio::select! {
            outcome = outcome_rx => match outcome {
                Ok(outcome) => RunOutcome::Runtime(outcome),
                Err(_) => RunOutcome::Exited(exited(&mut exit).await),
            },
            reason = exited(&mut exit) => RunOutcome::Exited(reason),
            () = tokio::time::sleep(timeout) => RunOutcome::TimedOut,
        };
        (outcome, init_duration)
    }
}

impl Drop for Environment {
    fn drop(&mut self) {
        self.destroy();
    }
}

/// Resolves with the reason once the runtime process has ended.
async fn exited(exit: &mut watch::Receiver<Option<String>>) -> String {
    match exit.wait_for(Option::is_some).await {
        Ok(reason) => reason.clone().unwrap_or_default(),
        Err(_) => "Runtime exited".to_owned(),
    }
}

async fn wait_exit(exit: &mut watch::Receiver<Option<String>>, limit: Duration) -> String {
    tokio::time::timeout(limit, exited(exit))
        .await
        .unwrap_or_else(|_| "Runtime reported an init error".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn capture_splits_lines_and_cuts_long_ones() {
        let logs = Arc::new(LogCapture::default());
        let mut input = b"first\nsecond\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
        input.extend(b"\nlast without newline");
        capture(&input[..], logs.clone()).await;
        let lines: Vec<String> = logs.take().into_iter().map(|e| e.message).collect();
        assert_eq!(lines[..2], ["first", "second"]);
        assert_eq!(lines[2].len(), MAX_LINE_BYTES);
        assert_eq!(lines[3], "last without newline");
        assert!(logs.take().is_empty(), "take empties the capture");
    }

    #[test]
    fn capture_keeps_a_bounded_number_of_lines() {
        let logs = LogCapture::default();
        for i in 0..MAX_LINES + 5 {
            logs.push(i.to_string());
        }
        let lines = logs.take();
        assert_eq!(lines.len(), MAX_LINES + 1);
        assert_eq!(
            lines.last().unwrap().message,
            "[nimbus] 5 more log lines were dropped"
        );
    }
}
