//! Archives and replays. An archive keeps the events put on its bus that match its
//! pattern, each written in the batch that accepts the event; a replay sends an
//! archive's events from a time window back to the bus's rules (or some of them),
//! each carrying `replay-name`, page by page on the lease holder, each page's
//! deliveries committed with the replay's progress.
//!
//! Records: `events.archives/<name>`, `events.archived/<archive>/<ms>/<id>` (by the
//! time the bus took the event in) and `events.replays/<name>`.

use http::StatusCode;
use nimbus_cluster::outbox::now_ms;
use nimbus_edge::AwsError;
use nimbus_storage::{Expect, StoreError, WriteBatch};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{Events, Rule, check_pattern, internal, invalid, not_found};

pub const ARCHIVES: &str = "events.archives";
pub const ARCHIVED: &str = "events.archived";
pub const REPLAYS: &str = "events.replays";
/// Archived events a replay sends per step, and what one housekeeping step removes.
const PAGE: usize = 500;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Archive {
    pub name: String,
    pub bus: String,
    pub description: Option<String>,
    pub pattern: Option<String>,
    /// Days an event is kept; 0 keeps it for ever.
    pub retention_days: i64,
    pub created: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Replay {
    pub name: String,
    pub archive: String,
    pub description: Option<String>,
    pub start_ms: i64,
    pub end_ms: i64,
    /// `Arn` (the archive's bus) and `FilterArns` (the rules to replay to; all if none).
    pub destination: Value,
    /// `STARTING`, `RUNNING`, `CANCELLING`, `CANCELLED`, `COMPLETED` or `FAILED`.
    pub state: String,
    pub reason: Option<String>,
    pub started: f64,
    pub ended: Option<f64>,
    /// The key of the last archived event replayed.
    pub after: Option<String>,
    pub last_ms: Option<i64>,
}

fn exists(message: String) -> AwsError {
    AwsError::new(
        StatusCode::BAD_REQUEST,
        "ResourceAlreadyExistsException",
        message,
    )
}

fn check_archive_name(name: &str) -> Result<(), AwsError> {
    let good = (1..=48).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if good {
        Ok(())
    } else {
        Err(invalid(format!(
            "Name {name} is not valid: 1 to 48 of a-z, A-Z, 0-9, '.', '_' and '-'."
        )))
    }
}

/// When the bus took an archived event in: its key's `<archive>/<ms>/<id>`.
fn taken_in(key: &str) -> i64 {
    key.split('/')
        .nth(1)
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_default()
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

impl Events {
    pub fn archive_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:events:{}:{}:archive/{name}",
            self.region, self.account
        )
    }

    pub fn replay_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:events:{}:{}:replay/{name}",
            self.region, self.account
        )
    }

    pub fn create_archive(&self, archive: Archive) -> Result<Archive, AwsError> {
        check_archive_name(&archive.name)?;
        self.bus(&archive.bus)?;
        if let Some(pattern) = &archive.pattern {
            check_pattern(pattern)?;
        }
        if archive.retention_days < 0 {
            return Err(invalid("RetentionDays must not be negative."));
        }
        let value = serde_json::to_vec(&archive).expect("archives serialize");
        match self.meta.commit(WriteBatch::new().put(
            ARCHIVES,
            &archive.name,
            value,
            Expect::Absent,
        )) {
            Ok(()) => Ok(archive),
            Err(StoreError::Conflict { .. }) => {
                Err(exists(format!("Archive {} already exists.", archive.name)))
            }
            Err(err) => Err(internal(err)),
        }
    }

    pub fn archive(&self, name: &str) -> Result<(Archive, u64), AwsError> {
        let record = self
            .meta
            .get(ARCHIVES, name)
            .map_err(internal)?
            .ok_or_else(|| not_found(format!("Archive {name} does not exist.")))?;
        Ok((
            serde_json::from_slice(&record.value).map_err(internal)?,
            record.version,
        ))
    }

    pub fn archives(&self) -> Result<Vec<Archive>, AwsError> {
        self.meta
            .scan_all(ARCHIVES, "")
            .map_err(internal)?
            .iter()
            .map(|r| serde_json::from_slice(&r.value).map_err(internal))
            .collect()
    }

    /// How many events an archive holds, and their bytes.
    pub fn archive_size(&self, name: &str) -> Result<(usize, usize), AwsError> {
        let records = self
            .meta
            .scan_all(ARCHIVED, &format!("{name}/"))
            .map_err(internal)?;
        Ok((records.len(), records.iter().map(|r| r.value.len()).sum()))
    }

    pub fn update_archive(
        &self,
        name: &str,
        change: impl Fn(&mut Archive) -> Result<(), AwsError>,
    ) -> Result<Archive, AwsError> {
        loop {
            let (mut archive, version) = self.archive(name)?;
            change(&mut archive)?;
            if let Some(pattern) = &archive.pattern {
                check_pattern(pattern)?;
            }
            let value = serde_json::to_vec(&archive).expect("archives serialize");
            match self.meta.commit(WriteBatch::new().put(
                ARCHIVES,
                name,
                value,
                Expect::Version(version),
            )) {
                Ok(()) => return Ok(archive),
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(internal(err)),
            }
        }
    }

    /// Deletes an archive; its events go with the next housekeeping steps.
    pub fn delete_archive(&self, name: &str) -> Result<(), AwsError> {
        let (_, version) = self.archive(name)?;
        self.meta
            .commit(WriteBatch::new().delete(ARCHIVES, name, Expect::Version(version)))
            .map_err(internal)
    }

    /// The archive records of an event `bus` takes in now: one per archive of the bus
    /// whose pattern (if any) it matches. Replayed events are not archived again.
    pub(crate) fn archived(
        &self,
        archives: &[Archive],
        bus: &str,
        event: &Value,
    ) -> Vec<(String, String, Vec<u8>)> {
        if event.get("replay-name").is_some() {
            return Vec::new();
        }
        let now = now_ms();
        archives
            .iter()
            .filter(|archive| archive.bus == bus)
            .filter(|archive| {
                archive.pattern.as_deref().is_none_or(|pattern| {
                    serde_json::from_str::<Value>(pattern)
                        .is_ok_and(|p| nimbus_patterns::matches(&p, event))
                })
            })
            .map(|archive| {
                let key = format!(
                    "{}/{now:013}/{}",
                    archive.name,
                    event["id"].as_str().unwrap_or_default()
                );
                (
                    ARCHIVED.to_owned(),
                    key,
                    serde_json::to_vec(event).expect("events serialize"),
                )
            })
            .collect()
    }

    // --- Replays ---------------------------------------------------------------------

    /// Starts replaying an archive's events from `[start_ms, end_ms)` to its bus.
    pub fn start_replay(&self, replay: Replay) -> Result<Replay, AwsError> {
        if replay.name.is_empty() || replay.name.len() > 64 {
            return Err(invalid("ReplayName must be 1 to 64 characters."));
        }
        let (archive, _) = self.archive(&replay.archive)?;
        let destination = replay.destination["Arn"].as_str().unwrap_or_default();
        if crate::bus_name(destination) != archive.bus {
            return Err(invalid(
                "Parameter Destination.Arn is not valid. Reason: Cross event bus replay is not permitted.",
            ));
        }
        if replay.end_ms <= replay.start_ms {
            return Err(invalid(
                "Parameter EventEndTime is not valid. Reason: EventStartTime must be before EventEndTime.",
            ));
        }
        if replay.end_ms > now_ms() {
            return Err(invalid(
                "Parameter EventEndTime is not valid. Reason: EventEndTime cannot be in the future.",
            ));
        }
        let value = serde_json::to_vec(&replay).expect("replays serialize");
        match self
            .meta
            .commit(WriteBatch::new().put(REPLAYS, &replay.name, value, Expect::Absent))
        {
            Ok(()) => Ok(replay),
            Err(StoreError::Conflict { .. }) => {
                Err(exists(format!("Replay {} already exists.", replay.name)))
            }
            Err(err) => Err(internal(err)),
        }
    }

    pub fn replay(&self, name: &str) -> Result<(Replay, u64), AwsError> {
        let record = self
            .meta
            .get(REPLAYS, name)
            .map_err(internal)?
            .ok_or_else(|| not_found(format!("Replay {name} does not exist.")))?;
        Ok((
            serde_json::from_slice(&record.value).map_err(internal)?,
            record.version,
        ))
    }

    pub fn replays(&self) -> Result<Vec<Replay>, AwsError> {
        self.meta
            .scan_all(REPLAYS, "")
            .map_err(internal)?
            .iter()
            .map(|r| serde_json::from_slice(&r.value).map_err(internal))
            .collect()
    }

    /// Asks a replay that has not finished to stop.
    pub fn cancel_replay(&self, name: &str) -> Result<Replay, AwsError> {
        loop {
            let (mut replay, version) = self.replay(name)?;
            if !matches!(replay.state.as_str(), "STARTING" | "RUNNING") {
                return Err(AwsError::new(
                    StatusCode::BAD_REQUEST,
                    "IllegalStatusException",
                    format!("Replay {name} is {} and cannot be cancelled.", replay.state),
                ));
            }
            replay.state = "CANCELLING".to_owned();
            let value = serde_json::to_vec(&replay).expect("replays serialize");
            match self.meta.commit(WriteBatch::new().put(
                REPLAYS,
                name,
                value,
                Expect::Version(version),
            )) {
                Ok(()) => return Ok(replay),
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(internal(err)),
            }
        }
    }

    /// One step of every unfinished replay: a page of its archive's events, each
    /// staged for the rules it replays to, committed with the replay's progress.
    pub fn replay_step(&self) -> Result<bool, AwsError> {
        let mut staged = false;
        for replay in self.replays()? {
            if !matches!(replay.state.as_str(), "STARTING" | "RUNNING" | "CANCELLING") {
                continue;
            }
            staged |= self.advance(replay)?;
        }
        Ok(staged)
    }

    fn advance(&self, mut replay: Replay) -> Result<bool, AwsError> {
        let (_, version) = self.replay(&replay.name)?;
        let mut batch = WriteBatch::new();
        let mut staged = false;
        if replay.state == "CANCELLING" {
            replay.state = "CANCELLED".to_owned();
            replay.ended = Some(seconds(now_ms()));
        } else {
            replay.state = "RUNNING".to_owned();
            let rules = self.replayed_rules(&replay)?;
            let first = format!("{}/{:013}/", replay.archive, replay.start_ms);
            let after = replay.after.clone().unwrap_or(first);
            let page = self
                .meta
                .scan(
                    ARCHIVED,
                    &format!("{}/", replay.archive),
                    Some(&after),
                    PAGE,
                )
                .map_err(internal)?;
            let mut done = page.len() < PAGE;
            for record in &page {
                let at = taken_in(&record.key);
                if at >= replay.end_ms {
                    done = true;
                    break;
                }
                let Ok(mut event) = serde_json::from_slice::<Value>(&record.value) else {
                    continue;
                };
                event["replay-name"] = replay.name.as_str().into();
                for (table, key, value) in self.deliveries(&rules, &event) {
                    batch = batch.put(&table, &key, value, Expect::Absent);
                    staged = true;
                }
                replay.after = Some(record.key.clone());
                replay.last_ms = Some(at);
            }
            if done {
                replay.state = "COMPLETED".to_owned();
                replay.ended = Some(seconds(now_ms()));
            }
        }
        let value = serde_json::to_vec(&replay).expect("replays serialize");
        batch = batch.put(REPLAYS, &replay.name, value, Expect::Version(version));
        match self.meta.commit(batch) {
            Ok(()) => Ok(staged),
            // Cancelled meanwhile: the next step sees it.
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(err) => Err(internal(err)),
        }
    }

    /// The rules a replay sends to: those of the archive's bus it names, else all.
    fn replayed_rules(&self, replay: &Replay) -> Result<Vec<Rule>, AwsError> {
        let bus = crate::bus_name(replay.destination["Arn"].as_str().unwrap_or_default());
        let filter: Vec<&str> = replay.destination["FilterArns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        Ok(self
            .rules(bus)?
            .into_iter()
            .filter(|rule| {
                filter.is_empty() || filter.contains(&self.rule_arn(&rule.bus, &rule.name).as_str())
            })
            .collect())
    }

    /// Removes archived events past their archive's retention (each archive's oldest,
    /// a page a step) and those of archives that are gone (a page of the table a step,
    /// after `after`, the last key the step before looked at); returns where the next
    /// step goes on from.
    pub fn expire_archived(
        &self,
        now: i64,
        after: Option<String>,
    ) -> Result<Option<String>, AwsError> {
        let archives = self.archives()?;
        let mut batch = WriteBatch::new();
        for archive in archives.iter().filter(|a| a.retention_days > 0) {
            let oldest = self
                .meta
                .scan(ARCHIVED, &format!("{}/", archive.name), None, PAGE)
                .map_err(internal)?;
            for record in oldest {
                if taken_in(&record.key) + archive.retention_days * 86_400_000 >= now {
                    break;
                }
                batch = batch.delete(ARCHIVED, &record.key, Expect::Version(record.version));
            }
        }
        let page = self
            .meta
            .scan(ARCHIVED, "", after.as_deref(), PAGE)
            .map_err(internal)?;
        let next = page
            .last()
            .filter(|_| page.len() == PAGE)
            .map(|record| record.key.clone());
        for record in &page {
            let name = record.key.split('/').next().unwrap_or_default();
            if !archives.iter().any(|a| a.name == name) {
                batch = batch.delete(ARCHIVED, &record.key, Expect::Version(record.version));
            }
        }
        if !batch.is_empty() {
            match self.meta.commit(batch) {
                Ok(()) | Err(StoreError::Conflict { .. }) => {}
                Err(err) => return Err(internal(err)),
            }
        }
        Ok(next)
    }

    /// An archive as `DescribeArchive` answers.
    pub fn archive_json(&self, archive: &Archive) -> Result<Value, AwsError> {
        let (count, bytes) = self.archive_size(&archive.name)?;
        let mut out = json!({
            "ArchiveArn": self.archive_arn(&archive.name),
            "ArchiveName": archive.name,
            "EventSourceArn": self.bus_arn(&archive.bus),
            "State": "ENABLED",
            "RetentionDays": archive.retention_days,
            "SizeBytes": bytes,
            "EventCount": count,
            "CreationTime": archive.created,
        });
        if let Some(description) = &archive.description {
            out["Description"] = description.as_str().into();
        }
        if let Some(pattern) = &archive.pattern {
            out["EventPattern"] = pattern.as_str().into();
        }
        Ok(out)
    }

    /// A replay as `DescribeReplay` answers.
    pub fn replay_json(&self, replay: &Replay) -> Value {
        let mut out = json!({
            "ReplayName": replay.name,
            "ReplayArn": self.replay_arn(&replay.name),
            "State": replay.state,
            "EventSourceArn": self.archive_arn(&replay.archive),
            "Destination": replay.destination,
            "EventStartTime": seconds(replay.start_ms),
            "EventEndTime": seconds(replay.end_ms),
            "ReplayStartTime": replay.started,
        });
        for (field, value) in [
            ("Description", replay.description.clone().map(Value::from)),
            ("StateReason", replay.reason.clone().map(Value::from)),
            (
                "EventLastReplayedTime",
                replay.last_ms.map(|ms| seconds(ms).into()),
            ),
            ("ReplayEndTime", replay.ended.map(Value::from)),
        ] {
            if let Some(value) = value {
                out[field] = value;
            }
        }
        out
    }
}
