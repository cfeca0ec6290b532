//! The everyday command line: `nimbus fn ...`, `nimbus queue ...`, `nimbus ps`,
//! `nimbus status`, talking to a running server through its AWS APIs, signed like
//! any SDK. Tables for people, `--output json` for scripts; exit status 0 on success,
//! 1 when the server or the function reports an error, 2 on a usage error (clap's).

mod client;
mod queue;
mod term;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use clap::{Args, Subcommand, ValueEnum};
use http::Method;
use nimbus_edge::protocol::xml;
use serde_json::{Value, json};

use client::{CallError, Client, Upload};
pub use queue::{QueueCommand, queues};
use term::{Style, paint, status_style};

#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// The server's edge address.
    #[arg(
        long,
        env = "NIMBUS_ENDPOINT",
        default_value = "http://127.0.0.1:4566",
        global = true
    )]
    endpoint: String,
    /// The server's data dir, whose `credentials` file signs requests unless the
    /// environment has AWS keys.
    #[arg(
        long,
        env = "NIMBUS_DATA_DIR",
        default_value = "./nimbus-data",
        global = true
    )]
    data_dir: PathBuf,
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1", global = true)]
    region: String,
    /// An AWS profile to sign with, from `AWS_SHARED_CREDENTIALS_FILE` or
    /// `~/.aws/credentials` (environment keys still come first).
    #[arg(long, env = "AWS_PROFILE", global = true)]
    profile: Option<String>,
    #[arg(long, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum FnCommand {
    /// The functions, with runtime, memory and last change.
    Ls,
    /// Invokes a function and prints what it returned (its log tail on stderr).
    Invoke {
        name: String,
        /// The event, as JSON.
        #[arg(long, default_value = "{}")]
        payload: String,
    },
    /// Zips a directory and creates the function from it, or updates its code; waits
    /// until it can be invoked.
    Deploy {
        dir: PathBuf,
        /// The function's name (the directory's by default).
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "python3.12")]
        runtime: String,
        #[arg(long, default_value = "app.handler")]
        handler: String,
        /// The execution role, which must trust lambda.amazonaws.com (on creation).
        #[arg(long)]
        role: Option<String>,
    },
}

/// Runs a command; its exit status.
pub fn run(
    connection: Connection,
    command: impl AsyncFnOnce(&Client, Output) -> Result<(), CallError>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let client = Client::new(
            &connection.endpoint,
            &connection.data_dir,
            &connection.region,
            connection.profile.as_deref(),
        )?;
        command(&client, connection.output).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{} {err}", paint("error:", Style::Bad, true));
            ExitCode::FAILURE
        }
    }
}

/// Prints rows under a header, columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    // Padded before painting: colour codes take no columns.
    let line = |cells: Vec<String>, style: &dyn Fn(&str) -> Option<Style>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| {
                let padded = format!("{cell:<width$}");
                match style(cell) {
                    Some(style) => padded.replacen(cell.as_str(), &paint(cell, style, false), 1),
                    None => padded,
                }
            })
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{}",
        line(header.iter().map(|h| (*h).to_owned()).collect(), &|_| {
            Some(Style::Bold)
        })
    );
    for row in rows {
        let _ = writeln!(out, "{}", line(row.clone(), &status_style));
    }
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

pub async fn function(
    client: &Client,
    output: Output,
    command: FnCommand,
) -> Result<(), CallError> {
    match command {
        FnCommand::Ls => {
            let listed = client
                .json("lambda", Method::GET, "/2015-03-31/functions/", &[], None)
                .await?;
            if output == Output::Json {
                print_json(&listed);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = listed["Functions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| {
                    vec![
                        text(&f["FunctionName"]),
                        f["Runtime"]
                            .as_str()
                            .unwrap_or(f["PackageType"].as_str().unwrap_or("-"))
                            .to_owned(),
                        format!("{} MB", text(&f["MemorySize"])),
                        text(&f["LastModified"]),
                    ]
                })
                .collect();
            table(&["NAME", "RUNTIME", "MEMORY", "LAST MODIFIED"], &rows);
            Ok(())
        }
        FnCommand::Invoke { name, payload } => {
            serde_json::from_str::<Value>(&payload)
                .map_err(|err| CallError(format!("--payload is not JSON: {err}")))?;
            let path = format!("/2015-03-31/functions/{name}/invocations");
            let (status, headers, body) = client
                .send(
                    "lambda",
                    Method::POST,
                    &path,
                    "",
                    &[("x-amz-log-type", "Tail")],
                    Upload::new(payload.into_bytes(), None),
                )
                .await?;
            if !status.is_success() {
                let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let code = headers
                    .get("x-amzn-errortype")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("Error");
                return Err(CallError(format!(
                    "{}: {}",
                    code.split(':').next().unwrap_or(code),
                    value["message"]
                        .as_str()
                        .or(value["Message"].as_str())
                        .unwrap_or_default()
                )));
            }
            if let Some(tail) = headers
                .get("x-amz-log-result")
                .and_then(|v| v.to_str().ok())
                && let Ok(log) = base64::engine::general_purpose::STANDARD.decode(tail)
            {
                eprint!("{}", String::from_utf8_lossy(&log));
            }
            let function_error = headers.get("x-amz-function-error").is_some();
            if output == Output::Json {
                let payload: Value = serde_json::from_slice(&body)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
                print_json(
                    &json!({ "StatusCode": status.as_u16(), "FunctionError": function_error, "Payload": payload }),
                );
            } else {
                println!("{}", String::from_utf8_lossy(&body));
            }
            if function_error {
                return Err(CallError(format!("the function {name} returned an error")));
            }
            Ok(())
        }
        FnCommand::Deploy {
            dir,
            name,
            runtime,
            handler,
            role,
        } => deploy(client, output, &dir, name, runtime, handler, role).await,
    }
}

/// The zip of a directory's files, modes kept.
fn zip_dir(dir: &Path) -> Result<Vec<u8>, CallError> {
    use std::os::unix::fs::PermissionsExt;
    let fail =
        |err: &dyn std::fmt::Display| CallError(format!("cannot zip {}: {err}", dir.display()));
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&current)
            .map_err(|err| fail(&err))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let meta = entry.metadata().map_err(|err| fail(&err))?;
            if meta.is_dir() {
                pending.push(path);
                continue;
            }
            let name = path
                .strip_prefix(dir)
                .map_err(|err| fail(&err))?
                .to_string_lossy()
                .into_owned();
            let options = zip::write::SimpleFileOptions::default()
                .unix_permissions(meta.permissions().mode() & 0o777);
            writer.start_file(name, options).map_err(|err| fail(&err))?;
            let data = std::fs::read(&path).map_err(|err| fail(&err))?;
            writer.write_all(&data).map_err(|err| fail(&err))?;
        }
    }
    Ok(writer.finish().map_err(|err| fail(&err))?.into_inner())
}

async fn deploy(
    client: &Client,
    output: Output,
    dir: &Path,
    name: Option<String>,
    runtime: String,
    handler: String,
    role: Option<String>,
) -> Result<(), CallError> {
    let name = match name {
        Some(name) => name,
        None => std::fs::canonicalize(dir)
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .ok_or_else(|| {
                CallError(format!(
                    "{} has no name to give the function: pass --name",
                    dir.display()
                ))
            })?,
    };
    let zip = zip_dir(dir)?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&zip);
    let path = format!("/2015-03-31/functions/{name}");
    let exists = client
        .json("lambda", Method::GET, &path, &[], None)
        .await
        .is_ok();
    let mut config = if exists {
        eprintln!("updating {name} ({} KB zipped)", zip.len().div_ceil(1024));
        client
            .upload_json(
                "lambda",
                Method::PUT,
                &format!("{path}/code"),
                &json!({ "ZipFile": encoded }),
                format!("uploading {name}"),
            )
            .await?
    } else {
        let role = role.ok_or_else(|| {
            CallError(format!(
                "{name} does not exist yet: pass --role with a role that trusts lambda.amazonaws.com (aws iam create-role)"
            ))
        })?;
        eprintln!("creating {name} ({} KB zipped)", zip.len().div_ceil(1024));
        client
            .upload_json(
                "lambda",
                Method::POST,
                "/2015-03-31/functions",
                &json!({
                    "FunctionName": name, "Runtime": runtime, "Handler": handler, "Role": role,
                    "Code": { "ZipFile": encoded },
                }),
                format!("uploading {name}"),
            )
            .await?
    };
    // Ready once Active with its last update done, as `aws lambda wait function-updated`.
    for _ in 0..300 {
        if config["State"] == "Failed" || config["LastUpdateStatus"] == "Failed" {
            return Err(CallError(format!(
                "{name} could not be deployed: {}",
                text(&config["StateReason"]).replace('-', "")
                    + &text(&config["LastUpdateStatusReason"])
            )));
        }
        if config["State"] == "Active" && config["LastUpdateStatus"] == "Successful" {
            if output == Output::Json {
                print_json(&config);
            } else {
                println!(
                    "{name} is ready ({}, {})",
                    text(&config["Runtime"]),
                    text(&config["CodeSha256"])
                );
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        config = client
            .json(
                "lambda",
                Method::GET,
                &format!("{path}/configuration"),
                &[],
                None,
            )
            .await?;
    }
    Err(CallError(format!(
        "{name} did not become ready within a minute"
    )))
}

/// `nimbus ps`: every task of every cluster that has not stopped.
pub async fn tasks(client: &Client, output: Output) -> Result<(), CallError> {
    let clusters = client
        .json11(
            "ecs",
            "AmazonEC2ContainerServiceV20141113.ListClusters",
            &json!({}),
        )
        .await?;
    let mut all = Vec::new();
    for cluster in clusters["clusterArns"].as_array().into_iter().flatten() {
        let listed = client
            .json11(
                "ecs",
                "AmazonEC2ContainerServiceV20141113.ListTasks",
                &json!({ "cluster": cluster }),
            )
            .await?;
        let arns = listed["taskArns"].as_array().cloned().unwrap_or_default();
        for chunk in arns.chunks(100) {
            let described = client
                .json11(
                    "ecs",
                    "AmazonEC2ContainerServiceV20141113.DescribeTasks",
                    &json!({ "cluster": cluster, "tasks": chunk }),
                )
                .await?;
            all.extend(described["tasks"].as_array().cloned().unwrap_or_default());
        }
    }
    if output == Output::Json {
        print_json(&json!({ "tasks": all }));
        return Ok(());
    }
    let last = |arn: &Value| text(arn).rsplit('/').next().unwrap_or_default().to_owned();
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|t| {
            let ports: Vec<String> = t["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|c| c["networkBindings"].as_array().cloned().unwrap_or_default())
                .map(|b| format!("{}->{}", text(&b["hostPort"]), text(&b["containerPort"])))
                .collect();
            vec![
                last(&t["taskArn"]),
                last(&t["clusterArn"]),
                last(&t["taskDefinitionArn"]),
                text(&t["lastStatus"]),
                if ports.is_empty() {
                    "-".to_owned()
                } else {
                    ports.join(",")
                },
            ]
        })
        .collect();
    table(&["TASK", "CLUSTER", "DEFINITION", "STATUS", "PORTS"], &rows);
    Ok(())
}

/// `nimbus status`: the server's health, service by service.
pub async fn status(client: &Client, output: Output) -> Result<(), CallError> {
    let (code, _, body) = client
        .plain(Method::GET, "/_nimbus/health", None, Vec::new())
        .await?;
    let health: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if output == Output::Json {
        print_json(&health);
    } else {
        println!(
            "nimbus: {}",
            match (code.is_success(), health["status"].as_str()) {
                (false, _) => "unhealthy",
                (true, Some("degraded")) => "degraded: a storage backend is unreachable",
                (true, _) => "healthy",
            }
        );
        for (field, heading) in [("services", "SERVICE"), ("backends", "BACKEND")] {
            if let Some(states) = health[field].as_object() {
                let rows: Vec<Vec<String>> = states
                    .iter()
                    .map(|(name, state)| vec![name.clone(), text(state)])
                    .collect();
                table(&[heading, "STATE"], &rows);
            }
        }
        let nodes: Vec<Vec<String>> = health["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| {
                let roles: Vec<String> = n["roles"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(text)
                    .collect();
                vec![
                    text(&n["name"]),
                    text(&n["advertise"]),
                    text(&n["zone"]),
                    roles.join(","),
                    text(&n["state"]),
                ]
            })
            .collect();
        if !nodes.is_empty() {
            table(&["NODE", "ADDRESS", "ZONE", "ROLES", "STATE"], &nodes);
        }
    }
    if code.is_success() {
        Ok(())
    } else {
        Err(CallError(format!("the server answered {code}")))
    }
}

/// `nimbus console`: a login link for the web console, good once for five minutes.
/// The server gets temporary credentials from GetSessionToken, never the long-term
/// secret.
pub async fn console_link(client: &Client, output: Output) -> Result<(), CallError> {
    let keys = client.keys();
    let body = match &keys.session_token {
        Some(token) => json!({
            "accessKeyId": keys.access_key_id,
            "secretAccessKey": keys.secret,
            "sessionToken": token,
        }),
        None => {
            let form = "Action=GetSessionToken&Version=2011-06-15";
            let (status, _, answer) = client
                .send(
                    "sts",
                    Method::POST,
                    "/",
                    "",
                    &[("content-type", "application/x-www-form-urlencoded")],
                    Upload::new(form.as_bytes().to_vec(), None),
                )
                .await?;
            let fields = [
                "AccessKeyId",
                "SecretAccessKey",
                "SessionToken",
                "Expiration",
            ];
            let credentials = xml::first_record(&answer, "Credentials", &fields)
                .filter(|_| status.is_success())
                .ok_or_else(|| {
                    let message = xml::first_record(&answer, "Error", &["Message"])
                        .map_or_else(|| status.to_string(), |mut record| record.remove(0));
                    CallError(format!("GetSessionToken failed: {message}"))
                })?;
            json!({
                "accessKeyId": credentials[0],
                "secretAccessKey": credentials[1],
                "sessionToken": credentials[2],
                "expiration": credentials[3],
            })
        }
    };
    let (code, _, body) = client
        .plain(
            Method::POST,
            "/console/api/links",
            Some("application/json"),
            body.to_string().into_bytes(),
        )
        .await?;
    let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !code.is_success() {
        return Err(CallError(format!(
            "the server refused a login link ({code}): {}",
            text(&answer["message"])
        )));
    }
    if output == Output::Json {
        print_json(&answer);
    } else {
        println!("{}", text(&answer["url"]));
        eprintln!(
            "open it in a browser within five minutes to sign in as {}; it works once",
            text(&answer["principal"])
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct DocsArgs {
    /// Where the pages go.
    #[arg(long, default_value = "docs")]
    out: PathBuf,
    /// Only compare: exit 1, naming the stale pages, when they differ.
    #[arg(long)]
    check: bool,
}

/// The service's name as its AWS documentation writes it.
fn service_title(signing_name: &str) -> &str {
    match signing_name {
        "lambda" => "AWS Lambda",
        "s3" => "Amazon S3",
        "iam" => "AWS IAM",
        "sts" => "AWS STS",
        "ecr" => "Amazon ECR",
        "ecs" => "Amazon ECS",
        "logs" => "Amazon CloudWatch Logs",
        "scheduler" => "Amazon EventBridge Scheduler",
        other => other,
    }
}

const GENERATED: &str =
    "<!-- Written by `nimbus docs` from a running server's routing tables; do not edit. -->";

/// The pages `nimbus docs` writes: one per service and an index, from the answer
/// of `/_nimbus/operations`.
fn docs_pages(operations: &Value) -> Vec<(String, String)> {
    let services = operations["services"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut index = format!(
        "# Supported operations\n\n{GENERATED}\n\nEvery operation below is routed by nimbus; any other answers the \
         protocol's unknown-operation error. Run `nimbus docs` against a running server to \
         bring these pages up to date.\n\n| Service | Protocol | Operations | Authorization |\n|---|---|---|---|\n"
    );
    let mut pages = Vec::new();
    for service in &services {
        let signing = text(&service["signing_name"]);
        let title = service_title(&signing).to_owned();
        let protocol = text(&service["protocol"]);
        let ops = service["operations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        index.push_str(&format!(
            "| [{title}]({signing}.md) | {protocol} | {} | [actions, resources and condition keys]({signing}-authorization.md) |\n",
            ops.len()
        ));
        let mut page = format!(
            "# {title}\n\n{GENERATED}\n\nProtocol `{protocol}`, signing name `{signing}`, {} operations.\n\n\
             | Operation | Request |\n|---|---|\n",
            ops.len()
        );
        for op in &ops {
            let name = text(&op["name"]);
            let request = match (&op["route"], &service["target_prefix"]) {
                (Value::String(route), _) => route.clone(),
                (_, Value::String(prefix)) => format!("X-Amz-Target: {prefix}.{name}"),
                _ => format!("Action={name}"),
            };
            page.push_str(&format!("| {name} | `{request}` |\n"));
        }
        pages.push((format!("{signing}.md"), page));
        pages.push((
            format!("{signing}-authorization.md"),
            authorization_page(&title, &ops),
        ));
    }
    pages.push(("README.md".to_owned(), index));
    pages
}

/// A service's authorization reference, as AWS's Service Authorization Reference
/// lays it out: per operation, the IAM action the edge checks before it runs, the
/// resource (ARN template), the condition keys it supplies and the actions it
/// depends on.
fn authorization_page(title: &str, ops: &[Value]) -> String {
    let mut page = format!(
        "# {title}: actions, resources and condition keys\n\n{GENERATED}\n\n\
         Before an operation runs, the edge asks IAM whether the caller may perform its action on \
         the resource the request names (filled into the template below), with the resource's own \
         policy where it has one, and each dependent action. The account's root user may do \
         everything.\n\n\
         | Operation | Action | Resource | Condition keys | Dependent actions |\n|---|---|---|---|---|\n"
    );
    let list = |value: &Value| {
        let items: Vec<String> = value
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| format!("`{}`", text(item)))
            .collect();
        items.join(", ")
    };
    for op in ops {
        let name = text(&op["name"]);
        let authorization = &op["authorization"];
        let resource = text(&authorization["resource"]);
        let (action, resource) = match &authorization["action"] {
            Value::String(action) if authorization["checked_in_operation"] == true => (
                format!("`{action}` (checked as the operation runs)"),
                format!("`{resource}`"),
            ),
            Value::String(action) => (format!("`{action}`"), format!("`{resource}`")),
            _ => ("none".to_owned(), resource),
        };
        page.push_str(&format!(
            "| {name} | {action} | {resource} | {} | {} |\n",
            list(&authorization["condition_keys"]),
            list(&authorization["dependent_actions"]),
        ));
    }
    page
}

/// `nimbus docs`: writes (or with `--check`, compares) docs/ from the server's own
/// routing tables.
pub async fn docs(client: &Client, _output: Output, args: DocsArgs) -> Result<(), CallError> {
    let (code, _, body) = client
        .plain(Method::GET, "/_nimbus/operations", None, Vec::new())
        .await?;
    if !code.is_success() {
        return Err(CallError(format!("the server answered {code}")));
    }
    let operations: Value = serde_json::from_slice(&body)
        .map_err(|err| CallError(format!("the server's operations are not JSON: {err}")))?;
    let pages = docs_pages(&operations);
    if args.check {
        let stale: Vec<&str> = pages
            .iter()
            .filter(|(name, page)| {
                std::fs::read_to_string(args.out.join(name)).ok().as_deref() != Some(page.as_str())
            })
            .map(|(name, _)| name.as_str())
            .collect();
        return if stale.is_empty() {
            Ok(())
        } else {
            Err(CallError(format!(
                "{} out of date in {}: run `nimbus docs` against a server built from this tree",
                stale.join(", "),
                args.out.display()
            )))
        };
    }
    std::fs::create_dir_all(&args.out)
        .map_err(|err| CallError(format!("cannot make {}: {err}", args.out.display())))?;
    for (name, page) in &pages {
        let path = args.out.join(name);
        std::fs::write(&path, page)
            .map_err(|err| CallError(format!("cannot write {}: {err}", path.display())))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum LogsCommand {
    /// Prints a log group's recent events (a function's, by its name), and with
    /// `--follow` new ones as they arrive.
    Tail {
        /// A function name, or a log group starting with `/`.
        name: String,
        #[arg(long)]
        follow: bool,
        /// How far back to start, in minutes.
        #[arg(long, default_value_t = 10)]
        since: u64,
    },
}

pub async fn logs(client: &Client, output: Output, command: LogsCommand) -> Result<(), CallError> {
    let LogsCommand::Tail {
        name,
        follow,
        since,
    } = command;
    let group = if name.starts_with('/') {
        name
    } else {
        format!("/aws/lambda/{name}")
    };
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    };
    let mut start = now_ms() - (since as i64) * 60_000;
    let mut seen = std::collections::HashSet::new();
    loop {
        let mut token: Option<String> = None;
        loop {
            let mut request = json!({ "logGroupName": group, "startTime": start });
            if let Some(token) = &token {
                request["nextToken"] = token.clone().into();
            }
            let page = client
                .json11("logs", "Logs_20140328.FilterLogEvents", &request)
                .await?;
            for event in page["events"].as_array().into_iter().flatten() {
                if !seen.insert(text(&event["eventId"])) {
                    continue;
                }
                let timestamp = event["timestamp"].as_i64().unwrap_or(0);
                start = start.max(timestamp);
                if output == Output::Json {
                    println!("{event}");
                } else {
                    let at = time::OffsetDateTime::from_unix_timestamp_nanos(
                        i128::from(timestamp) * 1_000_000,
                    )
                    .ok()
                    .and_then(|t| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                    .unwrap_or_default();
                    println!(
                        "{at} {} {}",
                        text(&event["logStreamName"]),
                        text(&event["message"]).trim_end()
                    );
                }
            }
            token = page["nextToken"].as_str().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        let _ = std::io::stdout().flush();
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// The images in the registry: repository, tags, digest, size.
    Ls,
    /// Pushes an image (or index) from an OCI layout directory to a repository,
    /// made if missing; blobs the registry holds already are skipped.
    Push {
        /// The OCI image layout (as `umoci` or `skopeo copy ... oci:DIR` write it).
        layout: PathBuf,
        /// `REPOSITORY:TAG`.
        target: String,
        /// The layout's tag to push (the target's tag by default, or the layout's
        /// only image).
        #[arg(long)]
        source_tag: Option<String>,
    },
}

const ECR: &str = "AmazonEC2ContainerRegistry_V20150921";
const ECS: &str = "AmazonEC2ContainerServiceV20141113";

pub async fn images(
    client: &Client,
    output: Output,
    command: ImageCommand,
) -> Result<(), CallError> {
    if let ImageCommand::Push {
        layout,
        target,
        source_tag,
    } = command
    {
        return push(client, output, &layout, &target, source_tag).await;
    }
    let repositories = client
        .json11("ecr", &format!("{ECR}.DescribeRepositories"), &json!({}))
        .await?;
    let mut all = Vec::new();
    for repository in repositories["repositories"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let described = client
            .json11(
                "ecr",
                &format!("{ECR}.DescribeImages"),
                &json!({ "repositoryName": repository["repositoryName"] }),
            )
            .await?;
        all.extend(
            described["imageDetails"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
    }
    if output == Output::Json {
        print_json(&json!({ "imageDetails": all }));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|image| {
            let tags: Vec<String> = image["imageTags"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            let digest = text(&image["imageDigest"]);
            let bytes = image["imageSizeInBytes"].as_f64().unwrap_or(0.0);
            vec![
                text(&image["repositoryName"]),
                if tags.is_empty() {
                    "-".to_owned()
                } else {
                    tags.join(",")
                },
                digest.chars().take(19).collect(),
                format!("{:.1} MB", bytes / 1e6),
            ]
        })
        .collect();
    table(&["REPOSITORY", "TAGS", "DIGEST", "SIZE"], &rows);
    Ok(())
}

/// `nimbus run`: a one-off task of one container.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The image, in nimbus's registry (`host:port/repo:tag`) or any other.
    image: String,
    /// A host port forwarded to a container port, `HOST:CONTAINER` (HOST 0 for any).
    #[arg(short = 'p', long = "publish")]
    ports: Vec<String>,
    /// An environment variable, `NAME=value`.
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    #[arg(long, default_value = "default")]
    cluster: String,
    /// Memory limit in MB.
    #[arg(long, default_value_t = 256)]
    memory: u32,
    /// The command, instead of the image's.
    #[arg(last = true)]
    command: Vec<String>,
}

/// Runs a one-off task, streaming its output until it stops (Ctrl-C stops it); exits
/// with the container's exit code.
pub async fn run_task(client: &Client, output: Output, args: RunArgs) -> Result<(), CallError> {
    let mut mappings = Vec::new();
    for spec in &args.ports {
        let (host, container) = spec
            .split_once(':')
            .and_then(|(h, c)| Some((h.parse::<u16>().ok()?, c.parse::<u16>().ok()?)))
            .ok_or_else(|| {
                CallError(format!(
                    "-p {spec}: write HOST:CONTAINER, e.g. 8080:80 (0:80 for any host port)"
                ))
            })?;
        mappings.push(json!({ "hostPort": host, "containerPort": container, "protocol": "tcp" }));
    }
    let mut environment = Vec::new();
    for pair in &args.env {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| CallError(format!("-e {pair}: write NAME=value")))?;
        environment.push(json!({ "name": name, "value": value }));
    }
    let group = "/nimbus/run";
    let mut container = json!({
        "name": "main", "image": args.image, "memory": args.memory, "essential": true,
        "portMappings": mappings, "environment": environment,
        "logConfiguration": { "logDriver": "awslogs", "options": {
            "awslogs-group": group, "awslogs-region": client.region, "awslogs-stream-prefix": "run",
            "awslogs-create-group": "true" } },
    });
    if !args.command.is_empty() {
        container["command"] = json!(args.command);
    }
    client
        .json11(
            "ecs",
            &format!("{ECS}.CreateCluster"),
            &json!({ "clusterName": args.cluster }),
        )
        .await?;
    let definition = client
        .json11(
            "ecs",
            &format!("{ECS}.RegisterTaskDefinition"),
            &json!({ "family": "nimbus-run", "networkMode": "bridge", "containerDefinitions": [container] }),
        )
        .await?;
    let started = client
        .json11(
            "ecs",
            &format!("{ECS}.RunTask"),
            &json!({ "cluster": args.cluster, "taskDefinition": definition["taskDefinition"]["taskDefinitionArn"], "startedBy": "nimbus-run" }),
        )
        .await?;
    let Some(task) = started["tasks"][0]["taskArn"].as_str().map(str::to_owned) else {
        return Err(CallError(format!(
            "the task was not placed: {}",
            text(&started["failures"][0]["reason"])
        )));
    };
    let id = task.rsplit('/').next().unwrap_or_default().to_owned();
    eprintln!("task {id} started");
    let stream = format!("run/main/{id}");
    let mut next_token: Option<String> = None;
    let mut stop_asked = false;
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let described = client
            .json11(
                "ecs",
                &format!("{ECS}.DescribeTasks"),
                &json!({ "cluster": args.cluster, "tasks": [task] }),
            )
            .await?;
        let state = &described["tasks"][0];
        let stopped = state["lastStatus"] == "STOPPED";
        // Events of the stream so far (after the last page read).
        loop {
            let mut request =
                json!({ "logGroupName": group, "logStreamName": stream, "startFromHead": true });
            if let Some(token) = &next_token {
                request["nextToken"] = token.clone().into();
            }
            let Ok(page) = client
                .json11("logs", "Logs_20140328.GetLogEvents", &request)
                .await
            else {
                break;
            };
            let events = page["events"].as_array().cloned().unwrap_or_default();
            for event in &events {
                if output == Output::Json {
                    println!("{event}");
                } else {
                    println!("{}", text(&event["message"]));
                }
            }
            next_token = page["nextForwardToken"].as_str().map(str::to_owned);
            if events.is_empty() {
                break;
            }
        }
        let _ = std::io::stdout().flush();
        if stopped {
            let code = state["containers"][0]["exitCode"].as_i64();
            return match code {
                Some(0) => Ok(()),
                Some(code) => Err(CallError(format!("the container exited with code {code}"))),
                None => Err(CallError(format!(
                    "the task stopped: {}",
                    text(&state["stoppedReason"])
                ))),
            };
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = &mut ctrl_c, if !stop_asked => {
                stop_asked = true;
                eprintln!("stopping task {id}");
                client
                    .json11("ecs", &format!("{ECS}.StopTask"), &json!({ "cluster": args.cluster, "task": task, "reason": "Stopped from nimbus run" }))
                    .await?;
            }
        }
    }
}

/// A blob of an OCI layout, by digest.
fn layout_blob(layout: &Path, digest: &str) -> Result<Vec<u8>, CallError> {
    // Names only inside the layout's blobs directory.
    let (algorithm, hex) = digest
        .split_once(':')
        .filter(|(a, h)| {
            !a.is_empty()
                && a.bytes().all(|b| b.is_ascii_alphanumeric())
                && !h.is_empty()
                && h.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .ok_or_else(|| CallError(format!("bad digest {digest}")))?;
    std::fs::read(layout.join("blobs").join(algorithm).join(hex))
        .map_err(|err| CallError(format!("{}: blob {digest}: {err}", layout.display())))
}

/// Pushes `layout`'s image to `target` through the registry's `/v2/` API, logged in
/// with ECR's token.
async fn push(
    client: &Client,
    output: Output,
    layout: &Path,
    target: &str,
    source_tag: Option<String>,
) -> Result<(), CallError> {
    let (repository, tag) = target
        .rsplit_once(':')
        .filter(|(repo, tag)| !repo.is_empty() && !tag.contains('/'))
        .ok_or_else(|| CallError(format!("{target}: write REPOSITORY:TAG")))?;
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).map_err(|err| {
            CallError(format!("{} is not an OCI layout: {err}", layout.display()))
        })?)
        .map_err(|err| CallError(format!("{}/index.json: {err}", layout.display())))?;
    let entries = index["manifests"].as_array().cloned().unwrap_or_default();
    let wanted = source_tag.as_deref().unwrap_or(tag);
    let named =
        |entry: &&Value| entry["annotations"]["org.opencontainers.image.ref.name"] == wanted;
    let entry = match entries.iter().find(named) {
        Some(entry) => entry.clone(),
        None if entries.len() == 1 && source_tag.is_none() => entries[0].clone(),
        None => {
            return Err(CallError(format!(
                "{} has no image tagged {wanted}",
                layout.display()
            )));
        }
    };
    // The repository, made if it is missing, and a registry login.
    let described = client
        .json11(
            "ecr",
            &format!("{ECR}.DescribeRepositories"),
            &json!({ "repositoryNames": [repository] }),
        )
        .await;
    if described.is_err() {
        client
            .json11(
                "ecr",
                &format!("{ECR}.CreateRepository"),
                &json!({ "repositoryName": repository }),
            )
            .await?;
        eprintln!("created repository {repository}");
    }
    let token = client
        .json11("ecr", &format!("{ECR}.GetAuthorizationToken"), &json!({}))
        .await?;
    let basic = format!(
        "Basic {}",
        text(&token["authorizationData"][0]["authorizationToken"])
    );
    let registry = Registry {
        client,
        basic,
        repository,
        layout,
    };
    let digest = registry.push_manifest(&entry, tag).await?;
    if output == Output::Json {
        print_json(&json!({ "repository": repository, "tag": tag, "digest": digest }));
    } else {
        println!("{}/{repository}:{tag} is {digest}", client.host());
    }
    Ok(())
}

/// One push's registry session.
struct Registry<'a> {
    client: &'a Client,
    basic: String,
    repository: &'a str,
    layout: &'a Path,
}

impl Registry<'_> {
    async fn request(
        &self,
        method: Method,
        uri: &str,
        content_type: Option<&str>,
        body: Upload,
    ) -> Result<http::HeaderMap, CallError> {
        let mut headers = http::HeaderMap::new();
        let value = |text: &str| {
            http::HeaderValue::from_str(text)
                .map_err(|_| CallError(format!("bad header value {text}")))
        };
        headers.insert("authorization", value(&self.basic)?);
        if let Some(content_type) = content_type {
            headers.insert("content-type", value(content_type)?);
        }
        let (status, headers, body) = self.client.transmit(method, uri, headers, body).await?;
        if status.is_client_error() || status.is_server_error() {
            let error: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            return Err(CallError(format!(
                "the registry refused {uri}: {status} {} {}",
                text(&error["errors"][0]["code"]),
                text(&error["errors"][0]["message"])
            )));
        }
        Ok(headers)
    }

    /// Uploads one blob unless the repository has it.
    async fn push_blob(&self, digest: &str, kind: &str) -> Result<(), CallError> {
        let repo = self.repository;
        let exists = self
            .request(
                Method::HEAD,
                &format!("/v2/{repo}/blobs/{digest}"),
                None,
                Upload::new(Vec::new(), None),
            )
            .await
            .is_ok();
        let short: String = digest.chars().take(19).collect();
        if exists {
            eprintln!("{kind} {short}: already there");
            return Ok(());
        }
        let data = layout_blob(self.layout, digest)?;
        let size = data.len();
        let started = std::time::Instant::now();
        let headers = self
            .request(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/"),
                None,
                Upload::new(Vec::new(), None),
            )
            .await?;
        let location = headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| CallError("the registry gave no upload location".to_owned()))?;
        // An absolute location names this server; the path is what is asked for.
        let location = location.split_once("://").map_or(location, |(_, rest)| {
            rest.find('/').map_or(rest, |at| &rest[at..])
        });
        let separator = if location.contains('?') { '&' } else { '?' };
        self.request(
            Method::PUT,
            &format!("{location}{separator}digest={digest}"),
            Some("application/octet-stream"),
            Upload::new(data, Some(format!("{kind} {short}"))),
        )
        .await?;
        eprintln!(
            "{kind} {short}: pushed {:.1} MB in {:.2} s",
            size as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Pushes a manifest's blobs (an index's manifests first), then the manifest
    /// under `reference`; its digest.
    async fn push_manifest(
        &self,
        descriptor: &Value,
        reference: &str,
    ) -> Result<String, CallError> {
        let digest = text(&descriptor["digest"]);
        let bytes = layout_blob(self.layout, &digest)?;
        let manifest: Value = serde_json::from_slice(&bytes)
            .map_err(|err| CallError(format!("manifest {digest}: {err}")))?;
        let media_type = manifest["mediaType"]
            .as_str()
            .or(descriptor["mediaType"].as_str())
            .unwrap_or("application/vnd.oci.image.manifest.v1+json")
            .to_owned();
        if let Some(children) = manifest["manifests"].as_array() {
            for child in children {
                Box::pin(self.push_manifest(child, &text(&child["digest"]))).await?;
            }
        } else {
            self.push_blob(&text(&manifest["config"]["digest"]), "config")
                .await?;
            for layer in manifest["layers"].as_array().into_iter().flatten() {
                self.push_blob(&text(&layer["digest"]), "layer").await?;
            }
        }
        let repo = self.repository;
        self.request(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
            Some(&media_type),
            Upload::new(bytes, None),
        )
        .await?;
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_blobs_are_named_only_by_digests() {
        let layout = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(layout.path().join("blobs/sha256")).unwrap();
        std::fs::write(layout.path().join("blobs/sha256/ab12"), b"blob").unwrap();
        std::fs::write(layout.path().join("index.json"), b"{}").unwrap();
        assert_eq!(layout_blob(layout.path(), "sha256:ab12").unwrap(), b"blob");
        for bad in [
            "..:index.json",
            "sha256:../../index.json",
            "sha256:",
            "nodigest",
        ] {
            assert!(layout_blob(layout.path(), bad).is_err(), "{bad}");
        }
    }
}
