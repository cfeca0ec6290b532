//! `nimbus queue`: SQS queues at a glance, a message sent from the shell, and a
//! queue's messages followed as they arrive.

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use clap::Subcommand;
use serde_json::{Value, json};

use super::client::{CallError, Client};
use super::{Output, print_json, table, text};

#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// The queues, with their messages visible, in flight and delayed.
    Ls,
    /// Sends one message: BODY, or standard input when BODY is `-`.
    Send {
        /// A queue name or URL.
        queue: String,
        body: String,
        /// The message group (FIFO queues).
        #[arg(long)]
        group: Option<String>,
        /// Seconds before the message may be received.
        #[arg(long)]
        delay: Option<u32>,
    },
    /// Prints a queue's messages as they arrive. Each is received (which counts
    /// towards a redrive policy's maxReceiveCount) and left in the queue, visible
    /// again at once, unless `--delete` takes it.
    Tail {
        /// A queue name or URL.
        queue: String,
        /// Deletes each message once printed, as a consumer would.
        #[arg(long)]
        delete: bool,
        /// Stops after the messages there are now instead of waiting for more.
        #[arg(long)]
        no_follow: bool,
    },
}

async fn sqs(client: &Client, operation: &str, body: &Value) -> Result<Value, CallError> {
    client
        .json_target("sqs", &format!("AmazonSQS.{operation}"), "1.0", body)
        .await
}

/// A queue's URL from its name, or the URL as given.
async fn url_of(client: &Client, queue: &str) -> Result<String, CallError> {
    if queue.contains("://") {
        return Ok(queue.to_owned());
    }
    let found = sqs(client, "GetQueueUrl", &json!({ "QueueName": queue })).await?;
    Ok(text(&found["QueueUrl"]))
}

pub async fn queues(
    client: &Client,
    output: Output,
    command: QueueCommand,
) -> Result<(), CallError> {
    match command {
        QueueCommand::Ls => list(client, output).await,
        QueueCommand::Send {
            queue,
            body,
            group,
            delay,
        } => {
            let body = if body == "-" {
                std::io::read_to_string(std::io::stdin())
                    .map_err(|err| CallError(format!("reading standard input: {err}")))?
            } else {
                body
            };
            let mut request =
                json!({ "QueueUrl": url_of(client, &queue).await?, "MessageBody": body });
            if let Some(group) = group {
                request["MessageGroupId"] = group.into();
            }
            if let Some(delay) = delay {
                request["DelaySeconds"] = delay.into();
            }
            let sent = sqs(client, "SendMessage", &request).await?;
            match output {
                Output::Json => print_json(&sent),
                Output::Table => println!("{}", text(&sent["MessageId"])),
            }
            Ok(())
        }
        QueueCommand::Tail {
            queue,
            delete,
            no_follow,
        } => {
            tail(
                client,
                output,
                &url_of(client, &queue).await?,
                delete,
                !no_follow,
            )
            .await
        }
    }
}

async fn list(client: &Client, output: Output) -> Result<(), CallError> {
    let mut rows = Vec::new();
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut request = json!({ "MaxResults": 1000 });
        if let Some(token) = &token {
            request["NextToken"] = token.clone().into();
        }
        let page = sqs(client, "ListQueues", &request).await?;
        for url in page["QueueUrls"].as_array().into_iter().flatten() {
            let attributes = sqs(
                client,
                "GetQueueAttributes",
                &json!({ "QueueUrl": url, "AttributeNames": ["All"] }),
            )
            .await?["Attributes"]
                .clone();
            let name = text(url).rsplit('/').next().unwrap_or_default().to_owned();
            let count = |name: &str| text(&attributes[name]);
            rows.push(vec![
                name.clone(),
                if name.ends_with(".fifo") {
                    "FIFO"
                } else {
                    "standard"
                }
                .to_owned(),
                count("ApproximateNumberOfMessages"),
                count("ApproximateNumberOfMessagesNotVisible"),
                count("ApproximateNumberOfMessagesDelayed"),
            ]);
            all.push(json!({ "QueueUrl": url, "Attributes": attributes }));
        }
        token = page["NextToken"].as_str().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    match output {
        Output::Json => print_json(&Value::Array(all)),
        Output::Table => table(&["NAME", "TYPE", "VISIBLE", "IN FLIGHT", "DELAYED"], &rows),
    }
    Ok(())
}

async fn tail(
    client: &Client,
    output: Output,
    url: &str,
    delete: bool,
    follow: bool,
) -> Result<(), CallError> {
    let mut seen = HashSet::new();
    loop {
        let mut request = json!({
            "QueueUrl": url,
            "MaxNumberOfMessages": 10,
            "WaitTimeSeconds": if follow { 20 } else { 0 },
            "MessageSystemAttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
        });
        if !delete {
            // Left for the queue's consumers at once.
            request["VisibilityTimeout"] = 0.into();
        }
        let got = sqs(client, "ReceiveMessage", &request).await?;
        let messages = got["Messages"].as_array().cloned().unwrap_or_default();
        let mut fresh = 0;
        for message in &messages {
            if !seen.insert(text(&message["MessageId"])) {
                continue;
            }
            fresh += 1;
            match output {
                Output::Json => println!("{message}"),
                Output::Table => println!(
                    "{} {} {}",
                    sent_at(&message["Attributes"]["SentTimestamp"]),
                    text(&message["MessageId"]),
                    text(&message["Body"]).trim_end()
                ),
            }
            if delete {
                sqs(
                    client,
                    "DeleteMessage",
                    &json!({ "QueueUrl": url, "ReceiptHandle": message["ReceiptHandle"] }),
                )
                .await?;
            }
        }
        let _ = std::io::stdout().flush();
        if fresh == 0 {
            if !follow {
                return Ok(());
            }
            // Only messages printed already: they wait for their consumers.
            if !messages.is_empty() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// A message's `SentTimestamp` (epoch milliseconds) in RFC 3339.
fn sent_at(value: &Value) -> String {
    value
        .as_str()
        .and_then(|ms| ms.parse::<i128>().ok())
        .and_then(|ms| time::OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).ok())
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
