//! An execution environment: one sandboxed runtime process with its own Runtime API
//! endpoint, serving one invocation at a time, its output captured line by line.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nimbus_engine::{Exit, Launch, Meter, Sandbox};
use nimbus_logs::LogEvent;
use tokio::net::unix::pipe::Receiver;
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::now_ms;
use crate::runtime_api::{InitFailure, Invocation, RuntimeApi, RuntimeOutcome};

/// CloudWatch Logs' largest event; longer lines are cut.
const MAX_LINE_BYTES: usize = 256 * 1024;
/// Lines and bytes kept per invocation before the rest are dropped (with a note).
const MAX_LINES: usize = 10_000;
const MAX_CAPTURE_BYTES: usize = 4 * 1024 * 1024;

/// How an invocation ended, as far as the environment can tell.
#[derive(Debug)]
pub enum RunOutcome {
    Runtime(RuntimeOutcome),
    TimedOut,
    /// The runtime failed to initialize, reporting why or exiting.
    InitFailed(Option<InitFailure>, String),
    /// The runtime process ended while the invocation was running.
    Exited(Exit),
}

/// A warm runtime had ended before it could pick the invocation up; another
/// environment can run it.
#[derive(Debug)]
pub struct Gone;

#[derive(Default)]
struct Captured {
    lines: Vec<LogEvent>,
    bytes: usize,
    dropped: usize,
}

/// Output lines captured from the runtime, waiting to be attributed to an invocation.
#[derive(Default)]
pub struct LogCapture(Mutex<Captured>);

impl LogCapture {
    pub fn push(&self, message: String) {
        let mut captured = self.0.lock().expect("log capture");
        if captured.lines.len() < MAX_LINES && captured.bytes + message.len() <= MAX_CAPTURE_BYTES {
            captured.bytes += message.len();
            captured.lines.push(LogEvent {
                timestamp: now_ms(),
                message,
            });
        } else {
            captured.dropped += 1;
        }
    }

    /// Everything captured since the last take.
    pub fn take(&self) -> Vec<LogEvent> {
        let Captured {
            mut lines, dropped, ..
        } = std::mem::take(&mut *self.0.lock().expect("log capture"));
        if dropped > 0 {
            lines.push(LogEvent {
                timestamp: now_ms(),
                message: format!("[nimbus] {dropped} more log lines were dropped"),
            });
        }
        lines
    }
}

/// Splits runtime output into lines for `logs`, cutting any line at `MAX_LINE_BYTES`.
#[derive(Default)]
struct LineSplitter {
    line: Vec<u8>,
}

impl LineSplitter {
    fn feed(&mut self, bytes: &[u8], logs: &LogCapture) {
        for &byte in bytes {
            if byte == b'\n' {
                logs.push(String::from_utf8_lossy(&self.line).into_owned());
                self.line.clear();
            } else if self.line.len() < MAX_LINE_BYTES {
                self.line.push(byte);
            }
        }
    }

    fn finish(self, logs: &LogCapture) {
        if !self.line.is_empty() {
            logs.push(String::from_utf8_lossy(&self.line).into_owned());
        }
    }
}

/// One output pipe of the runtime. A background task reads it as output arrives;
/// the invocation path reads whatever is left at the end of an invocation itself, so
/// an invocation's last lines are attributed to it and not to the next one.
struct Output {
    pipe: Receiver,
    splitter: Mutex<LineSplitter>,
}

impl Output {
    /// Reads what the pipe holds now into `logs`; false once the pipe is closed.
    /// `drain` reads the pipe itself rather than through tokio, whose readiness may
    /// not have caught up yet with bytes the kernel already holds: what the
    /// invocation path needs to see all of an invocation's output.
    fn read_available(&self, logs: &LogCapture, drain: bool) -> bool {
        let mut splitter = self.splitter.lock().expect("output splitter");
        let mut buffer = [0u8; 16 * 1024];
        loop {
            let read = if drain {
                nix::unistd::read(&self.pipe, &mut buffer).map_err(std::io::Error::from)
            } else {
                self.pipe.try_read(&mut buffer)
            };
            match read {
                Ok(0) => return false,
                Ok(read) => splitter.feed(&buffer[..read], logs),
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
    }
}

async fn capture(output: Arc<Output>, logs: Arc<LogCapture>) {
    while output.pipe.readable().await.is_ok() && output.read_available(&logs, false) {}
    std::mem::take(&mut *output.splitter.lock().expect("output splitter")).finish(&logs);
}

pub struct Environment {
    pub log_stream: String,
    pub started: Instant,
    logs: Arc<LogCapture>,
    /// True until the first invocation has been picked up: that one reports the
    /// init duration.
    cold: AtomicBool,
    inbox: mpsc::Sender<Invocation>,
    outputs: Vec<Arc<Output>>,
    init_failure: tokio::sync::Mutex<oneshot::Receiver<InitFailure>>,
    exit: watch::Receiver<Option<Exit>>,
    kill: Arc<Notify>,
    meter: Meter,
    _api: RuntimeApi,
    _edge: Option<AbortOnDrop>,
}

/// The port of the Runtime API inside a sandbox, as on Lambda.
const RUNTIME_API_PORT: u16 = 9001;

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Environment {
    /// Starts the runtime in `sandbox` with its own Runtime API endpoint, whose
    /// address is added to the program's environment. `edge` is made reachable at
    /// the same port on the sandbox's own loopback.
    pub async fn start(
        mut sandbox: Sandbox,
        mut launch: Launch,
        log_stream: String,
        edge: Option<std::net::SocketAddr>,
    ) -> Result<Self, String> {
        let (inbox, inbox_rx) = mpsc::channel(1);
        let (init_tx, init_rx) = oneshot::channel();
        let api = sandbox
            .listen(RUNTIME_API_PORT)
            .and_then(|listener| RuntimeApi::serve(listener, inbox_rx, init_tx))
            .map_err(|err| format!("cannot open the Runtime API endpoint: {err}"))?;
        launch
            .program
            .env
            .push(("AWS_LAMBDA_RUNTIME_API".to_owned(), api.address.to_string()));
        let edge = match edge {
            Some(edge) if sandbox.isolated() && edge.port() != RUNTIME_API_PORT => Some(
                sandbox
                    .forward(edge.port(), edge)
                    .map(AbortOnDrop)
                    .map_err(|err| format!("cannot reach nimbus from the sandbox: {err}"))?,
            ),
            _ => None,
        };
        let pipes = sandbox.launch(launch).map_err(|err| err.to_string())?;
        let logs = Arc::new(LogCapture::default());
        let mut outputs = Vec::new();
        for fd in pipes {
            let pipe = Receiver::from_owned_fd(fd)
                .map_err(|err| format!("cannot read the runtime's output: {err}"))?;
            let output = Arc::new(Output {
                pipe,
                splitter: Mutex::new(LineSplitter::default()),
            });
            outputs.push(output.clone());
            tokio::spawn(capture(output, logs.clone()));
        }
        let meter = sandbox.meter();
        let (exit_tx, exit) = watch::channel(None);
        let kill = Arc::new(Notify::new());
        let killed = kill.clone();
        tokio::spawn(async move {
            let ended = tokio::select! {
                exit = sandbox.wait() => exit,
                () = killed.notified() => Exit {
                    reason: STOPPED.to_owned(),
                    out_of_memory: false,
                },
            };
            // Whatever the main process left running goes with it.
            sandbox.kill();
            drop(sandbox);
            let _ = exit_tx.send(Some(ended));
        });
        Ok(Self {
            log_stream,
            started: Instant::now(),
            logs,
            cold: AtomicBool::new(true),
            inbox,
            outputs,
            init_failure: tokio::sync::Mutex::new(init_rx),
            exit,
            kill,
            meter,
            _api: api,
            _edge: edge,
        })
    }

    /// The output lines since the last take, after reading what the runtime has
    /// already written.
    pub fn take_logs(&self) -> Vec<LogEvent> {
        for output in &self.outputs {
            output.read_available(&self.logs, true);
        }
        self.logs.take()
    }

    /// Whether the runtime process has ended.
    pub fn is_dead(&self) -> bool {
        self.exit.borrow().is_some()
    }

    /// Stops the runtime and everything it started.
    pub fn destroy(&self) {
        self.kill.notify_one();
    }

    /// The most memory the sandbox has used at once, in MB.
    pub fn max_memory_mb(&self) -> u64 {
        self.meter.peak_mb()
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
    ) -> Result<(RunOutcome, Option<Duration>), Gone> {
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
        let cold = self.cold.swap(false, Ordering::AcqRel);
        if self.is_dead() || self.inbox.try_send(invocation).is_err() {
            if !cold {
                return Err(Gone);
            }
            return Ok((
                RunOutcome::InitFailed(None, exit_message(&exited(&mut self.exit.clone()).await)),
                None,
            ));
        }
        let pickup_limit = if cold { init_timeout } else { timeout };
        let mut exit = self.exit.clone();
        let mut init_failure = self.init_failure.lock().await;
        let picked = tokio::select! {
            picked = picked_rx => picked.is_ok(),
            failure = &mut *init_failure, if cold => {
                let exit_reason = wait_exit(&mut exit, Duration::from_millis(200)).await;
                return Ok((RunOutcome::InitFailed(failure.ok(), exit_reason), None));
            }
            reason = exited(&mut exit) => {
                if !cold {
                    return Err(Gone);
                }
                return Ok((RunOutcome::InitFailed(None, exit_message(&reason)), None));
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
            return Ok((outcome, None));
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
        Ok((outcome, init_duration))
    }
}

impl Drop for Environment {
    fn drop(&mut self) {
        self.destroy();
    }
}

const STOPPED: &str = "Runtime was stopped";

/// How the end of a runtime is worded in errors and logs.
pub fn exit_message(exit: &Exit) -> String {
    if exit.reason == STOPPED {
        STOPPED.to_owned()
    } else {
        format!("Runtime exited with error: {}", exit.reason)
    }
}

/// Resolves once the runtime process has ended.
async fn exited(exit: &mut watch::Receiver<Option<Exit>>) -> Exit {
    match exit.wait_for(Option::is_some).await {
        Ok(exit) => exit.clone().expect("waited for an exit"),
        Err(_) => Exit {
            reason: STOPPED.to_owned(),
            out_of_memory: false,
        },
    }
}

async fn wait_exit(exit: &mut watch::Receiver<Option<Exit>>, limit: Duration) -> String {
    tokio::time::timeout(limit, exited(exit))
        .await
        .map(|exit| exit_message(&exit))
        .unwrap_or_else(|_| "Runtime reported an init error".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_split_into_lines_and_long_ones_are_cut() {
        let logs = LogCapture::default();
        let mut input = b"first\nsecond\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
        input.extend(b"\nlast without newline");
        let mut splitter = LineSplitter::default();
        for chunk in input.chunks(1000) {
            splitter.feed(chunk, &logs);
        }
        splitter.finish(&logs);
        let lines: Vec<String> = logs.take().into_iter().map(|e| e.message).collect();
        assert_eq!(lines[..2], ["first", "second"]);
        assert_eq!(lines[2].len(), MAX_LINE_BYTES);
        assert_eq!(lines[3], "last without newline");
        assert!(logs.take().is_empty(), "take empties the capture");
    }

    #[test]
    fn capture_keeps_a_bounded_number_of_bytes() {
        let logs = LogCapture::default();
        for _ in 0..(MAX_CAPTURE_BYTES / MAX_LINE_BYTES) + 3 {
            logs.push("y".repeat(MAX_LINE_BYTES));
        }
        let lines = logs.take();
        assert_eq!(lines.len(), MAX_CAPTURE_BYTES / MAX_LINE_BYTES + 1);
        assert_eq!(
            lines.last().unwrap().message,
            "[nimbus] 3 more log lines were dropped"
        );
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
