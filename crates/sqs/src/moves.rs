//! Message move tasks (`StartMessageMoveTask`): the redrive of a dead-letter queue's
//! messages back to the queues they came from, or to a queue named. A task runs on
//! the node that started it and records its progress in `sqs.moves/<handle>`;
//! cancelling marks the record, which the task reads between messages.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use nimbus_edge::AwsError;
use nimbus_storage::{Expect, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::error::{internal, invalid_parameter, not_found, unsupported};
use crate::messages::{MESSAGES, Message};
use crate::queues::Queue;
use crate::{Sqs, now_ms};

pub const MOVES: &str = "sqs.moves";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MoveTask {
    pub handle: String,
    pub source_arn: String,
    pub destination_arn: Option<String>,
    pub rate: Option<i64>,
    /// RUNNING, COMPLETED, CANCELLING, CANCELLED or FAILED.
    pub status: String,
    pub moved: i64,
    pub to_move: i64,
    pub started: i64,
    pub failure: Option<String>,
}

impl MoveTask {
    pub fn to_json(&self) -> serde_json::Value {
        let mut out = serde_json::json!({
            "TaskHandle": self.handle,
            "Status": self.status,
            "SourceArn": self.source_arn,
            "ApproximateNumberOfMessagesMoved": self.moved,
            "ApproximateNumberOfMessagesToMove": self.to_move,
            "StartedTimestamp": self.started,
        });
        if let Some(destination) = &self.destination_arn {
            out["DestinationArn"] = destination.as_str().into();
        }
        if let Some(rate) = self.rate {
            out["MaxNumberOfMessagesPerSecond"] = rate.into();
        }
        if let Some(failure) = &self.failure {
            out["FailureReason"] = failure.as_str().into();
        }
        out
    }
}

fn task_key(source: &str, started: i64, id: &str) -> String {
    format!("{source}/{started:013}-{id}")
}

impl Sqs {
    fn moves_of(&self, source: &str) -> Result<Vec<(String, MoveTask)>, AwsError> {
        self.meta
            .scan_all(MOVES, &format!("{source}/"))
            .map_err(internal)?
            .into_iter()
            .map(|r| Ok((r.key, serde_json::from_slice(&r.value).map_err(internal)?)))
            .collect()
    }

    /// Starts moving the messages of a dead-letter queue.
    pub fn start_move(
        self: &Arc<Self>,
        source_arn: &str,
        destination_arn: Option<String>,
        rate: Option<i64>,
    ) -> Result<String, AwsError> {
        let source = self.queue_by_arn(source_arn).map_err(|_| {
            not_found("The resource that you specified for the SourceArn parameter doesn't exist.")
        })?;
        let arn = self.arn(&source.name);
        if !self
            .all_queues()?
            .iter()
            .any(|q| q.redrive().is_some_and(|(t, _)| t == arn))
        {
            return Err(invalid_parameter(
                "Source queue must be configured as a Dead Letter Queue.",
            ));
        }
        if let Some(rate) = rate
            && !(1..=500).contains(&rate)
        {
            return Err(invalid_parameter(
                "MaxNumberOfMessagesPerSecond must be from 1 to 500.",
            ));
        }
        let destination = match &destination_arn {
            Some(arn) => Some(self.queue_by_arn(arn).map_err(|_| not_found("The resource that you specified for the DestinationArn parameter doesn't exist."))?),
            None => None,
        };
        if self
            .moves_of(&source.name)?
            .iter()
            .any(|(_, t)| t.status == "RUNNING" || t.status == "CANCELLING")
        {
            return Err(unsupported(
                "There is already a task running. Only one active task is allowed for a source queue arn at a given time.",
            ));
        }
        let started = now_ms();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let key = task_key(&source.name, started, &id);
        let handle = base64::engine::general_purpose::STANDARD
            .encode(serde_json::json!({"taskId": id, "sourceArn": arn, "key": key}).to_string());
        let task = MoveTask {
            handle: handle.clone(),
            source_arn: arn,
            destination_arn,
            rate,
            status: "RUNNING".into(),
            moved: 0,
            to_move: self.counts(&source)?.visible as i64,
            started,
            failure: None,
        };
        self.record_move(&key, &task)?;
        let sqs = self.clone();
        tokio::spawn(async move { sqs.run_move(key, task, source, destination).await });
        Ok(handle)
    }

    fn record_move(&self, key: &str, task: &MoveTask) -> Result<(), AwsError> {
        self.meta
            .commit(WriteBatch::new().put(
                MOVES,
                key,
                serde_json::to_vec(task).expect("tasks serialize"),
                Expect::Anything,
            ))
            .map_err(internal)
    }

    async fn run_move(
        self: Arc<Self>,
        key: String,
        mut task: MoveTask,
        source: Queue,
        destination: Option<Queue>,
    ) {
        let pause = task
            .rate
            .map(|rate| Duration::from_secs_f64(1.0 / rate as f64));
        loop {
            let sqs = self.clone();
            let (key_now, source_now, destination_now) =
                (key.clone(), source.clone(), destination.clone());
            let step = tokio::task::spawn_blocking(move || {
                sqs.move_one(&key_now, &source_now, destination_now.as_ref())
            })
            .await;
            match step {
                Ok(Ok(Some(()))) => {
                    task.moved += 1;
                    if task.moved % 10 == 0 {
                        let _ = self.update_move(&key, |t| t.moved = task.moved);
                    }
                }
                Ok(Ok(None)) => {
                    let _ = self.update_move(&key, |t| {
                        t.moved = task.moved;
                        t.status = if t.status == "CANCELLING" {
                            "CANCELLED"
                        } else {
                            "COMPLETED"
                        }
                        .into();
                    });
                    return;
                }
                Ok(Err(err)) => {
                    let _ = self.update_move(&key, |t| {
                        t.moved = task.moved;
                        t.status = "FAILED".into();
                        t.failure = Some(err.message.clone());
                    });
                    return;
                }
                Err(_) => return,
            }
            if let Some(pause) = pause {
                tokio::time::sleep(pause).await;
            }
        }
    }

    /// Changes a task's record unless it is gone, conditional on the version read, so
    /// a cancel and the task's own progress never overwrite each other.
    fn update_move(&self, key: &str, change: impl Fn(&mut MoveTask)) -> Result<(), AwsError> {
        loop {
            let Some(record) = self.meta.get(MOVES, key).map_err(internal)? else {
                return Ok(());
            };
            let mut task: MoveTask = serde_json::from_slice(&record.value).map_err(internal)?;
            change(&mut task);
            match self.meta.commit(WriteBatch::new().put(
                MOVES,
                key,
                serde_json::to_vec(&task).expect("tasks serialize"),
                Expect::Version(record.version),
            )) {
                Ok(()) => return Ok(()),
                Err(nimbus_storage::StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(internal(err)),
            }
        }
    }

    /// Moves the source queue's next visible message; `None` when there is none left
    /// or the task was cancelled.
    fn move_one(
        &self,
        key: &str,
        source: &Queue,
        destination: Option<&Queue>,
    ) -> Result<Option<()>, AwsError> {
        let task: MoveTask = match self.meta.get(MOVES, key).map_err(internal)? {
            Some(record) => serde_json::from_slice(&record.value).map_err(internal)?,
            None => return Ok(None),
        };
        if task.status != "RUNNING" {
            return Ok(None);
        }
        let Some((record, message)) = self.next_visible(source)? else {
            return Ok(None);
        };
        let target = match destination {
            Some(queue) => queue.clone(),
            None => {
                let origin = message.source.clone().ok_or_else(|| {
                    invalid_parameter("A message in the queue does not record its source queue.")
                })?;
                self.queue_by_arn(&origin)?
            }
        };
        let mut moved = message.clone();
        moved.source = None;
        moved.receives = 0;
        moved.first_receive_ms = None;
        self.transfer(self.removal(source, &record, &message), &target, moved)?;
        Ok(Some(()))
    }

    /// The first message of a queue that is visible now.
    fn next_visible(
        &self,
        queue: &Queue,
    ) -> Result<Option<(nimbus_storage::Record, Message)>, AwsError> {
        let now = now_ms();
        let mut found = None;
        self.walk(MESSAGES, &format!("{}/", queue.name), |record| {
            let message: Message = serde_json::from_slice(&record.value).map_err(internal)?;
            if message.visible_ms <= now {
                found = Some((record, message));
                return Ok(false);
            }
            Ok(true)
        })?;
        Ok(found)
    }

    pub fn list_moves(&self, source_arn: &str, max: usize) -> Result<Vec<MoveTask>, AwsError> {
        let source = self.queue_by_arn(source_arn).map_err(|_| {
            not_found("The resource that you specified for the SourceArn parameter doesn't exist.")
        })?;
        let mut tasks: Vec<MoveTask> = self
            .moves_of(&source.name)?
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        tasks.sort_by_key(|t| std::cmp::Reverse(t.started));
        tasks.truncate(max);
        // Only the newest task shows its handle, as on SQS.
        for task in tasks.iter_mut().skip(1) {
            task.handle.clear();
        }
        Ok(tasks)
    }

    pub fn cancel_move(&self, handle: &str) -> Result<i64, AwsError> {
        let invalid = || not_found("Task does not exist.");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(handle)
            .map_err(|_| invalid())?;
        let value: serde_json::Value = serde_json::from_slice(&decoded).map_err(|_| invalid())?;
        let key = value["key"].as_str().ok_or_else(invalid)?;
        let record = self
            .meta
            .get(MOVES, key)
            .map_err(internal)?
            .ok_or_else(invalid)?;
        let task: MoveTask = serde_json::from_slice(&record.value).map_err(internal)?;
        if task.status != "RUNNING" {
            return Err(unsupported("Only active tasks can be cancelled."));
        }
        self.update_move(key, |t| t.status = "CANCELLING".into())?;
        Ok(task.moved)
    }
}
