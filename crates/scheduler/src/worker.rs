//! The data plane: fires due ticks into their targets and retries firings a target
//! refused, within the schedule's retry policy, then hands them to its dead-letter
//! target.
//!
//! Times missed while nimbus was stopped are coalesced: on start a schedule fires
//! once for the earliest time it missed — if that is younger than its retry policy's
//! maximum event age — and then resumes at its first time after now.

use std::sync::Arc;
use std::time::Duration;

use nimbus_storage::{Expect, Record, StoreError, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::model::Target;
use crate::schedules::{ScheduleRecord, Tick, due_of};
use crate::{DELIVERIES, SCHEDULES, Scheduler, TICKS};

/// Why a target refused a firing, as the dead-letter message reports it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

/// One firing on its way to the target.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Delivery {
    execution_id: String,
    schedule_arn: String,
    group: String,
    name: String,
    target: Target,
    scheduled_ms: i64,
    /// Attempts the target has refused so far.
    attempts: u32,
}

/// Ticks or deliveries read per store scan.
const PAGE: usize = 64;
/// The longest the worker sleeps without looking at the store.
const IDLE: Duration = Duration::from_secs(60);
/// A refused firing waits this long before its first retry, twice as long before each
/// further one, up to `MAX_BACKOFF_MS`.
const BACKOFF_BASE_MS: i64 = 1000;
const MAX_BACKOFF_MS: i64 = 300_000;
/// The service principal that assumes schedules' roles.
const SERVICE: &str = "scheduler.amazonaws.com";

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

impl Delivery {
    /// The target's input, with Scheduler's context attributes filled in.
    fn payload(&self) -> Vec<u8> {
        self.target
            .input
            .as_deref()
            .unwrap_or("{}")
            .replace("<aws.scheduler.schedule-arn>", &self.schedule_arn)
            .replace(
                "<aws.scheduler.scheduled-time>",
                &rfc3339(self.scheduled_ms),
            )
            .replace("<aws.scheduler.execution-id>", &self.execution_id)
            .replace(
                "<aws.scheduler.attempt-number>",
                &(self.attempts + 1).to_string(),
            )
            .into_bytes()
    }
}

/// Committing lost a race with a change to the same schedule: the next round sees
/// the new state, so the firing is not lost.
fn raced(result: Result<(), StoreError>) -> Result<bool, StoreError> {
    match result {
        Ok(()) => Ok(true),
        Err(StoreError::Conflict { .. }) => Ok(false),
        Err(err) => Err(err),
    }
}

impl Scheduler {
    /// Starts firing schedules, beginning with what came due while nimbus was stopped.
    pub fn start(self: &Arc<Self>) {
        let scheduler = self.clone();
        tokio::spawn(async move { scheduler.work().await });
    }

    async fn work(self: Arc<Self>) {
        loop {
            let scheduler = self.clone();
            let round =
                tokio::task::spawn_blocking(move || scheduler.fire_due(crate::now_ms())).await;
            let wait = match round {
                Ok(Ok(next)) => next.map_or(IDLE, |due| {
                    Duration::from_millis((due - crate::now_ms()).max(0) as u64).min(IDLE)
                }),
                Ok(Err(err)) => {
                    tracing::error!(error = %err, "firing schedules failed");
                    Duration::from_secs(1)
                }
                Err(err) => {
                    tracing::error!(error = %err, "the schedule worker failed");
                    Duration::from_secs(1)
                }
            };
            let _ = tokio::time::timeout(wait, self.wake.notified()).await;
        }
    }

    /// Fires every tick and retries every delivery due at `now` (ms); returns when the
    /// next one falls due.
    pub fn fire_due(&self, now: i64) -> Result<Option<i64>, StoreError> {
        let mut woke = false;
        self.each_due(TICKS, now, |record| self.fire(record, now, &mut woke))?;
        self.each_due(DELIVERIES, now, |record| self.retry(record, now, &mut woke))?;
        if woke {
            self.targets.wake();
        }
        let mut next = None;
        for table in [TICKS, DELIVERIES] {
            if let Some(first) = self.meta.scan(table, "", None, 1)?.first() {
                let due = due_of(&first.key);
                next = Some(next.map_or(due, |next: i64| next.min(due)));
            }
        }
        Ok(next)
    }

    /// Runs `each` on every record of `table` due at `now`, in due order.
    fn each_due(
        &self,
        table: &str,
        now: i64,
        mut each: impl FnMut(Record) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut after: Option<String> = None;
        loop {
            let records = self.meta.scan(table, "", after.as_deref(), PAGE)?;
            let full = records.len() == PAGE;
            for record in records {
                if due_of(&record.key) > now {
                    return Ok(());
                }
                after = Some(record.key.clone());
                each(record)?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    fn fire(&self, tick: Record, now: i64, woke: &mut bool) -> Result<(), StoreError> {
        let drop_tick = WriteBatch::new().delete(TICKS, &tick.key, Expect::Version(tick.version));
        let schedule_key = tick.key.split_once('/').map_or("", |(_, key)| key);
        let current = self.meta.get(SCHEDULES, schedule_key)?;
        let parsed = current.as_ref().and_then(|record| {
            let schedule: ScheduleRecord = serde_json::from_slice(&record.value).ok()?;
            let tick_state: Tick = serde_json::from_slice(&tick.value).ok()?;
            (schedule.tick.as_deref() == Some(tick.key.as_str()))
                .then_some((record, schedule, tick_state))
        });
        let Some((record, mut schedule, tick_state)) = parsed else {
            // Left behind by a change to its schedule: nothing to fire.
            return raced(self.meta.commit(drop_tick)).map(|_| ());
        };
        let scheduled = tick_state.scheduled_ms;
        let one_time = schedule
            .expression()
            .is_some_and(|(expression, _)| expression.is_one_time());
        let next = if one_time {
            None
        } else {
            schedule.next(scheduled.max(now), false)
        };
        let mut batch = drop_tick;
        schedule.tick = None;
        if let Some(next) = next {
            let (key, tick) = schedule.tick_for(next);
            batch = batch.put(
                TICKS,
                &key,
                serde_json::to_vec(&tick).expect("ticks serialize"),
                Expect::Absent,
            );
            schedule.tick = Some(key);
        }
        batch = if next.is_none()
            && one_time
            && schedule.spec.action_after_completion.as_deref() == Some("DELETE")
        {
            batch.delete(SCHEDULES, &record.key, Expect::Version(record.version))
        } else {
            batch.put(
                SCHEDULES,
                &record.key,
                serde_json::to_vec(&schedule).expect("schedules serialize"),
                Expect::Version(record.version),
            )
        };
        let target = schedule.spec.target.clone();
        if now - scheduled > target.max_age_ms() {
            tracing::warn!(schedule = %schedule_key, scheduled = %rfc3339(scheduled), "skipping a firing older than the schedule's maximum event age");
        } else {
            let delivery = Delivery {
                execution_id: uuid::Uuid::new_v4().to_string(),
                schedule_arn: self.schedule_arn(&schedule.group, &schedule.name),
                group: schedule.group.clone(),
                name: schedule.name.clone(),
                target,
                scheduled_ms: scheduled,
                attempts: 0,
            };
            batch = self.attempt(batch, delivery, now);
        }
        *woke |= raced(self.meta.commit(batch))?;
        Ok(())
    }

    fn retry(&self, record: Record, now: i64, woke: &mut bool) -> Result<(), StoreError> {
        let batch =
            WriteBatch::new().delete(DELIVERIES, &record.key, Expect::Version(record.version));
        let batch = match serde_json::from_slice::<Delivery>(&record.value) {
            Ok(delivery) => self.attempt(batch, delivery, now),
            Err(err) => {
                tracing::error!(key = %record.key, error = %err, "dropping an unreadable schedule delivery");
                batch
            }
        };
        *woke |= raced(self.meta.commit(batch))?;
        Ok(())
    }

    /// Adds to `batch` the firing's way to its target: the target's own writes, or,
    /// when it refuses, a retry or a dead letter.
    fn attempt(&self, batch: WriteBatch, mut delivery: Delivery, now: i64) -> WriteBatch {
        let payload = delivery.payload();
        let role = self
            .roles
            .assume(&delivery.target.role_arn, SERVICE, &delivery.execution_id);
        let staged = match &role {
            Ok(role) => self.targets.stage(role, &delivery.target.arn, &payload),
            Err(reason) => Err(Failure {
                code: "AccessDeniedException".to_owned(),
                message: reason.clone(),
            }),
        };
        let failure = match staged {
            Ok(staged) => return batch.extend(staged),
            Err(failure) => failure,
        };
        delivery.attempts += 1;
        let backoff = (BACKOFF_BASE_MS << (delivery.attempts - 1).min(20)).min(MAX_BACKOFF_MS);
        let retry_at = now + backoff;
        if i64::from(delivery.attempts) <= delivery.target.retry_attempts()
            && retry_at - delivery.scheduled_ms <= delivery.target.max_age_ms()
        {
            tracing::info!(schedule = %delivery.schedule_arn, error = %failure.message, attempt = delivery.attempts, "the target refused a firing; retrying");
            let key = format!("{:013}/{}", retry_at, delivery.execution_id);
            return batch.put(
                DELIVERIES,
                &key,
                serde_json::to_vec(&delivery).expect("deliveries serialize"),
                Expect::Absent,
            );
        }
        let Some(dead_letter) = delivery.target.dead_letter() else {
            tracing::warn!(schedule = %delivery.schedule_arn, error = %failure.message, "dropping a firing its target refused after every retry");
            return batch;
        };
        // The dead letter too is sent as the role; a role that cannot be assumed
        // sends nothing anywhere.
        let Ok(role) = role else {
            tracing::warn!(schedule = %delivery.schedule_arn, error = %failure.message, "dropping a firing whose role cannot be assumed");
            return batch;
        };
        let message = serde_json::json!({
            "body": String::from_utf8_lossy(&payload),
            "attributes": {
                "ERROR_CODE": failure.code,
                "ERROR_MESSAGE": failure.message,
                "EXECUTION_ID": delivery.execution_id,
                "RETRY_ATTEMPTS": (delivery.attempts - 1).to_string(),
                "SCHEDULE_ARN": delivery.schedule_arn,
                "TARGET_ARN": delivery.target.arn,
                "GROUP": delivery.group,
            },
        });
        let name = format!(
            "{}/{}/{}",
            delivery.group, delivery.name, delivery.execution_id
        );
        match self.targets.dead_letter(
            &role,
            dead_letter,
            &name,
            &serde_json::to_vec(&message).expect("messages serialize"),
        ) {
            Ok(staged) => batch.extend(staged),
            Err(err) => {
                tracing::error!(schedule = %delivery.schedule_arn, %dead_letter, error = %err, "sending a firing to its dead-letter target failed");
                batch
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use nimbus_storage::{MetadataStore, SqliteStore};

    use nimbus_auth::authz::ServiceRoles;
    use nimbus_auth::{Caller, Principal, PrincipalKind};

    use super::*;
    use crate::Targets;
    use crate::model::{ArnCheck, ScheduleSpec};

    const FUNCTION: &str = "arn:aws:lambda:us-east-1:000000000000:function:f";
    const MISSING: &str = "arn:aws:lambda:us-east-1:000000000000:function:missing";
    const ROLE: &str = "arn:aws:iam::000000000000:role/r";
    const UNTRUSTING: &str = "arn:aws:iam::000000000000:role/untrusting";

    /// IAM as the scheduler sees it: every role but `UNTRUSTING` lets it assume them.
    struct Roles;

    impl ServiceRoles for Roles {
        fn assume(&self, arn: &str, service: &str, session: &str) -> Result<Caller, String> {
            if arn == UNTRUSTING || service != SERVICE {
                return Err(format!("{arn} cannot be assumed by {service}"));
            }
            Ok(Caller {
                principal: Principal {
                    account_id: "000000000000".into(),
                    kind: PrincipalKind::AssumedRole {
                        role_name: arn.rsplit('/').next().unwrap().into(),
                        role_id: "AROAEXAMPLE".into(),
                        session_name: session.into(),
                    },
                },
                access_key_id: String::new(),
                is_session: true,
            })
        }
    }

    /// Stages each payload into a table of its own, and remembers dead letters.
    #[derive(Default)]
    struct Recorder {
        dead: Mutex<Vec<serde_json::Value>>,
    }

    impl ArnCheck for Recorder {
        fn check_target(&self, _: &str) -> Result<(), String> {
            Ok(())
        }
        fn check_dead_letter(&self, _: &str) -> Result<(), String> {
            Ok(())
        }
    }

    impl Targets for Recorder {
        fn stage(&self, role: &Caller, arn: &str, payload: &[u8]) -> Result<WriteBatch, Failure> {
            assert!(
                role.principal
                    .arn()
                    .starts_with("arn:aws:sts::000000000000:assumed-role/r/"),
                "delivered as the schedule's role"
            );
            if arn == MISSING {
                return Err(Failure {
                    code: "ResourceNotFoundException".into(),
                    message: "no such function".into(),
                });
            }
            let key = uuid::Uuid::new_v4().to_string();
            Ok(WriteBatch::new().put("test.fired", &key, payload.to_vec(), Expect::Absent))
        }
        fn dead_letter(
            &self,
            _: &Caller,
            _: &str,
            _: &str,
            message: &[u8],
        ) -> Result<WriteBatch, String> {
            self.dead
                .lock()
                .unwrap()
                .push(serde_json::from_slice(message).unwrap());
            Ok(WriteBatch::new())
        }
        fn wake(&self) {}
    }

    fn spec(expression: &str, target: &str, input: &str) -> ScheduleSpec {
        spec_as(ROLE, expression, target, input)
    }

    fn spec_as(role: &str, expression: &str, target: &str, input: &str) -> ScheduleSpec {
        serde_json::from_value(serde_json::json!({
            "ScheduleExpression": expression,
            "FlexibleTimeWindow": { "Mode": "OFF" },
            "Target": {
                "Arn": target,
                "RoleArn": role,
                "Input": input,
                "RetryPolicy": { "MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 600 },
                "DeadLetterConfig": { "Arn": "arn:aws:s3:::dead" },
            },
        }))
        .unwrap()
    }

    struct Harness {
        _dir: tempfile::TempDir,
        meta: Arc<SqliteStore>,
        targets: Arc<Recorder>,
    }

    impl Harness {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let meta = Arc::new(SqliteStore::open(&dir.path().join("meta.db")).unwrap());
            Self {
                _dir: dir,
                meta,
                targets: Arc::default(),
            }
        }

        /// A scheduler over the same store, as after a restart.
        fn scheduler(&self) -> Arc<Scheduler> {
            let scheduler = Scheduler::new(
                self.meta.clone(),
                self.targets.clone(),
                Arc::new(Roles),
                "us-east-1",
                "000000000000",
            );
            scheduler.ensure_default_group().unwrap();
            scheduler
        }

        fn fired(&self) -> Vec<String> {
            let mut fired: Vec<String> = self
                .meta
                .scan_all("test.fired", "")
                .unwrap()
                .into_iter()
                .map(|r| String::from_utf8(r.value).unwrap())
                .collect();
            fired.sort();
            fired
        }
    }

    #[test]
    fn a_rate_fires_once_per_due_time_and_coalesces_what_a_stop_missed() {
        let harness = Harness::new();
        let scheduler = harness.scheduler();
        scheduler
            .create_schedule(
                "tick",
                spec("rate(1 minute)", FUNCTION, "<aws.scheduler.scheduled-time>"),
            )
            .unwrap();
        let created = crate::now_ms();
        let next = scheduler.fire_due(created + 1).unwrap();
        assert_eq!(harness.fired().len(), 1, "a rate fires when created");
        let next = next.expect("a next tick");
        assert!(
            (next - created - 60_000).abs() < 1000,
            "the next falls a minute on"
        );
        // Looking again before it is due, or twice at the same time, fires nothing more.
        scheduler.fire_due(next - 1).unwrap();
        scheduler.fire_due(created + 1).unwrap();
        assert_eq!(harness.fired().len(), 1);
        scheduler.fire_due(next).unwrap();
        scheduler.fire_due(next).unwrap();
        assert_eq!(harness.fired().len(), 2);

        // Stopped for five minutes: the restart fires once, for the first time missed,
        // and the schedule resumes at its first time after now.
        let restarted = harness.scheduler();
        let later = next + 5 * 60_000 + 30_000;
        let resumed = restarted.fire_due(later).unwrap().unwrap();
        let fired = harness.fired();
        assert_eq!(fired.len(), 3);
        assert!(fired.contains(&rfc3339(next + 60_000)), "{fired:?}");
        assert_eq!(resumed, next + 6 * 60_000);
    }

    #[test]
    fn a_firing_older_than_the_maximum_event_age_is_skipped() {
        let harness = Harness::new();
        let scheduler = harness.scheduler();
        scheduler
            .create_schedule("old", spec("rate(1 hour)", FUNCTION, "{}"))
            .unwrap();
        // Ten minutes is the policy's maximum age.
        scheduler.fire_due(crate::now_ms() + 11 * 60_000).unwrap();
        assert!(harness.fired().is_empty());
    }

    #[test]
    fn a_refused_firing_is_retried_then_dead_lettered() {
        let harness = Harness::new();
        let scheduler = harness.scheduler();
        scheduler
            .create_schedule(
                "lost",
                spec(
                    "rate(1 hour)",
                    MISSING,
                    r#"{"n":"<aws.scheduler.attempt-number>"}"#,
                ),
            )
            .unwrap();
        let now = crate::now_ms();
        let retry = scheduler.fire_due(now).unwrap().unwrap();
        assert!(retry <= now + BACKOFF_BASE_MS);
        let retry = scheduler.fire_due(retry).unwrap().unwrap();
        assert!(harness.targets.dead.lock().unwrap().is_empty());
        scheduler.fire_due(retry).unwrap();
        let dead = harness.targets.dead.lock().unwrap().clone();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0]["body"], r#"{"n":"3"}"#);
        assert_eq!(
            dead[0]["attributes"]["ERROR_CODE"],
            "ResourceNotFoundException"
        );
        assert_eq!(dead[0]["attributes"]["RETRY_ATTEMPTS"], "2");
    }

    #[test]
    fn a_role_the_scheduler_cannot_assume_delivers_nothing() {
        let harness = Harness::new();
        let scheduler = harness.scheduler();
        scheduler
            .create_schedule(
                "untrusted",
                spec_as(UNTRUSTING, "rate(1 hour)", FUNCTION, "{}"),
            )
            .unwrap();
        let mut due = crate::now_ms();
        for _ in 0..3 {
            due = scheduler.fire_due(due).unwrap().unwrap();
        }
        assert!(harness.fired().is_empty(), "the target was never reached");
        assert!(
            harness.targets.dead.lock().unwrap().is_empty(),
            "nor its dead-letter target, which is sent to as the role too"
        );
    }

    #[test]
    fn a_one_time_schedule_fires_once_and_can_delete_itself() {
        let harness = Harness::new();
        let scheduler = harness.scheduler();
        let at = jiff::Timestamp::from_millisecond(crate::now_ms() + 60_000)
            .unwrap()
            .strftime("%Y-%m-%dT%H:%M:%S")
            .to_string();
        let mut once = spec(&format!("at({at})"), FUNCTION, "{}");
        once.action_after_completion = Some("DELETE".into());
        scheduler.create_schedule("once", once).unwrap();
        let kept = spec(&format!("at({at})"), FUNCTION, "{}");
        scheduler.create_schedule("kept", kept).unwrap();
        let due = scheduler.fire_due(crate::now_ms()).unwrap().unwrap();
        assert_eq!(scheduler.fire_due(due).unwrap(), None);
        assert_eq!(harness.fired().len(), 2);
        assert!(scheduler.get_schedule("once", None).is_err());
        assert!(scheduler.get_schedule("kept", None).is_ok());
    }
}
