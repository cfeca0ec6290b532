//! `nimbus`: the AWS compute plane in one binary. `nimbus server` runs every service
//! in one process; the other subcommands are the command line.

mod backends;
mod cli;
mod migrate;
mod server;
mod targets;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "nimbus",
    version,
    about = "The AWS compute plane in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every nimbus service on one edge port.
    Server(ServerArgs),
    /// Functions: list, invoke, deploy a directory.
    Fn {
        #[command(flatten)]
        connection: cli::Connection,
        #[command(subcommand)]
        command: cli::FnCommand,
    },
    /// Log events: `logs tail NAME [--follow]`.
    Logs {
        #[command(flatten)]
        connection: cli::Connection,
        #[command(subcommand)]
        command: cli::LogsCommand,
    },
    /// SQS queues: `queue ls`, `queue send`, `queue tail NAME`.
    Queue {
        #[command(flatten)]
        connection: cli::Connection,
        #[command(subcommand)]
        command: cli::QueueCommand,
    },
    /// Images in the registry: `image ls`.
    Image {
        #[command(flatten)]
        connection: cli::Connection,
        #[command(subcommand)]
        command: cli::ImageCommand,
    },
    /// Runs an image as a one-off task and streams its output until it stops.
    Run {
        #[command(flatten)]
        connection: cli::Connection,
        #[command(flatten)]
        args: cli::RunArgs,
    },
    /// The tasks running on the server, in every cluster.
    Ps {
        #[command(flatten)]
        connection: cli::Connection,
    },
    /// Prints a one-time link that signs a browser in to the web console as the
    /// command's principal.
    Console {
        #[command(flatten)]
        connection: cli::Connection,
    },
    /// Writes docs/: every service's operations, from the server's routing tables.
    Docs {
        #[command(flatten)]
        connection: cli::Connection,
        #[command(flatten)]
        args: cli::DocsArgs,
    },
    /// Whether the server is up, and its services and storage backends.
    Status {
        #[command(flatten)]
        connection: cli::Connection,
    },
    /// Copies a stopped deployment's records and blobs to other backends (the
    /// embedded defaults to PostgreSQL and S3, or back) and verifies the copy.
    MigrateStore(migrate::MigrateArgs),
    /// The first process inside every sandbox (run by the OCI runtime, not by hand).
    #[command(hide = true)]
    SandboxInit,
    /// Watches one task container: runs the OCI runtime on its bundle, keeps its
    /// output and exit code (started by the server, not by hand).
    #[command(hide = true)]
    ContainerMonitor {
        runtime: PathBuf,
        state: PathBuf,
        bundle: PathBuf,
        id: String,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// Where local state lives: everything, with the embedded backends; caches,
    /// sandboxes and keys otherwise.
    #[arg(long, env = "NIMBUS_DATA_DIR", default_value = "./nimbus-data")]
    pub data_dir: PathBuf,
    /// Where records live: `sqlite` (a file in the data dir) or
    /// `postgres://user:password@host:port/db` (add `?sslmode=require` for TLS).
    #[arg(
        long,
        env = "NIMBUS_METADATA",
        default_value = "sqlite",
        hide_env_values = true
    )]
    pub metadata: String,
    /// Connections kept open to PostgreSQL at most.
    #[arg(long, env = "NIMBUS_METADATA_POOL", default_value_t = 16)]
    pub metadata_pool: usize,
    /// Where blobs live: `file` (the data dir) or
    /// `s3://bucket/prefix?endpoint=http://host:port&region=...`, with keys from
    /// NIMBUS_BLOBS_ACCESS_KEY_ID / NIMBUS_BLOBS_SECRET_ACCESS_KEY or the AWS chain.
    #[arg(long, env = "NIMBUS_BLOBS", default_value = "file")]
    pub blobs: String,
    /// The edge address for every API, the registry and the console.
    #[arg(long, env = "NIMBUS_LISTEN", default_value = "127.0.0.1:4566")]
    pub listen: SocketAddr,
    #[arg(long, env = "NIMBUS_REGION", default_value = "us-east-1")]
    pub region: String,
    /// The account every resource belongs to (12 digits).
    #[arg(long, env = "NIMBUS_ACCOUNT_ID", default_value = "000000000000")]
    pub account_id: String,
    /// `permissive` accepts any well-formed signature without checking its secret.
    #[arg(long, env = "NIMBUS_AUTH", value_enum, default_value_t = AuthArg::Strict)]
    pub auth: AuthArg,
    #[arg(long, env = "NIMBUS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Seconds open requests get to finish after SIGTERM or SIGINT.
    #[arg(long, env = "NIMBUS_SHUTDOWN_GRACE", default_value_t = 10)]
    pub shutdown_grace: u64,
    /// Concurrent Lambda invocations across all functions of the account.
    #[arg(long, env = "NIMBUS_LAMBDA_CONCURRENCY", default_value_t = 1000, value_parser = clap::value_parser!(i64).range(100..=100_000))]
    pub lambda_concurrency: i64,
    /// Seconds an idle execution environment is kept warm before it is shut down.
    #[arg(long, env = "NIMBUS_LAMBDA_KEEP_ALIVE", default_value_t = 300)]
    pub lambda_keep_alive: u64,
    /// `oci` runs code in OCI containers; `none` runs it as plain processes on this
    /// host, unsandboxed.
    #[arg(long, env = "NIMBUS_ISOLATION", value_enum, default_value_t = IsolationArg::Oci)]
    pub isolation: IsolationArg,
    /// The OCI runtime that runs sandboxes: runc, crun or another taking their flags, by name on
    /// PATH or by path.
    #[arg(long, env = "NIMBUS_OCI_RUNTIME", default_value = "runc")]
    pub oci_runtime: PathBuf,
    /// Destinations sandboxes and tasks may reach besides nimbus and the outside
    /// network (CIDRs, comma-separated): the host's own addresses and the
    /// link-local and private ranges are closed to them otherwise.
    #[arg(long, env = "NIMBUS_EGRESS_ALLOW", value_delimiter = ',')]
    pub egress_allow: Vec<ipnet::IpNet>,
    /// Sandboxes kept pre-started per runtime, so cold starts skip creating one.
    #[arg(long, env = "NIMBUS_SANDBOX_POOL", default_value_t = 1)]
    pub sandbox_pool: usize,
    /// MB of unpacked image layers kept for tasks and image functions; the least
    /// recently used ones nothing runs on are removed past it.
    #[arg(long, env = "NIMBUS_IMAGE_CACHE_MB", default_value_t = 20480)]
    pub image_cache_mb: u64,
    /// MB one image layer may unpack to; a layer past it (or decompressing past 100
    /// times its stored size once over 256 MB, as a gzip bomb does) fails to pull.
    #[arg(long, env = "NIMBUS_IMAGE_LAYER_MAX_MB", default_value_t = 4096)]
    pub image_layer_max_mb: u64,
    /// Seconds between the registry's garbage collections (and lifecycle policy runs).
    #[arg(long, env = "NIMBUS_REGISTRY_GC_INTERVAL", default_value_t = 3600)]
    pub registry_gc_interval: u64,
    /// Seconds an unreferenced registry blob is kept before collection, so a blob
    /// pushed just before its manifest is never lost.
    #[arg(long, env = "NIMBUS_REGISTRY_GC_GRACE", default_value_t = 3600)]
    pub registry_gc_grace: u64,
    /// This node's name in the deployment (servers sharing --metadata and --blobs):
    /// default the host name.
    #[arg(long, env = "NIMBUS_NODE_NAME")]
    pub node_name: Option<String>,
    /// Where other nodes and load balancers reach this node's edge (HOST:PORT):
    /// default the --listen address.
    #[arg(long, env = "NIMBUS_ADVERTISE")]
    pub advertise: Option<String>,
    /// This node's availability zone (ECS's `ecs.availability-zone`, used by
    /// placement): default `<region>a`.
    #[arg(long, env = "NIMBUS_ZONE")]
    pub zone: Option<String>,
    /// What this node does: `api` answers API calls, `worker` runs functions and
    /// tasks (comma-separated; default both).
    #[arg(
        long,
        env = "NIMBUS_ROLES",
        value_delimiter = ',',
        default_value = "api,worker"
    )]
    pub roles: Vec<String>,
    /// A PEM certificate chain for HTTPS on the edge's port (plain HTTP stays on it
    /// for loopback clients and sandboxes); with --tls-key.
    #[arg(long, env = "NIMBUS_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "NIMBUS_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationArg {
    Oci,
    None,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthArg {
    Strict,
    Permissive,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::SandboxInit => nimbus_engine::init::run(),
        Command::Fn {
            connection,
            command,
        } => cli::run(connection, async |client, output| {
            cli::function(client, output, command).await
        }),
        Command::Logs {
            connection,
            command,
        } => cli::run(connection, async |client, output| {
            cli::logs(client, output, command).await
        }),
        Command::Queue {
            connection,
            command,
        } => cli::run(connection, async |client, output| {
            cli::queues(client, output, command).await
        }),
        Command::Image {
            connection,
            command,
        } => cli::run(connection, async |client, output| {
            cli::images(client, output, command).await
        }),
        Command::Run { connection, args } => cli::run(connection, async |client, output| {
            cli::run_task(client, output, args).await
        }),
        Command::Ps { connection } => cli::run(connection, cli::tasks),
        Command::Status { connection } => cli::run(connection, cli::status),
        Command::Docs { connection, args } => cli::run(connection, async |client, output| {
            cli::docs(client, output, args).await
        }),
        Command::Console { connection } => cli::run(connection, cli::console_link),
        Command::MigrateStore(args) => migrate::run(args),
        Command::ContainerMonitor {
            runtime,
            state,
            bundle,
            id,
        } => nimbus_ecs::monitor::run(&runtime, &state, &bundle, &id),
        Command::Server(args) => {
            init_logging(args.log_format);
            if args.isolation == IsolationArg::Oci
                && let Err(err) = nimbus_engine::private_namespace()
            {
                tracing::warn!(error = %err, "no private mount namespace: sandbox mounts are visible on the host");
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("tokio runtime starts");
            match runtime.block_on(server::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!("{err:#}");
                    eprintln!("nimbus: {err}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
