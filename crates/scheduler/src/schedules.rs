//! The control plane: schedule groups and schedules, stored with their next tick.

use nimbus_edge::AwsError;
use nimbus_storage::{Expect, Record, StoreError, WriteBatch};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{conflict, internal, not_found, validation};
use crate::expression::{Expression, time_zone};
use crate::model::{DEFAULT_GROUP, ScheduleSpec, Tag, check_name, check_tags};
use crate::{GROUPS, SCHEDULES, Scheduler, TICKS};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ScheduleRecord {
    pub name: String,
    pub group: String,
    pub spec: ScheduleSpec,
    pub created_ms: i64,
    pub modified_ms: i64,
    /// Where a rate counts from: the start date, else the last create or update.
    pub anchor_ms: i64,
    /// The key of the schedule's pending tick in `scheduler.ticks`, if it has one.
    pub tick: Option<String>,
}

/// A pending firing of a schedule.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Tick {
    /// The time the expression named; the tick is due later within a flexible window.
    pub scheduled_ms: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct GroupRecord {
    name: String,
    created_ms: i64,
    modified_ms: i64,
    tags: Vec<Tag>,
}

pub(crate) fn schedule_key(group: &str, name: &str) -> String {
    format!("{group}/{name}")
}

/// The due time a tick or delivery key starts with.
pub(crate) fn due_of(key: &str) -> i64 {
    key.split('/')
        .next()
        .and_then(|due| due.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn to_ms(seconds: f64) -> i64 {
    (seconds * 1000.0).round() as i64
}

fn encode(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

fn decode<T: for<'de> Deserialize<'de>>(record: &Record) -> Result<T, AwsError> {
    serde_json::from_slice(&record.value).map_err(internal)
}

/// Pages through a sorted listing: items after `next_token`, at most `max`, and the
/// token for the rest.
fn page<T>(
    items: Vec<(String, T)>,
    next_token: Option<&str>,
    max: usize,
) -> (Vec<T>, Option<String>) {
    let mut rest: Vec<(String, T)> = items
        .into_iter()
        .filter(|(key, _)| next_token.is_none_or(|token| key.as_str() > token))
        .collect();
    let more = rest.len() > max;
    rest.truncate(max);
    let token = more.then(|| rest.last().map(|(key, _)| key.clone()).unwrap_or_default());
    (rest.into_iter().map(|(_, item)| item).collect(), token)
}

impl ScheduleRecord {
    pub fn expression(&self) -> Option<(Expression, jiff::tz::TimeZone)> {
        let expression = Expression::parse(&self.spec.schedule_expression).ok()?;
        let zone = time_zone(self.spec.schedule_expression_timezone.as_deref()).ok()?;
        Some((expression, zone))
    }

    /// The first time the schedule names at or after `from` (strictly after when not
    /// `inclusive`), within its start and end dates.
    pub fn next(&self, from: i64, inclusive: bool) -> Option<i64> {
        if self.spec.state.as_deref() == Some("DISABLED") {
            return None;
        }
        let (expression, zone) = self.expression()?;
        let (from, inclusive) = match self.spec.start_date.map(to_ms) {
            Some(start) if start > from => (start, true),
            _ => (from, inclusive),
        };
        let next = expression.next(from, inclusive, self.anchor_ms, &zone)?;
        match self.spec.end_date.map(to_ms) {
            Some(end) if next > end => None,
            _ => Some(next),
        }
    }

    /// A tick for the firing scheduled at `scheduled`: due then, or at a random
    /// moment of the flexible time window that follows.
    pub fn tick_for(&self, scheduled: i64) -> (String, Tick) {
        let window_ms = self
            .spec
            .flexible_time_window
            .maximum_window_in_minutes
            .unwrap_or(0)
            * 60_000;
        let jitter = if window_ms > 0 {
            (uuid::Uuid::new_v4().as_u128() % window_ms as u128) as i64
        } else {
            0
        };
        let key = format!(
            "{:013}/{}",
            (scheduled + jitter).max(0),
            schedule_key(&self.group, &self.name)
        );
        (
            key,
            Tick {
                scheduled_ms: scheduled,
            },
        )
    }

    /// Gives the record its first tick from `now`, adding it to `batch`.
    fn schedule_from(&mut self, now: i64, batch: WriteBatch) -> WriteBatch {
        match self.next(now, true) {
            Some(scheduled) => {
                let (key, tick) = self.tick_for(scheduled);
                self.tick = Some(key.clone());
                batch.put(TICKS, &key, encode(&tick), Expect::Anything)
            }
            None => {
                self.tick = None;
                batch
            }
        }
    }
}

/// Edits read a record and write it back conditionally; the firing worker also
/// rewrites schedules, so an edit that loses that race is tried again.
fn retry_races<T>(edit: impl Fn() -> Result<T, AwsError>) -> Result<T, AwsError> {
    let mut tries = 0;
    loop {
        match edit() {
            Err(err) if err.code == "ConflictException" && tries < 10 => tries += 1,
            other => return other,
        }
    }
}

impl Scheduler {
    pub fn update_schedule(&self, name: &str, spec: ScheduleSpec) -> Result<Value, AwsError> {
        retry_races(|| self.update_schedule_once(name, spec.clone()))
    }

    pub fn delete_schedule(&self, name: &str, group: Option<&str>) -> Result<(), AwsError> {
        retry_races(|| self.delete_schedule_once(name, group))
    }

    /// Deletes a group with every schedule in it, at once.
    pub fn delete_group(&self, name: &str) -> Result<(), AwsError> {
        retry_races(|| self.delete_group_once(name))
    }

    /// Makes sure the `default` group exists, as it always does on AWS.
    pub fn ensure_default_group(&self) -> Result<(), StoreError> {
        if self.meta.get(GROUPS, DEFAULT_GROUP)?.is_some() {
            return Ok(());
        }
        let now = crate::now_ms();
        let group = GroupRecord {
            name: DEFAULT_GROUP.to_owned(),
            created_ms: now,
            modified_ms: now,
            tags: Vec::new(),
        };
        let batch = WriteBatch::new().put(GROUPS, DEFAULT_GROUP, encode(&group), Expect::Absent);
        match self.meta.commit(batch) {
            Ok(()) | Err(StoreError::Conflict { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    fn commit(&self, batch: WriteBatch, what: &str) -> Result<(), AwsError> {
        self.meta.commit(batch).map_err(|err| match err {
            StoreError::Conflict { .. } => {
                conflict(format!("{what} was changed at the same time; try again."))
            }
            err => internal(err),
        })
    }

    fn load_group(&self, name: &str) -> Result<(Record, GroupRecord), AwsError> {
        check_name("Name", name)?;
        let record = self
            .meta
            .get(GROUPS, name)
            .map_err(internal)?
            .ok_or_else(|| not_found(format!("Schedule group {name} does not exist.")))?;
        let group = decode(&record)?;
        Ok((record, group))
    }

    fn load_schedule(&self, group: &str, name: &str) -> Result<(Record, ScheduleRecord), AwsError> {
        check_name("Name", name)?;
        check_name("GroupName", group)?;
        let record = self
            .meta
            .get(SCHEDULES, &schedule_key(group, name))
            .map_err(internal)?
            .ok_or_else(|| not_found(format!("Schedule {name} does not exist.")))?;
        let schedule = decode(&record)?;
        Ok((record, schedule))
    }

    pub fn create_schedule(&self, name: &str, spec: ScheduleSpec) -> Result<Value, AwsError> {
        check_name("Name", name)?;
        let now = crate::now_ms();
        let spec = spec.validate(self.targets.as_ref(), now)?;
        let group = spec.group_name.clone().unwrap_or(DEFAULT_GROUP.to_owned());
        self.load_group(&group)?;
        let key = schedule_key(&group, name);
        if self.meta.get(SCHEDULES, &key).map_err(internal)?.is_some() {
            return Err(conflict(format!("Schedule {name} already exists.")));
        }
        let mut schedule = ScheduleRecord {
            name: name.to_owned(),
            group: group.clone(),
            anchor_ms: spec.start_date.map(to_ms).unwrap_or(now),
            spec,
            created_ms: now,
            modified_ms: now,
            tick: None,
        };
        let batch = schedule.schedule_from(now, WriteBatch::new());
        let batch = batch.put(SCHEDULES, &key, encode(&schedule), Expect::Absent);
        self.meta.commit(batch).map_err(|err| match err {
            StoreError::Conflict { .. } => conflict(format!("Schedule {name} already exists.")),
            err => internal(err),
        })?;
        self.wake.notify_one();
        Ok(json!({ "ScheduleArn": self.schedule_arn(&group, name) }))
    }

    fn update_schedule_once(&self, name: &str, spec: ScheduleSpec) -> Result<Value, AwsError> {
        check_name("Name", name)?;
        let now = crate::now_ms();
        let spec = spec.validate(self.targets.as_ref(), now)?;
        let group = spec.group_name.clone().unwrap_or(DEFAULT_GROUP.to_owned());
        let (record, mut schedule) = self.load_schedule(&group, name)?;
        let mut batch = WriteBatch::new();
        if let Some(tick) = &schedule.tick {
            batch = batch.delete(TICKS, tick, Expect::Anything);
        }
        schedule.anchor_ms = spec.start_date.map(to_ms).unwrap_or(now);
        schedule.spec = spec;
        schedule.modified_ms = now;
        let batch = schedule.schedule_from(now, batch).put(
            SCHEDULES,
            &record.key,
            encode(&schedule),
            Expect::Version(record.version),
        );
        self.commit(batch, &format!("Schedule {name}"))?;
        self.wake.notify_one();
        Ok(json!({ "ScheduleArn": self.schedule_arn(&group, name) }))
    }

    pub fn get_schedule(&self, name: &str, group: Option<&str>) -> Result<Value, AwsError> {
        let group = group.unwrap_or(DEFAULT_GROUP);
        let (_, schedule) = self.load_schedule(group, name)?;
        let mut out = serde_json::to_value(&schedule.spec).map_err(internal)?;
        out["Arn"] = self.schedule_arn(group, name).into();
        out["Name"] = name.into();
        out["GroupName"] = group.into();
        out["CreationDate"] = seconds(schedule.created_ms).into();
        out["LastModificationDate"] = seconds(schedule.modified_ms).into();
        Ok(out)
    }

    fn delete_schedule_once(&self, name: &str, group: Option<&str>) -> Result<(), AwsError> {
        let group = group.unwrap_or(DEFAULT_GROUP);
        let (record, schedule) = self.load_schedule(group, name)?;
        let mut batch =
            WriteBatch::new().delete(SCHEDULES, &record.key, Expect::Version(record.version));
        if let Some(tick) = &schedule.tick {
            batch = batch.delete(TICKS, tick, Expect::Anything);
        }
        self.commit(batch, &format!("Schedule {name}"))
    }

    pub fn list_schedules(
        &self,
        group: Option<&str>,
        prefix: Option<&str>,
        state: Option<&str>,
        max: usize,
        next_token: Option<&str>,
    ) -> Result<Value, AwsError> {
        let scan_prefix = match group {
            Some(group) => {
                self.load_group(group)?;
                format!("{group}/")
            }
            None => String::new(),
        };
        let mut items = Vec::new();
        for record in self
            .meta
            .scan_all(SCHEDULES, &scan_prefix)
            .map_err(internal)?
        {
            let schedule: ScheduleRecord = decode(&record)?;
            if prefix.is_some_and(|p| !schedule.name.starts_with(p))
                || state.is_some_and(|s| schedule.spec.state.as_deref() != Some(s))
            {
                continue;
            }
            items.push((
                record.key,
                json!({
                    "Arn": self.schedule_arn(&schedule.group, &schedule.name),
                    "Name": schedule.name,
                    "GroupName": schedule.group,
                    "State": schedule.spec.state,
                    "CreationDate": seconds(schedule.created_ms),
                    "LastModificationDate": seconds(schedule.modified_ms),
                    "Target": { "Arn": schedule.spec.target.arn },
                }),
            ));
        }
        let (schedules, token) = page(items, next_token, max);
        let mut out = json!({ "Schedules": schedules });
        if let Some(token) = token {
            out["NextToken"] = token.into();
        }
        Ok(out)
    }

    pub fn create_group(&self, name: &str, tags: Vec<Tag>) -> Result<Value, AwsError> {
        check_name("Name", name)?;
        check_tags(&tags)?;
        let now = crate::now_ms();
        let group = GroupRecord {
            name: name.to_owned(),
            created_ms: now,
            modified_ms: now,
            tags,
        };
        let batch = WriteBatch::new().put(GROUPS, name, encode(&group), Expect::Absent);
        self.meta.commit(batch).map_err(|err| match err {
            StoreError::Conflict { .. } => {
                conflict(format!("Schedule group {name} already exists."))
            }
            err => internal(err),
        })?;
        Ok(json!({ "ScheduleGroupArn": self.group_arn(name) }))
    }

    fn group_json(&self, group: &GroupRecord) -> Value {
        json!({
            "Arn": self.group_arn(&group.name),
            "Name": group.name,
            "State": "ACTIVE",
            "CreationDate": seconds(group.created_ms),
            "LastModificationDate": seconds(group.modified_ms),
        })
    }

    pub fn get_group(&self, name: &str) -> Result<Value, AwsError> {
        let (_, group) = self.load_group(name)?;
        Ok(self.group_json(&group))
    }

    fn delete_group_once(&self, name: &str) -> Result<(), AwsError> {
        if name == DEFAULT_GROUP {
            return Err(validation("You cannot delete the default group."));
        }
        let (record, _) = self.load_group(name)?;
        let mut batch = WriteBatch::new().delete(GROUPS, name, Expect::Version(record.version));
        for record in self
            .meta
            .scan_all(SCHEDULES, &format!("{name}/"))
            .map_err(internal)?
        {
            let schedule: ScheduleRecord = decode(&record)?;
            batch = batch.delete(SCHEDULES, &record.key, Expect::Version(record.version));
            if let Some(tick) = &schedule.tick {
                batch = batch.delete(TICKS, tick, Expect::Anything);
            }
        }
        self.commit(batch, &format!("Schedule group {name}"))
    }

    pub fn list_groups(
        &self,
        prefix: Option<&str>,
        max: usize,
        next_token: Option<&str>,
    ) -> Result<Value, AwsError> {
        let mut items = Vec::new();
        for record in self
            .meta
            .scan_all(GROUPS, prefix.unwrap_or(""))
            .map_err(internal)?
        {
            let group: GroupRecord = decode(&record)?;
            items.push((record.key, self.group_json(&group)));
        }
        let (groups, token) = page(items, next_token, max);
        let mut out = json!({ "ScheduleGroups": groups });
        if let Some(token) = token {
            out["NextToken"] = token.into();
        }
        Ok(out)
    }

    /// The group a tagging ARN names (only schedule groups carry tags).
    fn tagged_group(&self, arn: &str) -> Result<(Record, GroupRecord), AwsError> {
        let name = arn.strip_prefix(&self.group_arn("")).ok_or_else(|| {
            validation(format!(
                "ResourceArn {arn} is not a schedule group of this account and region"
            ))
        })?;
        self.load_group(name)
    }

    pub fn list_tags(&self, arn: &str) -> Result<Value, AwsError> {
        let (_, group) = self.tagged_group(arn)?;
        Ok(json!({ "Tags": group.tags }))
    }

    /// Adds `add` (replacing tags of the same keys) and removes the keys in `remove`.
    pub fn retag(&self, arn: &str, add: Vec<Tag>, remove: &[String]) -> Result<(), AwsError> {
        let (record, mut group) = self.tagged_group(arn)?;
        group
            .tags
            .retain(|tag| !remove.contains(&tag.key) && !add.iter().any(|a| a.key == tag.key));
        group.tags.extend(add);
        check_tags(&group.tags)?;
        group.modified_ms = crate::now_ms();
        let batch = WriteBatch::new().put(
            GROUPS,
            &record.key,
            encode(&group),
            Expect::Version(record.version),
        );
        self.commit(batch, &format!("Schedule group {}", group.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_their_token() {
        let items: Vec<(String, u32)> = (0..5).map(|i| (format!("k{i}"), i)).collect();
        let (first, token) = page(items.clone(), None, 2);
        assert_eq!(first, vec![0, 1]);
        let (second, token) = page(items.clone(), token.as_deref(), 2);
        assert_eq!(second, vec![2, 3]);
        let (last, token) = page(items, token.as_deref(), 2);
        assert_eq!((last, token), (vec![4], None));
    }
}
