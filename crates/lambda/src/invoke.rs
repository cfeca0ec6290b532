//! Invoking functions: concurrency limits, warm environments reused one invocation at
//! a time, cold starts when none is idle, timeouts and crashes, and each invocation's
//! log lines with Lambda's START, END and REPORT.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::StatusCode;
use nimbus_edge::AwsError;
use nimbus_engine::{Launch, OPT_DIR, Pool, Program, ReadOnly, SandboxError, TASK_DIR, Template};
use nimbus_logs::{LogEvent, LogSink};

use crate::concurrency::{self, Ledger};
use crate::environment::{Environment, RunOutcome, exit_message};
use crate::error::service;
use crate::functions::{Functions, MIN_UNRESERVED};
use crate::images::{self, ImageCode, UnpackedImage};
use crate::interpreters::Interpreters;
use crate::model::FunctionConfiguration;
use crate::names::FunctionRef;
use crate::now_ms;
use crate::runtime_api::{MAX_RESPONSE_BYTES, RuntimeOutcome, error_json};
use crate::runtimes::{self, RuntimeKind};

/// How much of an invocation's log `LogType: Tail` returns.
const TAIL_BYTES: usize = 4096;
/// How long an environment's role credentials last, and the age after which it is no
/// longer reused, so no invocation runs on credentials about to expire.
pub const ROLE_SESSION: Duration = Duration::from_secs(12 * 3600);
const MAX_ENVIRONMENT_AGE: Duration = Duration::from_secs(11 * 3600);
/// nimbus's own runtime clients for the managed runtimes.
const PYTHON_RUNTIME: &str = include_str!("../runtimes/python.py");
const NODE_RUNTIME: &str = include_str!("../runtimes/node.js");

#[derive(Debug, Clone)]
pub struct InvokerSettings {
    /// Idle environments are shut down after this long.
    pub keep_alive: Duration,
    /// How long a runtime may take to initialize before its first invocation.
    pub init_timeout: Duration,
    /// nimbus's edge, which functions reach at `AWS_ENDPOINT_URL`.
    pub edge: Option<SocketAddr>,
}

impl Default for InvokerSettings {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(300),
            init_timeout: Duration::from_secs(10),
            edge: None,
        }
    }
}

/// Where the managed runtimes' clients are shown inside sandboxes.
const RUNTIME_DIR: &str = "/var/runtime";
/// Lambda's default `EphemeralStorage`.
const DEFAULT_TMP_MB: u64 = 512;

pub struct InvokeRequest {
    pub function: FunctionRef,
    pub request_id: String,
    pub payload: Bytes,
    pub client_context: Option<String>,
    pub tail: bool,
}

#[derive(Debug)]
pub struct InvokeResult {
    pub executed_version: String,
    pub payload: Bytes,
    /// `Unhandled` when the function failed.
    pub function_error: Option<&'static str>,
    /// The last 4 KB of the invocation's log, base64, when asked for.
    pub log_tail: Option<String>,
}

/// Where a function's code and its layers are unpacked. Later layers take precedence,
/// as when AWS extracts them in order into `/opt`.
struct CodeDirs {
    task: PathBuf,
    layers: Vec<PathBuf>,
    /// The image of a container image function, unpacked when an environment starts.
    image: Option<ImageCode>,
}

/// The code and layers as the runtime sees them: the host's directories without
/// isolation; `/var/task` and one merged `/opt` inside a sandbox.
struct View {
    task: PathBuf,
    layers: Vec<PathBuf>,
}

impl View {
    fn of(dirs: &CodeDirs, isolated: bool) -> Self {
        if isolated {
            Self {
                task: TASK_DIR.into(),
                layers: if dirs.layers.is_empty() {
                    Vec::new()
                } else {
                    vec![OPT_DIR.into()]
                },
            }
        } else {
            Self {
                task: dirs.task.clone(),
                layers: dirs.layers.clone(),
            }
        }
    }

    /// `<layer>/<sub>` of every layer, latest first, joined by `:`; with `leading`,
    /// the result starts with `:` when not empty.
    fn layer_paths(&self, sub: &str, leading: bool) -> String {
        let separator = ":";
        let joined: Vec<String> = self
            .layers
            .iter()
            .rev()
            .map(|dir| dir.join(sub).to_string_lossy().into_owned())
            .collect();
        let joined = joined.join(separator);
        if leading && !joined.is_empty() {
            format!("{separator}{joined}")
        } else {
            joined
        }
    }
}

/// Environments of one configuration of one function version are interchangeable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    function: String,
    version: String,
    revision: String,
}

struct Idle {
    env: Arc<Environment>,
    since: Instant,
}

#[derive(Default)]
struct State {
    idle: HashMap<PoolKey, Vec<Idle>>,
    /// Invocations running per function, and those drawing on the unreserved pool.
    busy: HashMap<String, i64>,
    busy_unreserved: i64,
    /// Bumped when a function changes, so older environments are not reused.
    generation: HashMap<String, u64>,
}

pub struct Invoker {
    pub(crate) functions: Arc<Functions>,
    sandboxes: Arc<Pool>,
    interpreters: Interpreters,
    runtime_dir: ReadOnly,
    logs: LogSink,
    state: Mutex<State>,
    settings: InvokerSettings,
    region: String,
    /// The limits' shares across the deployment, on a store other nodes may share.
    ledger: std::sync::OnceLock<Arc<Ledger>>,
}

/// A concurrency slot, given back when dropped.
struct Slot<'a> {
    invoker: &'a Invoker,
    function: String,
    unreserved: bool,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut state = self.invoker.state.lock().expect("invoker state");
        if let Some(busy) = state.busy.get_mut(&self.function) {
            *busy -= 1;
        }
        if self.unreserved {
            state.busy_unreserved -= 1;
        }
    }
}

fn throttled(reason: &str) -> AwsError {
    AwsError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequestsException",
        "Rate Exceeded.",
    )
    .with_field("Reason", reason)
}

fn error_body(error_type: &str, message: String) -> Bytes {
    Bytes::from(error_json(error_type, &message))
}

fn log_stream_name(version: &str) -> String {
    let date = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!("[year]/[month]/[day]"))
        .expect("dates format");
    format!("{date}/[{version}]{}", uuid::Uuid::new_v4().simple())
}

impl Invoker {
    /// Writes the managed runtimes' clients under `runtime_dir`, starts the reaper of
    /// idle environments and has sandboxes for the machine's runtimes pre-started.
    pub fn start(
        functions: Arc<Functions>,
        sandboxes: Arc<Pool>,
        runtime_dir: PathBuf,
        logs: LogSink,
        settings: InvokerSettings,
        region: &str,
    ) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(&runtime_dir)?;
        std::fs::write(runtime_dir.join("python.py"), PYTHON_RUNTIME)?;
        std::fs::write(runtime_dir.join("node.js"), NODE_RUNTIME)?;
        let invoker = Arc::new(Self {
            functions,
            sandboxes,
            interpreters: Interpreters::default(),
            runtime_dir: ReadOnly {
                source: runtime_dir,
                target: RUNTIME_DIR.into(),
            },
            logs,
            state: Mutex::new(State::default()),
            settings,
            region: region.to_owned(),
            ledger: std::sync::OnceLock::new(),
        });
        let reaper = Arc::downgrade(&invoker);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(invoker) = reaper.upgrade() else {
                    return;
                };
                invoker.reap();
            }
        });
        let prewarm = invoker.clone();
        tokio::task::spawn_blocking(move || {
            for runtime in ["provided.al2023", "python3.12", "nodejs20.x"] {
                if let Ok(template) = prewarm.template(runtime, DEFAULT_TMP_MB) {
                    prewarm.sandboxes.fill(template);
                }
            }
        });
        Ok(invoker)
    }

    /// What every sandbox of a runtime needs: its interpreter and nimbus's runtime
    /// client for managed runtimes, nothing for `provided`.
    fn template(&self, runtime: &str, tmp_mb: u64) -> Result<Template, (String, String)> {
        let kind = runtimes::check(runtime)
            .map_err(|err| ("Runtime.InvalidRuntime".to_owned(), err.message))?;
        let mounts = match kind {
            RuntimeKind::Provided => Vec::new(),
            RuntimeKind::Python | RuntimeKind::Node => {
                let interpreter = self.resolve_interpreter(runtime, kind)?;
                std::iter::once(self.runtime_dir.clone())
                    .chain(interpreter.dirs.iter().map(|dir| ReadOnly {
                        source: dir.clone(),
                        target: dir.clone(),
                    }))
                    .collect()
            }
        };
        Ok(Template {
            mounts,
            tmp_mb,
            image: Vec::new(),
        })
    }

    fn resolve_interpreter(
        &self,
        runtime: &str,
        kind: RuntimeKind,
    ) -> Result<crate::interpreters::Interpreter, (String, String)> {
        self.interpreters.resolve(runtime, kind).ok_or_else(|| {
            (
                "Runtime.InvalidRuntime".to_owned(),
                format!("No interpreter for {runtime} is installed on this nimbus server"),
            )
        })
    }

    /// Finds the machine's interpreters (once; what the first invoke of a managed
    /// runtime would otherwise wait for).
    pub fn discover_interpreters(&self) {
        self.interpreters.discover();
    }

    /// The interpreter that runs a managed runtime here, when the machine has one.
    pub fn interpreter(&self, runtime: &str) -> Option<crate::interpreters::Interpreter> {
        let kind = runtimes::check(runtime).ok()?;
        self.interpreters.resolve(runtime, kind)
    }

    fn reap(&self) {
        let keep_alive = self.settings.keep_alive;
        let mut state = self.state.lock().expect("invoker state");
        for envs in state.idle.values_mut() {
            envs.retain(|idle| idle.since.elapsed() < keep_alive && !idle.env.is_dead());
        }
        state.idle.retain(|_, envs| !envs.is_empty());
    }

    /// The functions with an idle environment here, by name, sorted.
    pub fn idle_functions(&self) -> Vec<String> {
        let state = self.state.lock().expect("invoker state");
        let mut names: Vec<String> = state
            .idle
            .iter()
            .filter(|(_, envs)| !envs.is_empty())
            .map(|(key, _)| key.function.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Invocations running here now.
    pub fn running(&self) -> i64 {
        let state = self.state.lock().expect("invoker state");
        state.busy.values().sum()
    }

    /// Whether a function has an idle environment here.
    pub fn has_idle(&self, function: &str) -> bool {
        let state = self.state.lock().expect("invoker state");
        state
            .idle
            .iter()
            .any(|(key, envs)| key.function == function && !envs.is_empty())
    }

    /// Shuts down every idle environment, at server shutdown.
    pub fn shutdown(&self) {
        let idle = std::mem::take(&mut self.state.lock().expect("invoker state").idle);
        drop(idle);
    }

    /// Shuts down a function's idle environments and keeps its busy ones from being
    /// reused, after its code or configuration changed or it was deleted.
    pub fn retire(&self, function: &str) {
        let mut state = self.state.lock().expect("invoker state");
        *state.generation.entry(function.to_owned()).or_default() += 1;
        state.idle.retain(|key, _| key.function != function);
    }

    /// Holds the concurrency limits across the deployment with `ledger`, giving back
    /// unused slots twice a second.
    pub fn share_limits(self: &Arc<Self>, ledger: Arc<Ledger>) {
        if self.ledger.set(ledger.clone()).is_err() {
            return;
        }
        let invoker = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let Some(invoker) = invoker.upgrade() else {
                    return;
                };
                let ledger = ledger.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    ledger.give_back(|pool| invoker.busy_in(pool))
                })
                .await;
            }
        });
    }

    /// The invocations running here that count against a pool of the ledger.
    fn busy_in(&self, pool: &str) -> i64 {
        let state = self.state.lock().expect("invoker state");
        if pool == concurrency::UNRESERVED {
            state.busy_unreserved
        } else {
            state.busy.get(pool).copied().unwrap_or(0)
        }
    }

    /// A slot within the function's reserved concurrency, or within the account's
    /// unreserved pool; across the deployment when other nodes share it.
    async fn acquire(&self, function: &str, reserved: Option<i64>) -> Result<Slot<'_>, AwsError> {
        let slot = self.acquire_here(function, reserved)?;
        let Some(ledger) = self.ledger.get().filter(|l| l.shared()) else {
            return Ok(slot);
        };
        let (pool, limit, reason) = match reserved {
            Some(limit) => (
                function,
                limit,
                "ReservedFunctionConcurrentInvocationLimitExceeded",
            ),
            None => (
                concurrency::UNRESERVED,
                self.functions.account_concurrency() - self.functions.reserved_total()?,
                "ConcurrentInvocationLimitExceeded",
            ),
        };
        let busy = self.busy_in(pool);
        if ledger.covers(pool, busy) {
            return Ok(slot);
        }
        let (ledger, owned_pool) = (ledger.clone(), pool.to_owned());
        let taken = tokio::task::spawn_blocking(move || ledger.take(&owned_pool, limit, busy))
            .await
            .map_err(|_| service("An internal error occurred."))?;
        match taken {
            Ok(true) => Ok(slot),
            Ok(false) => Err(throttled(reason)),
            Err(err) => {
                tracing::error!(error = %err, "taking a concurrency slot failed");
                Err(AwsError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceException",
                    "The concurrency limits could not be read; try again.",
                ))
            }
        }
    }

    /// A slot within the limits as this node alone counts them.
    fn acquire_here(&self, function: &str, reserved: Option<i64>) -> Result<Slot<'_>, AwsError> {
        let mut state = self.state.lock().expect("invoker state");
        let busy = state.busy.get(function).copied().unwrap_or(0);
        match reserved {
            Some(limit) if busy >= limit => {
                return Err(throttled(
                    "ReservedFunctionConcurrentInvocationLimitExceeded",
                ));
            }
            Some(_) => {}
            None => {
                // The reservations of all functions only matter once the unreserved
                // pool nears its guaranteed minimum.
                if state.busy_unreserved >= MIN_UNRESERVED {
                    let reserved_total = self.functions.reserved_total()?;
                    if state.busy_unreserved
                        >= self.functions.account_concurrency() - reserved_total
                    {
                        return Err(throttled("ConcurrentInvocationLimitExceeded"));
                    }
                }
                state.busy_unreserved += 1;
            }
        }
        *state.busy.entry(function.to_owned()).or_default() += 1;
        Ok(Slot {
            invoker: self,
            function: function.to_owned(),
            unreserved: reserved.is_none(),
        })
    }

    fn take_idle(&self, key: &PoolKey) -> Option<Arc<Environment>> {
        let mut state = self.state.lock().expect("invoker state");
        let envs = state.idle.get_mut(key)?;
        while let Some(idle) = envs.pop() {
            if !idle.env.is_dead() {
                return Some(idle.env);
            }
        }
        None
    }

    fn release(&self, key: PoolKey, env: Arc<Environment>, generation: u64) {
        let mut state = self.state.lock().expect("invoker state");
        // An environment is not reused once its role credentials near their expiry:
        // the next one starts with fresh ones.
        if state.generation.get(&key.function).copied().unwrap_or(0) != generation
            || env.is_dead()
            || env.started.elapsed() > MAX_ENVIRONMENT_AGE
        {
            return;
        }
        // A newer configuration of the same version retires this one.
        state.idle.retain(|k, _| {
            !(k.function == key.function && k.version == key.version && k.revision != key.revision)
        });
        state.idle.entry(key).or_default().push(Idle {
            env,
            since: Instant::now(),
        });
    }

    fn generation(&self, function: &str) -> u64 {
        self.state
            .lock()
            .expect("invoker state")
            .generation
            .get(function)
            .copied()
            .unwrap_or(0)
    }

    /// The sandbox a function needs and what to launch in it.
    fn plan(
        &self,
        config: &FunctionConfiguration,
        dirs: &CodeDirs,
        log_stream: &str,
        credentials: (String, String, String),
    ) -> Result<(Template, Launch), (String, String)> {
        let isolated = self.sandboxes.isolation().isolates();
        let view = View::of(dirs, isolated);
        let runtime = config.runtime.as_deref().unwrap_or_default();
        let kind = runtimes::check(runtime)
            .map_err(|err| ("Runtime.InvalidRuntime".to_owned(), err.message))?;
        let tmp_mb = config.ephemeral_storage.size as u64;
        let template = self.template(runtime, tmp_mb)?;
        let runtime_dir = if isolated {
            &self.runtime_dir.target
        } else {
            &self.runtime_dir.source
        };
        // Where python finds packages: the layers' python/ directories first, then the
        // interpreter's own packages (named here because it starts without `site`).
        let mut python_path = view.layer_paths("python", false);
        let (program, args, execution_env) = match kind {
            RuntimeKind::Provided => {
                // The function's own bootstrap, else the last layer's (at /opt on AWS).
                let found = bootstrap(dirs, &view).ok_or_else(|| {
                    (
                        "Runtime.InvalidEntrypoint".to_owned(),
                        "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]"
                            .to_owned(),
                    )
                })?;
                (found, Vec::new(), format!("AWS_Lambda_{runtime}"))
            }
            RuntimeKind::Python | RuntimeKind::Node => {
                let interpreter = self.resolve_interpreter(runtime, kind)?;
                let client = |name: &str| runtime_dir.join(name).to_string_lossy().into_owned();
                let args = if kind == RuntimeKind::Python {
                    if !interpreter.packages.is_empty() {
                        if !python_path.is_empty() {
                            python_path.push(':');
                        }
                        python_path.push_str(&interpreter.packages);
                    }
                    // Without `site` the interpreter starts in a fraction of the time;
                    // its packages are on PYTHONPATH instead.
                    vec!["-S".to_owned(), client("python.py")]
                } else {
                    vec![client("node.js")]
                };
                (
                    interpreter.program,
                    args,
                    format!("AWS_Lambda_{}", interpreter.runtime),
                )
            }
        };
        let task = view.task.to_string_lossy().into_owned();
        let mut env: Vec<(String, String)> = vec![
            (
                "_HANDLER".into(),
                config.handler.clone().unwrap_or_default(),
            ),
            ("LAMBDA_TASK_ROOT".into(), task.clone()),
            (
                "LAMBDA_RUNTIME_DIR".into(),
                runtime_dir.to_string_lossy().into_owned(),
            ),
            ("AWS_EXECUTION_ENV".into(), execution_env),
            ("LANG".into(), "en_US.UTF-8".into()),
            (
                "PATH".into(),
                format!(
                    "/usr/local/bin:/usr/bin:/bin{}",
                    view.layer_paths("bin", true)
                ),
            ),
            (
                "LD_LIBRARY_PATH".into(),
                format!("{task}/lib{}", view.layer_paths("lib", true)),
            ),
            ("PYTHONPATH".into(), python_path),
            (
                "NODE_PATH".into(),
                view.layer_paths("nodejs/node_modules", false),
            ),
            ("PYTHONUNBUFFERED".into(), "1".into()),
        ];
        env.extend(self.function_env(config, log_stream, credentials));
        let launch = Launch {
            program: Program {
                program,
                args,
                env,
                workdir: view.task,
            },
            task: dirs.task.clone(),
            layers: dirs.layers.clone(),
            memory_mb: config.memory_size as u64,
        };
        Ok((template, launch))
    }

    /// The environment every runtime of a function gets, whatever its package: its
    /// identity, region, role credentials and nimbus's endpoint, then its own
    /// variables.
    fn function_env(
        &self,
        config: &FunctionConfiguration,
        log_stream: &str,
        credentials: (String, String, String),
    ) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = vec![
            (
                "AWS_LAMBDA_FUNCTION_NAME".into(),
                config.function_name.clone(),
            ),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(),
                config.memory_size.to_string(),
            ),
            ("AWS_LAMBDA_FUNCTION_VERSION".into(), config.version.clone()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME".into(),
                config.logging_config.log_group.clone(),
            ),
            ("AWS_LAMBDA_LOG_STREAM_NAME".into(), log_stream.to_owned()),
            ("AWS_LAMBDA_INITIALIZATION_TYPE".into(), "on-demand".into()),
            ("AWS_REGION".into(), self.region.clone()),
            ("AWS_DEFAULT_REGION".into(), self.region.clone()),
            ("TZ".into(), ":UTC".into()),
            ("AWS_ACCESS_KEY_ID".into(), credentials.0),
            ("AWS_SECRET_ACCESS_KEY".into(), credentials.1),
            ("AWS_SESSION_TOKEN".into(), credentials.2),
        ];
        if let Some(edge) = self.settings.edge {
            let host = if edge.ip().is_unspecified() {
                "127.0.0.1".to_owned()
            } else {
                edge.ip().to_string()
            };
            env.push((
                "AWS_ENDPOINT_URL".into(),
                format!("http://{host}:{}", edge.port()),
            ));
        }
        if let Some(vars) = &config.environment {
            env.extend(vars.variables.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        env
    }

    /// The sandbox of a container image function, rooted in its image, and its
    /// entrypoint and command to launch there.
    fn plan_image(
        &self,
        config: &FunctionConfiguration,
        image: &UnpackedImage,
        log_stream: &str,
        credentials: (String, String, String),
    ) -> Result<(Template, Launch), (String, String)> {
        if !self.sandboxes.isolation().isolates() {
            return Err((
                "Runtime.InvalidEntrypoint".to_owned(),
                "Container image functions need an OCI runtime (--isolation oci)".to_owned(),
            ));
        }
        let image_config = config
            .image_config_response
            .as_ref()
            .map(|r| &r.image_config);
        let (program, args, workdir) = images::program(image, image_config).ok_or_else(|| {
            (
                "Runtime.InvalidEntrypoint".to_owned(),
                "The image has neither an entrypoint nor a command".to_owned(),
            )
        })?;
        let handler = image_config
            .and_then(|c| c.command.clone())
            .unwrap_or_else(|| image.cmd.clone());
        let mut env: Vec<(String, String)> = image
            .env
            .iter()
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        env.extend([
            (
                "_HANDLER".to_owned(),
                handler.first().cloned().unwrap_or_default(),
            ),
            ("LAMBDA_TASK_ROOT".to_owned(), TASK_DIR.to_owned()),
            ("LAMBDA_RUNTIME_DIR".to_owned(), "/var/runtime".to_owned()),
        ]);
        env.extend(self.function_env(config, log_stream, credentials));
        let template = Template {
            mounts: Vec::new(),
            tmp_mb: config.ephemeral_storage.size as u64,
            image: image.layers.clone(),
        };
        let launch = Launch {
            program: Program {
                program: program.into(),
                args,
                env,
                workdir: workdir.into(),
            },
            // Not shown: the image holds the code.
            task: PathBuf::new(),
            layers: Vec::new(),
            memory_mb: config.memory_size as u64,
        };
        Ok((template, launch))
    }

    /// Starts a fresh environment, or says why the function cannot have one.
    async fn start_environment(
        &self,
        config: &FunctionConfiguration,
        dirs: &CodeDirs,
    ) -> Result<Result<Arc<Environment>, (String, String)>, AwsError> {
        let log_stream = log_stream_name(&config.version);
        let roles = self.functions.roles.clone();
        let (role, session) = (config.role.clone(), config.function_name.clone());
        let credentials = match tokio::task::spawn_blocking(move || {
            roles.credentials(&role, &session)
        })
        .await
        {
            Ok(Ok(credentials)) => credentials,
            Ok(Err(reason)) => {
                return Ok(Err((
                    "AccessDeniedException".to_owned(),
                    format!(
                        "The role defined for the function cannot be assumed by Lambda: {reason}"
                    ),
                )));
            }
            Err(_) => return Err(service("An internal error occurred.")),
        };
        let planned = match &dirs.image {
            Some(image) => {
                let (functions, image) = (self.functions.clone(), image.clone());
                let unpacked = tokio::task::spawn_blocking(move || functions.unpack_image(&image))
                    .await
                    .map_err(|_| service("An internal error occurred."))?;
                match unpacked {
                    Ok(unpacked) => self.plan_image(config, &unpacked, &log_stream, credentials),
                    Err(reason) => Err((
                        "Runtime.InvalidEntrypoint".to_owned(),
                        format!("The function's image cannot be used: {reason}"),
                    )),
                }
            }
            None => self.plan(config, dirs, &log_stream, credentials),
        };
        let (template, launch) = match planned {
            Ok(plan) => plan,
            Err(reason) => return Ok(Err(reason)),
        };
        let sandbox = self.sandboxes.take(&template).await.map_err(|err| {
            tracing::error!(error = %err, "creating a sandbox failed");
            match err {
                SandboxError::Unavailable(message) => service(message),
                _ => service("The execution environment could not be started."),
            }
        })?;
        let env = Environment::start(sandbox, launch, log_stream, self.settings.edge)
            .await
            .map_err(|err| {
                tracing::error!(error = %err, "starting an execution environment failed");
                service("The execution environment could not be started.")
            })?;
        Ok(Ok(Arc::new(env)))
    }

    pub async fn invoke(&self, request: InvokeRequest) -> Result<InvokeResult, AwsError> {
        let roll = (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64;
        // Function records are cached, so a warm invoke reads nothing from disk here.
        let routed = self.functions.route_alias(request.function.clone(), roll)?;
        let resolved = self.functions.resolve_active(&routed)?;
        let ready = std::iter::once(&resolved.code)
            .chain(&resolved.layers)
            .map(|code| self.functions.ready_dir(code))
            .collect::<Option<Vec<PathBuf>>>();
        let dirs = match ready {
            Some(mut ready) => CodeDirs {
                task: ready.remove(0),
                layers: ready,
                image: resolved.image.clone(),
            },
            None => {
                let functions = self.functions.clone();
                let (code, layers) = (resolved.code.clone(), resolved.layers.clone());
                let image = resolved.image.clone();
                tokio::task::spawn_blocking(move || -> Result<CodeDirs, AwsError> {
                    Ok(CodeDirs {
                        task: functions.code_dir(&code)?,
                        layers: layers
                            .iter()
                            .map(|layer| functions.code_dir(layer))
                            .collect::<Result<_, _>>()?,
                        image,
                    })
                })
                .await
                .map_err(|_| service("An internal error occurred."))??
            }
        };
        let (record, config) = (resolved.record, resolved.config);

        let _slot = self
            .acquire(&config.function_name, record.reserved_concurrency)
            .await?;
        let key = PoolKey {
            function: config.function_name.clone(),
            version: config.version.clone(),
            revision: config.revision_id.clone(),
        };
        let generation = self.generation(&key.function);
        let id = &request.request_id;
        let timeout = Duration::from_secs(config.timeout.max(1) as u64);
        let start_line = LogEvent {
            timestamp: now_ms(),
            message: format!("START RequestId: {id} Version: {}", config.version),
        };
        let started_at = Instant::now();
        // A warm environment that died while idle is replaced by a fresh one.
        let (env, outcome, init_duration) = loop {
            let env = match self.take_idle(&key) {
                Some(env) => env,
                None => match self.start_environment(&config, &dirs).await? {
                    Ok(env) => env,
                    Err((error_type, message)) => {
                        return Ok(InvokeResult {
                            executed_version: config.version.clone(),
                            payload: error_body(&error_type, message),
                            function_error: Some("Unhandled"),
                            log_tail: None,
                        });
                    }
                },
            };
            let ran = env
                .run(
                    id,
                    request.payload.clone(),
                    &config.function_arn,
                    request.client_context.clone(),
                    timeout,
                    self.settings.init_timeout,
                )
                .await;
            if let Ok((outcome, init_duration)) = ran {
                break (env, outcome, init_duration);
            }
        };
        // Init is reported apart, as Lambda does.
        let duration = started_at
            .elapsed()
            .saturating_sub(init_duration.unwrap_or_default());

        let mut keep = false;
        let mut extra_lines = Vec::new();
        let (payload, failed) = match outcome {
            RunOutcome::Runtime(RuntimeOutcome::Response(body)) => {
                keep = true;
                (body, false)
            }
            RunOutcome::Runtime(RuntimeOutcome::Error { error_type, body }) => {
                keep = true;
                let body = if body.is_empty() {
                    error_body(
                        error_type.as_deref().unwrap_or("Unhandled"),
                        "The function reported an error".to_owned(),
                    )
                } else {
                    body
                };
                (body, true)
            }
            RunOutcome::Runtime(RuntimeOutcome::ResponseTooLarge) => {
                keep = true;
                let message = format!(
                    "Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
                );
                (error_body("Function.ResponseSizeTooLarge", message), true)
            }
            RunOutcome::TimedOut => {
                let message = format!(
                    "RequestId: {id} Error: Task timed out after {:.2} seconds",
                    timeout.as_secs_f64()
                );
                extra_lines.push(format!(
                    "{} {id} Task timed out after {:.2} seconds",
                    iso_now(),
                    timeout.as_secs_f64()
                ));
                (error_body("Sandbox.Timedout", message), true)
            }
            RunOutcome::Exited(exit) => {
                let error_type = if exit.out_of_memory {
                    "Runtime.OutOfMemory"
                } else {
                    "Runtime.ExitError"
                };
                let reason = exit_message(&exit);
                let message = format!("RequestId: {id} Error: {reason}");
                extra_lines.push(format!("RequestId: {id} Error: {reason}\n{error_type}"));
                (error_body(error_type, message), true)
            }
            RunOutcome::InitFailed(Some(report), _) if !report.body.is_empty() => {
                (report.body, true)
            }
            RunOutcome::InitFailed(report, reason) => {
                let error_type = report
                    .and_then(|r| r.error_type)
                    .unwrap_or_else(|| "Runtime.InitError".to_owned());
                extra_lines.push(format!(
                    "INIT_REPORT Status: error\tError Type: {error_type}"
                ));
                (
                    error_body(&error_type, format!("RequestId: {id} Error: {reason}")),
                    true,
                )
            }
        };
        let max_memory = env.max_memory_mb();
        // The output is taken before the environment can serve anyone else.
        let output = env.take_logs();
        if keep {
            self.release(key, env.clone(), generation);
        } else {
            env.destroy();
        }

        let mut report = format!(
            "REPORT RequestId: {id}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {max_memory} MB",
            duration.as_secs_f64() * 1000.0,
            duration.as_micros().div_ceil(1000).max(1),
            config.memory_size,
        );
        if let Some(init) = init_duration {
            report.push_str(&format!(
                "\tInit Duration: {:.2} ms",
                init.as_secs_f64() * 1000.0
            ));
        }
        let mut lines = vec![start_line];
        lines.extend(output);
        lines.extend(extra_lines.into_iter().map(|message| LogEvent {
            timestamp: now_ms(),
            message,
        }));
        lines.push(LogEvent {
            timestamp: now_ms(),
            message: format!("END RequestId: {id}"),
        });
        lines.push(LogEvent {
            timestamp: now_ms(),
            message: report,
        });
        let log_tail = request.tail.then(|| tail(&lines));
        // Lambda writes a function's logs as its execution role: a role without
        // logs permissions (no AWSLambdaBasicExecutionRole) gets none, as on AWS.
        let group = &config.logging_config.log_group;
        let stream_arn = format!(
            "arn:aws:logs:{}:{}:log-group:{group}:log-stream:{}",
            self.region, self.functions.account, env.log_stream
        );
        if self
            .functions
            .roles
            .allows(&config.role, "logs:PutLogEvents", &stream_arn)
        {
            self.logs.append(group, &env.log_stream, lines).await;
        }
        Ok(InvokeResult {
            executed_version: config.version,
            payload,
            function_error: failed.then_some("Unhandled"),
            log_tail,
        })
    }
}

/// The runtime's `bootstrap` as the sandbox sees it: the function's own, else the
/// last layer's.
fn bootstrap(dirs: &CodeDirs, view: &View) -> Option<PathBuf> {
    if dirs.task.join("bootstrap").is_file() {
        return Some(view.task.join("bootstrap"));
    }
    let index = dirs
        .layers
        .iter()
        .rposition(|layer| layer.join("bootstrap").is_file())?;
    // Inside a sandbox the layers are merged into one directory.
    let layer = view.layers.get(index).or(view.layers.last())?;
    Some(layer.join("bootstrap"))
}

fn iso_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The last 4 KB of an invocation's log, base64, cut at a character boundary.
fn tail(lines: &[LogEvent]) -> String {
    let mut text = String::new();
    for line in lines {
        text.push_str(&line.message);
        text.push('\n');
    }
    let mut start = text.len().saturating_sub(TAIL_BYTES);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    base64::engine::general_purpose::STANDARD.encode(&text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_4_kb_on_a_character_boundary() {
        let lines = vec![
            LogEvent {
                timestamp: 0,
                message: "é".repeat(3000),
            },
            LogEvent {
                timestamp: 1,
                message: "END".into(),
            },
        ];
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(tail(&lines))
            .unwrap();
        let text = String::from_utf8(decoded).expect("valid UTF-8");
        assert!(text.len() <= TAIL_BYTES);
        assert!(text.ends_with("é\nEND\n"));
    }

    #[test]
    fn layer_paths_put_later_layers_first() {
        let dirs = CodeDirs {
            task: "/code".into(),
            layers: vec!["/l1".into(), "/l2".into()],
            image: None,
        };
        let host = View::of(&dirs, false);
        assert_eq!(host.layer_paths("python", false), "/l2/python:/l1/python");
        assert_eq!(host.layer_paths("bin", true), ":/l2/bin:/l1/bin");
        let sandboxed = View::of(&dirs, true);
        assert_eq!(sandboxed.task, PathBuf::from("/var/task"));
        assert_eq!(sandboxed.layer_paths("bin", true), ":/opt/bin");
        let none = View::of(
            &CodeDirs {
                task: "/code".into(),
                layers: vec![],
                image: None,
            },
            true,
        );
        assert_eq!(none.layer_paths("bin", true), "");
    }
}
