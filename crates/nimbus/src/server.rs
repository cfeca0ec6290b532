//! `nimbus server`: open the data dir, make sure root credentials exist, wire the
//! services behind the edge and serve until told to stop.

use std::collections::HashSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nimbus_apigateway::ApiGatewayApi;
use nimbus_auth::authz::{Access, Authorizer, ServiceRoles};
use nimbus_auth::credentials::CREDENTIALS_TABLE;
use nimbus_auth::{
    AuthMode, Authenticator, Caller, Credential, CredentialError, CredentialStore, Principal,
};
use nimbus_cluster::{Cluster, NodeSpec, Roles};
use nimbus_console::Console;
use nimbus_ecs::Ecs;
use nimbus_ecs::api::EcsApi;
use nimbus_ecs::credentials::{ECS_TASKS, RoleCredentials, TaskRoles};
use nimbus_ecs::images::Images;
use nimbus_ecs::network::Networks;
use nimbus_ecs::runner::Runner;
use nimbus_ecs::tasks::Node;
use nimbus_edge::Edge;
use nimbus_edge::forward::Peers;
use nimbus_engine::{Egress, Isolation, OciRuntime, Pool};
use nimbus_events::EventsApi;
use nimbus_iam::{IamApi, IamAuthorizer, IamStore, RoleSessions, Sts};
use nimbus_lambda::bucket_events::BucketEvents;
use nimbus_lambda::code::{CodeCache, CodeError};
use nimbus_lambda::concurrency::Ledger;
use nimbus_lambda::event_sources::EventSources;
use nimbus_lambda::function_urls::{self, UrlServer};
use nimbus_lambda::functions::ExecutionRoles;
use nimbus_lambda::images::{FunctionImages, ImageRefused, UnpackedImage};
use nimbus_lambda::invoke::ROLE_SESSION;
use nimbus_lambda::schedule_targets::ScheduleTargets;
use nimbus_lambda::store::FunctionStore;
use nimbus_lambda::warm::WarmMap;
use nimbus_lambda::{
    AsyncQueue, CodeLinks, Functions, Invoker, InvokerSettings, LambdaApi, LambdaSettings,
};
use nimbus_logs::api::LogsApi;
use nimbus_logs::{LogSink, LogStore};
use nimbus_registry::{EcrApi, Housekeeping, Registry, RegistryError};
use nimbus_s3::S3Api;
use nimbus_scheduler::Scheduler;
use nimbus_scheduler::api::SchedulerApi;
use nimbus_sns::SnsApi;
use nimbus_sqs::SqsApi;
use nimbus_storage::OciDigest;
use nimbus_storage::{BlobError, StoreError};

use crate::backends::{self, BlobBackend};
use time::OffsetDateTime;

use crate::{AuthArg, IsolationArg, ServerArgs};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid --account-id {0:?}: expected 12 digits")]
    AccountId(String),
    #[error("invalid --region {0:?}: expected a name such as us-east-1")]
    Region(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another nimbus server is using the data dir {0}")]
    Locked(PathBuf),
    #[error("metadata store: {0}")]
    Store(#[from] StoreError),
    #[error("credentials: {0}")]
    Credentials(#[from] CredentialError),
    #[error("blob store: {0}")]
    Blobs(#[from] BlobError),
    #[error("function code store: {0}")]
    Code(#[from] CodeError),
    #[error("registry: {0}")]
    Registry(#[from] RegistryError),
    #[error("resuming lambda functions: {0}")]
    Lambda(String),
    #[error("settling ECS tasks: {0}")]
    Ecs(String),
    #[error("NIMBUS_ROOT_ACCESS_KEY_ID and NIMBUS_ROOT_SECRET_ACCESS_KEY must be set together")]
    HalfRootKeys,
    #[error("{0}")]
    Backend(String),
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> StartError + '_ {
    move |source| StartError::Io {
        path: path.to_owned(),
        source,
    }
}

fn validate(args: &ServerArgs) -> Result<(), StartError> {
    if args.account_id.len() != 12 || !args.account_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(StartError::AccountId(args.account_id.clone()));
    }
    let region_ok = !args.region.is_empty()
        && args.region.len() <= 32
        && args
            .region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !args.region.starts_with('-')
        && !args.region.ends_with('-');
    if !region_ok {
        return Err(StartError::Region(args.region.clone()));
    }
    Ok(())
}

fn root_keys_from_env() -> Result<Option<(String, String)>, StartError> {
    let id = std::env::var("NIMBUS_ROOT_ACCESS_KEY_ID")
        .ok()
        .filter(|v| !v.is_empty());
    let secret = std::env::var("NIMBUS_ROOT_SECRET_ACCESS_KEY")
        .ok()
        .filter(|v| !v.is_empty());
    match (id, secret) {
        (Some(id), Some(secret)) => Ok(Some((id, secret))),
        (None, None) => Ok(None),
        _ => Err(StartError::HalfRootKeys),
    }
}

/// Writes `<data-dir>/credentials` in the AWS shared-credentials format, replacing any
/// previous file atomically and readable by its owner only.
/// `name` if it is a path, else the first executable of that name on PATH.
fn find_program(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 {
        return name.is_file().then(|| name.to_owned());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// How this server isolates code; never fails the start, so that a machine without
/// an OCI runtime still serves everything but function execution.
async fn isolation(args: &ServerArgs, worker: bool, data_dir: &Path, egress: &Egress) -> Isolation {
    if !worker {
        return Isolation::Unavailable(
            "This nimbus node runs no functions: its --roles do not include worker.".into(),
        );
    }
    if args.isolation == IsolationArg::None {
        tracing::warn!(
            "isolation is off: functions run unsandboxed, as nimbus's user, on this host"
        );
        return Isolation::None;
    }
    let name = args.oci_runtime.display();
    let Some(cli) = find_program(&args.oci_runtime) else {
        let message = format!(
            "No OCI runtime: `{name}` is not installed on the nimbus server. Install it \
             (`apt-get install runc`), name another with --oci-runtime, or start nimbus with \
             --isolation none to run functions unsandboxed."
        );
        tracing::warn!("{message}");
        return Isolation::Unavailable(message);
    };
    // The nimbus binary is every sandbox's init.
    let opened = match std::env::current_exe() {
        Ok(init) => OciRuntime::open(cli, data_dir.join("sandboxes"), init, egress).await,
        Err(err) => Err(err),
    };
    match opened {
        Ok(runtime) => Isolation::Oci(Arc::new(runtime)),
        Err(err) => {
            let message = format!(
                "Sandboxes cannot be set up with {name}: {err}. nimbus needs root for them; \
                 or start it with --isolation none to run functions unsandboxed."
            );
            tracing::warn!("{message}");
            Isolation::Unavailable(message)
        }
    }
}

/// ECS task roles, as IAM answers for them.
struct EcsRoles(Arc<RoleSessions>);

impl TaskRoles for EcsRoles {
    fn check(&self, role: &str) -> Result<(), String> {
        self.0.check_service(role, ECS_TASKS).map(|_| ())
    }

    fn session(&self, role: &str, session: &str) -> Result<Caller, String> {
        self.0.assume(role, ECS_TASKS, session)
    }

    fn credentials(&self, role: &str, session: &str) -> Result<RoleCredentials, String> {
        let record = self.0.check_service(role, ECS_TASKS)?;
        let issued = self
            .0
            .issue(&record, session, time::Duration::hours(6))
            .map_err(|err| err.message)?;
        let expiration = OffsetDateTime::from_unix_timestamp(issued.expires_at.unwrap_or_default())
            .ok()
            .and_then(|at| {
                at.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        Ok(RoleCredentials {
            access_key_id: issued.access_key_id.clone(),
            secret_access_key: issued.secret_access_key.clone(),
            session_token: issued.session_token.clone().unwrap_or_default(),
            expiration,
        })
    }
}

/// Lambda's execution roles, as IAM answers for them.
/// Keeps the unpacked image layers within `limit` bytes: every minute, the least
/// recently used ones that no container or sandbox stands on (nor used in the last
/// ten minutes, so a pull about to be mounted keeps its layers) are removed.
fn evict_images_forever(images: Arc<Images>, runner: Option<Arc<Runner>>, limit: u64) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let (images, runner) = (images.clone(), runner.clone());
            let evicted = tokio::task::spawn_blocking(move || {
                let mut in_use = nimbus_engine::overlay_lower_dirs();
                if let Some(runner) = &runner {
                    in_use.extend(runner.layers_in_use());
                }
                images.evict(limit, Duration::from_secs(600), &in_use)
            })
            .await;
            if let Ok(removed @ 1..) = evicted {
                tracing::info!(removed, "evicted unused image layers");
            }
        }
    });
}

/// Image functions' images, from the registry through the ECS image engine.
struct LambdaImages(Arc<Images>);

impl FunctionImages for LambdaImages {
    fn resolve_as(&self, caller: &Principal, uri: &str) -> Result<OciDigest, ImageRefused> {
        let (_, digest) = self.0.resolve(uri).map_err(ImageRefused::Missing)?;
        self.0
            .authorize_pull(caller, uri)
            .map_err(ImageRefused::AccessDenied)?;
        Ok(digest)
    }

    fn unpack(&self, uri: &str) -> Result<UnpackedImage, String> {
        let image = self.0.pull(uri)?;
        Ok(UnpackedImage {
            layers: image.layers,
            entrypoint: image.entrypoint,
            cmd: image.cmd,
            env: image.env,
            working_dir: image.working_dir,
        })
    }
}

struct LambdaRoles(Arc<RoleSessions>, Arc<IamAuthorizer>);

/// The service principal functions' execution roles trust.
const LAMBDA: &str = "lambda.amazonaws.com";

impl ExecutionRoles for LambdaRoles {
    fn check(&self, role: &str) -> Result<(), String> {
        self.0.check_service(role, LAMBDA).map(|_| ())
    }

    fn session(&self, role: &str) -> Result<Caller, String> {
        self.0.assume(role, LAMBDA, "lambda")
    }

    fn credentials(&self, role: &str, session: &str) -> Result<(String, String, String), String> {
        let record = self.0.check_service(role, LAMBDA)?;
        let issued = self
            .0
            .issue(
                &record,
                session,
                time::Duration::seconds(ROLE_SESSION.as_secs() as i64),
            )
            .map_err(|err| err.message)?;
        Ok((
            issued.access_key_id.clone(),
            issued.secret_access_key.clone(),
            issued.session_token.clone().unwrap_or_default(),
        ))
    }

    fn allows(&self, role: &str, action: &str, resource: &str) -> bool {
        let Ok((_, record)) = self.0.store.role_by_arn(role) else {
            return false;
        };
        let caller = Caller {
            principal: self.0.principal(&record, "lambda"),
            access_key_id: String::new(),
            is_session: true,
        };
        self.1
            .authorize(&caller, None, &Access::new(action, resource))
            .is_ok()
    }
}

/// This node as its flags describe it (`--node-name` defaults to the host name,
/// `--advertise` to the listening address, `--zone` to the region's first zone).
fn node_spec(
    args: &ServerArgs,
    data_dir: &Path,
    local: std::net::SocketAddr,
) -> Result<NodeSpec, StartError> {
    let name = match &args.node_name {
        Some(name) => name.clone(),
        None => fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "nimbus".into()),
    };
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid {
        return Err(StartError::Backend(format!(
            "invalid --node-name {name:?}: 1 to 64 letters, digits, '-', '_' and '.'"
        )));
    }
    let roles = Roles::parse(&args.roles).map_err(StartError::Backend)?;
    // Made once per data dir: a restart is the same node, whatever its address.
    let identity_path = data_dir.join("node-id");
    let identity = match fs::read_to_string(&identity_path) {
        Ok(identity) => identity.trim().to_owned(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let identity = uuid::Uuid::new_v4().simple().to_string();
            nimbus_storage::write_atomic(&identity_path, identity.as_bytes(), 0o600)
                .map_err(io_at(&identity_path))?;
            identity
        }
        Err(err) => return Err(io_at(&identity_path)(err)),
    };
    Ok(NodeSpec {
        name,
        identity,
        advertise: args.advertise.clone().unwrap_or_else(|| local.to_string()),
        zone: args
            .zone
            .clone()
            .unwrap_or_else(|| format!("{}a", args.region)),
        roles,
    })
}

/// The edge's TLS from `--tls-cert` and `--tls-key`, when given, and how this node
/// reaches the others: signing with the deployment's secret (`peers`), over TLS when
/// the edge has it, trusting the certificates of its own chain.
fn edge_tls(
    args: &ServerArgs,
    peers: Peers,
) -> Result<(Option<nimbus_edge::Tls>, Peers), StartError> {
    let (cert, key) = match (&args.tls_cert, &args.tls_key) {
        (None, None) => return Ok((None, peers)),
        (Some(cert), Some(key)) => (cert, key),
        _ => {
            return Err(StartError::Backend(
                "--tls-cert and --tls-key must be given together".into(),
            ));
        }
    };
    let chain = fs::read(cert).map_err(io_at(cert))?;
    let key_pem = fs::read(key).map_err(io_at(key))?;
    let refused =
        |err: String| StartError::Backend(format!("--tls-cert {}: {err}", cert.display()));
    let tls = nimbus_edge::Tls::from_pem(&chain, &key_pem).map_err(refused)?;
    Ok((Some(tls), peers.with_tls(&chain).map_err(refused)?))
}

/// Where invokes go in a deployment of several nodes: to a node with an idle
/// environment of the function when this one has none, and from a node that runs no
/// code to the workers in turn (function URL requests too); as they came, so the
/// client's signature is checked there.
fn invoke_forwarder(warm: Arc<WarmMap>, region: &str) -> nimbus_edge::Forwarder {
    let url_hosts = function_urls::host_suffix(region);
    Arc::new(move |parts| {
        if let Some(function) = nimbus_lambda::warm::invoked_function(parts.uri.path()) {
            return warm.route(&function);
        }
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
        if name.ends_with(&url_hosts) {
            return warm.route_any();
        }
        None
    })
}

fn write_credentials_file(path: &Path, root: &Credential) -> Result<(), StartError> {
    let text = format!(
        "[nimbus]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        root.access_key_id, root.secret_access_key
    );
    nimbus_storage::write_atomic(path, text.as_bytes(), 0o600).map_err(io_at(path))
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed at once, when this is
/// called, not when the future is first polled: a signal that comes right after the
/// server answered its first request must already find them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
    }
}

pub async fn run(args: ServerArgs) -> Result<(), StartError> {
    validate(&args)?;
    let data_dir = &args.data_dir;
    fs::create_dir_all(data_dir).map_err(io_at(data_dir))?;
    let data_dir = data_dir.canonicalize().map_err(io_at(data_dir))?;
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&data_dir, fs::Permissions::from_mode(0o700))
            .map_err(io_at(&data_dir))?;
    }
    let lock_path = data_dir.join("nimbus.lock");
    let lock = File::create(&lock_path).map_err(io_at(&lock_path))?;
    if lock.try_lock().is_err() {
        return Err(StartError::Locked(data_dir));
    }

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| StartError::Io {
            path: PathBuf::from(args.listen.to_string()),
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(io_at(Path::new("listener")))?;
    let meta = backends::metadata_store(&args.metadata, args.metadata_pool, &data_dir)?;
    let cluster = Cluster::join(meta.clone(), node_spec(&args, &data_dir, local)?)
        .map_err(StartError::Backend)?;
    let blob_backend = BlobBackend::parse(&args.blobs)?;
    let [blobs_name, registry_blobs_name] = backends::BLOB_STORES;
    let blobs = blob_backend.open(&data_dir, blobs_name)?;
    let credentials = Arc::new(CredentialStore::load(
        meta.clone(),
        OffsetDateTime::now_utc(),
    )?);
    let provided = root_keys_from_env()?;
    let root = credentials.bootstrap_root(&args.account_id, provided.clone())?;
    if !root.created && provided.is_some_and(|(id, _)| id != root.credential.access_key_id) {
        tracing::warn!("NIMBUS_ROOT_* keys are ignored: the data dir already has root keys");
    }
    let sweeper = credentials.clone();
    tokio::spawn(async move {
        let mut hourly = tokio::time::interval(Duration::from_secs(3600));
        loop {
            hourly.tick().await;
            let store = sweeper.clone();
            match tokio::task::spawn_blocking(move || store.sweep(OffsetDateTime::now_utc())).await
            {
                Ok(Ok(swept)) if swept > 0 => {
                    tracing::info!(swept, "forgot expired session credentials")
                }
                Ok(Err(err)) => tracing::warn!(error = %err, "sweeping expired credentials failed"),
                _ => {}
            }
        }
    });
    let credentials_path = data_dir.join("credentials");
    write_credentials_file(&credentials_path, &root.credential)?;

    let mode = match args.auth {
        AuthArg::Strict => AuthMode::Strict,
        AuthArg::Permissive => {
            tracing::warn!(
                "auth is permissive: any well-formed signature is accepted without checking its secret; do not expose this server"
            );
            AuthMode::Permissive
        }
    };
    let authenticator = Arc::new(Authenticator::new(
        credentials.clone(),
        mode,
        &args.region,
        &args.account_id,
    ));
    let iam = Arc::new(IamStore::new(meta.clone(), &args.account_id));
    let sessions = Arc::new(RoleSessions::new(iam.clone(), credentials.clone()));
    let authorizer = Arc::new(IamAuthorizer::new(iam.clone()));
    cluster.on_change(&[CREDENTIALS_TABLE], {
        let credentials = credentials.clone();
        move || credentials.invalidate()
    })?;
    cluster.on_change(nimbus_iam::store::TABLES, {
        let iam = iam.clone();
        move || iam.invalidate()
    })?;
    let links = CodeLinks::new(blobs.clone());
    let objects = Arc::new(nimbus_s3::Store::new(meta.clone(), blobs.clone()));
    let registry = Registry::open(
        meta.clone(),
        blob_backend.open(&data_dir, registry_blobs_name)?,
        &data_dir.join("registry"),
        credentials.clone(),
        &args.account_id,
        &args.region,
        authorizer.clone(),
    )?;
    let (tls, peers) = edge_tls(
        &args,
        cluster.secret().map_or_else(Peers::default, Peers::new),
    )?;
    registry.join(cluster.clone(), peers.clone());
    registry.start_housekeeping(Housekeeping {
        interval: Duration::from_secs(args.registry_gc_interval.max(1)),
        grace: Duration::from_secs(args.registry_gc_grace),
        lease: cluster.lease("registry-housekeeping"),
    });
    // Images from the registry, unpacked once per layer, for tasks and image functions.
    let ecs_dir = data_dir.join("ecs");
    let layer_limits = nimbus_ecs::images::Limits {
        layer_bytes: args.image_layer_max_mb.saturating_mul(1024 * 1024),
        ..Default::default()
    };
    let images =
        Arc::new(Images::new(registry.clone(), &ecs_dir, layer_limits).map_err(io_at(&ecs_dir))?);
    let functions = Arc::new(
        Functions::new(
            FunctionStore::new(meta.clone()),
            blobs,
            Arc::new(nimbus_s3::Objects::new(objects.clone(), authorizer.clone())),
            CodeCache::open(&data_dir.join("lambda").join("code"))?,
            &args.region,
            &args.account_id,
            LambdaSettings {
                account_concurrency: args.lambda_concurrency,
            },
            Arc::new(LambdaRoles(sessions.clone(), authorizer.clone())),
            authorizer.clone(),
        )
        .with_images(Arc::new(LambdaImages(images.clone()))),
    );
    cluster.on_change(nimbus_lambda::store::CACHED, {
        let functions = functions.clone();
        move || functions.invalidate_cache()
    })?;
    // Image references naming these hosts are read from the registry in-process.
    images.serve_as(vec![
        local.to_string(),
        format!("127.0.0.1:{}", local.port()),
        format!("localhost:{}", local.port()),
        format!("{}.dkr.ecr.{}.amazonaws.com", args.account_id, args.region),
    ]);
    let egress = Egress {
        edge: local,
        allow: args.egress_allow.clone(),
    };
    let sandboxes = Pool::new(
        isolation(&args, cluster.me().roles.worker, &data_dir, &egress).await,
        args.sandbox_pool,
    );
    let log_store = Arc::new(LogStore::new(meta.clone()));
    nimbus_logs::start_expiry(log_store.clone(), cluster.lease("logs-expiry"));
    let logs = LogSink::start(log_store.clone());
    let logs_sink = logs.clone();
    let invoker = Invoker::start(
        functions.clone(),
        sandboxes.clone(),
        data_dir.join("lambda").join("runtime"),
        logs,
        InvokerSettings {
            keep_alive: Duration::from_secs(args.lambda_keep_alive),
            edge: Some(local),
            ..InvokerSettings::default()
        },
        &args.region,
    )
    .map_err(io_at(&data_dir))?;
    // Finding the interpreters runs each python on the path (a pyenv shim takes a
    // tenth of a second): done now, beside the start, not by the first invoke.
    if cluster.me().roles.worker {
        let invoker = invoker.clone();
        tokio::task::spawn_blocking(move || invoker.discover_interpreters());
    }
    let warm = WarmMap::start(
        meta.clone(),
        cluster.clone(),
        cluster.me().roles.worker.then(|| invoker.clone()),
    );
    if meta.shared() {
        invoker.share_limits(Ledger::new(meta.clone(), cluster.clone()));
    }
    let sqs = nimbus_sqs::Sqs::new(meta.clone(), &args.region, &args.account_id);
    sqs.start_housekeeping(cluster.lease("sqs-housekeeping"));
    let sns_targets = Arc::new(crate::targets::ServiceTargets {
        principal: "sns.amazonaws.com",
        meta: meta.clone(),
        sqs: sqs.clone(),
        functions: functions.clone(),
        queue: std::sync::OnceLock::new(),
        authorizer: authorizer.clone(),
    });
    let sns = nimbus_sns::Sns::new(
        meta.clone(),
        &args.region,
        &args.account_id,
        &format!(
            "{}://{}",
            if tls.is_some() { "https" } else { "http" },
            cluster.me().advertise
        ),
        sns_targets.clone(),
        {
            let egress = egress.clone();
            Arc::new(move |ip| egress.permits(ip))
        },
    );
    let queue = AsyncQueue::start(
        meta.clone(),
        invoker.clone(),
        cluster.clone(),
        sqs.clone(),
        sns.clone(),
    );
    // SNS delivers to functions through Lambda's event queue, which sends to topics.
    let _ = sns_targets.queue.set(queue.clone());
    sns.start_outbox(cluster.lease("sns-outbox"));
    let event_targets = Arc::new(crate::targets::EventTargets {
        service: Arc::new(crate::targets::ServiceTargets {
            principal: "events.amazonaws.com",
            meta: meta.clone(),
            sqs: sqs.clone(),
            functions: functions.clone(),
            queue: queue.clone().into(),
            authorizer: authorizer.clone(),
        }),
        sns: sns.clone(),
        roles: sessions.clone(),
        ecs: std::sync::OnceLock::new(),
    });
    let events = nimbus_events::Events::new(
        meta.clone(),
        &args.region,
        &args.account_id,
        event_targets.clone(),
    );
    events.start(cluster.lease("events-delivery"));
    let bucket_events = Arc::new(crate::targets::BucketTargets {
        functions: Arc::new(BucketEvents::new(
            functions.clone(),
            queue.clone(),
            authorizer.clone(),
        )),
        sqs: sqs.clone(),
        sns: sns.clone(),
        events: events.clone(),
        authorizer: authorizer.clone(),
    });
    let scheduler = Scheduler::new(
        meta.clone(),
        Arc::new(ScheduleTargets::new(
            functions.clone(),
            queue.clone(),
            sqs.clone(),
            sns.clone(),
        )),
        sessions.clone(),
        &args.region,
        &args.account_id,
    );
    scheduler.ensure_default_group()?;
    scheduler.start();
    let urls = UrlServer::new(
        functions.clone(),
        invoker.clone(),
        authenticator.clone(),
        authorizer.clone(),
    );
    let apis = nimbus_apigateway::Apis::new(meta.clone(), &args.region, &args.account_id);
    // APIs another node changes are served as changed within a poll.
    cluster.on_change(nimbus_apigateway::CACHED, {
        let apis = apis.clone();
        move || apis.forget()
    })?;
    let http_apis = nimbus_apigateway::invoke::InvokeServer::new(
        apis.clone(),
        functions.clone(),
        invoker.clone(),
        (authenticator.clone(), authorizer.clone()),
        {
            let egress = egress.clone();
            Arc::new(move |ip| egress.permits(ip))
        },
        logs_sink.clone(),
    );
    let sources = EventSources::start(
        meta.clone(),
        functions.clone(),
        invoker.clone(),
        sqs.clone(),
        cluster.me().roles.worker,
    );
    let lambda = LambdaApi::new(
        functions,
        invoker.clone(),
        queue,
        links.clone(),
        sources,
        &args.region,
        &args.account_id,
    );
    lambda
        .resume()
        .await
        .map_err(|err| StartError::Lambda(err.message))?;
    // Tasks run on this node when the server isolates code in OCI containers.
    let mut task_runner = None;
    let mut task_credentials = None;
    let mut task_networks = None;
    let node = match sandboxes.isolation() {
        Isolation::Oci(_) => match find_program(&args.oci_runtime) {
            Some(cli) => {
                let monitor =
                    std::env::current_exe().map_err(io_at(Path::new("/proc/self/exe")))?;
                let runner = Runner::new(&ecs_dir.join("tasks"), cli, monitor, logs_sink.clone())
                    .map_err(io_at(&ecs_dir))?;
                task_runner = Some(runner.clone());
                let roles: Arc<dyn TaskRoles> = Arc::new(EcsRoles(sessions.clone()));
                let subnet = nimbus_ecs::network::task_subnet(meta.as_ref(), &cluster.me().name)?;
                let networks = Networks::open(&ecs_dir.join("networks"), &egress, subnet)
                    .await
                    .map(Arc::new)
                    .inspect_err(|reason| {
                        tracing::warn!(%reason, "tasks get host and none network modes only");
                    });
                task_networks = networks.clone().ok();
                let node = Node::new(
                    images.clone(),
                    runner,
                    log_store.clone(),
                    Some((roles.clone(), local)),
                    networks,
                );
                task_credentials =
                    Some(nimbus_ecs::credentials::routes(node.grants.clone(), roles));
                Some(Arc::new(node))
            }
            None => None,
        },
        _ => None,
    };
    evict_images_forever(
        images.clone(),
        task_runner.clone(),
        args.image_cache_mb * 1024 * 1024,
    );
    let ecs = Ecs::new(
        meta.clone(),
        &args.region,
        &args.account_id,
        node,
        cluster.clone(),
        Some(Arc::new(crate::targets::TaskStateEvents(events.clone()))),
    );
    // EventBridge runs tasks, and ECS sends task events to buses.
    let _ = event_targets.ecs.set(ecs.clone());
    let adopted = ecs
        .resume_after_restart()
        .await
        .map_err(|err| StartError::Ecs(err.message))?;
    if let Some(runner) = &task_runner {
        if !adopted.is_empty() {
            tracing::info!(
                containers = adopted.len(),
                "re-adopted running task containers"
            );
        }
        let swept = runner.sweep(&adopted).await;
        if swept > 0 {
            tracing::warn!(swept, "removed containers the last run left");
        }
    }
    tokio::spawn(ecs.clone().reconcile_forever());
    tokio::spawn(ecs.clone().work_forever());
    let console = Console::new(&args.region, nimbus_console::assets_from_env());
    let mut edge = Edge::builder(authenticator, &args.region, &args.account_id)
        .authorizer(authorizer.clone())
        .service(Sts::new(credentials.clone(), sessions, authorizer))
        .service(IamApi::new(iam, credentials))
        .service(LogsApi::new(log_store))
        .service(EcsApi::new(ecs))
        .service(lambda)
        .service(EcrApi::new(registry.clone()))
        .streaming_service(S3Api::new(objects, Some(bucket_events)))
        .service(SchedulerApi::new(scheduler))
        .service(SqsApi::new(sqs))
        .service(SnsApi::new(sns.clone()))
        .service(EventsApi::new(events.clone()))
        .internal(nimbus_sns::api::routes(sns))
        .internal(links.routes())
        .internal(urls.routes())
        .host_route(function_urls::host_suffix(&args.region), urls.host_router())
        .service(ApiGatewayApi::new(apis))
        .internal(http_apis.routes())
        .host_route(
            nimbus_apigateway::invoke::host_suffix(&args.region),
            http_apis.host_router(),
        )
        .internal(nimbus_registry::distribution::routes(registry))
        .internal(console.routes())
        .nodes({
            let cluster = cluster.clone();
            Arc::new(move || serde_json::to_value(cluster.nodes()).unwrap_or_default())
        });
    if let Some(routes) = task_credentials {
        edge = edge.internal(routes);
    }
    edge = edge.forwarder(invoke_forwarder(warm, &args.region), peers.clone());
    let edge = edge.build();
    console.connect(edge.clone());
    tracing::info!(
        gzipped_bytes = Console::embedded_bytes(),
        "console pages built in"
    );

    let shutdown = shutdown_signal();
    let endpoint = format!("{}://{local}", if tls.is_some() { "https" } else { "http" });
    tracing::info!(%endpoint, data_dir = %data_dir.display(), "nimbus listening");
    println!(
        "nimbus {} listening on {endpoint} (region {}, account {}, auth {:?})",
        env!("CARGO_PKG_VERSION"),
        args.region,
        args.account_id,
        args.auth
    );
    if tls.is_some() {
        println!("plain HTTP is served on the same port: keep it to loopback");
    }
    println!(
        "root credentials: {} (profile nimbus)",
        credentials_path.display()
    );
    println!("console: {endpoint}/console/ (or `nimbus console` for a login link)");
    println!(
        "try: AWS_SHARED_CREDENTIALS_FILE={} aws --endpoint-url {endpoint} --profile nimbus --region {} sts get-caller-identity",
        credentials_path.display(),
        args.region
    );

    nimbus_edge::serve(
        listener,
        edge,
        tls,
        peers,
        shutdown,
        Duration::from_secs(args.shutdown_grace),
    )
    .await;
    cluster.leave();
    sandboxes.close();
    invoker.shutdown();
    // A graceful stop drains this node: task containers end with the server (a crash
    // leaves them running, to be re-adopted).
    if let Some(runner) = task_runner {
        runner.sweep(&HashSet::new()).await;
    }
    if let Some(networks) = task_networks {
        networks.sweep(&HashSet::new()).await;
    }
    if let Isolation::Oci(runtime) = sandboxes.isolation() {
        runtime.close().await;
    }
    tracing::info!("nimbus stopped");
    drop(lock);
    Ok(())
}
