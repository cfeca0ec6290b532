//! EventBridge Scheduler: schedule groups and schedules (rate, cron and at
//! expressions in any time zone), fired once per due time into a target — Lambda's
//! asynchronous queue — with the schedule's retry policy and dead-letter target.
//!
//! Tables: `scheduler.groups` (`<group>`), `scheduler.schedules` (`<group>/<name>`),
//! `scheduler.ticks` (`<due ms, 13 digits>/<group>/<name>`: each enabled schedule's
//! next firing) and `scheduler.deliveries` (`<due ms>/<execution id>`: firings whose
//! target refused them, waiting for a retry). A firing commits in one batch: its tick
//! gone, the next tick written, and the target's queue entry (or a retry) staged — so
//! a crash at any point leaves the firing either wholly done or wholly to do.
//!
//! A firing is delivered as the schedule's role (`Target.RoleArn`), assumed by
//! `scheduler.amazonaws.com`, as on AWS: the target is reached only if the role's
//! policies allow it, else the delivery fails, is retried and dead-lettered.

pub mod api;
mod error;
pub mod expression;
pub mod model;
mod schedules;
mod worker;

use std::sync::Arc;

use nimbus_auth::Caller;
use nimbus_auth::authz::ServiceRoles;
use nimbus_storage::{MetadataStore, WriteBatch};
use tokio::sync::Notify;

pub use model::ArnCheck;
pub use worker::Failure;

const GROUPS: &str = "scheduler.groups";
const SCHEDULES: &str = "scheduler.schedules";
const TICKS: &str = "scheduler.ticks";
const DELIVERIES: &str = "scheduler.deliveries";

/// Where schedules deliver: the deployment's Lambda functions (and, for dead letters,
/// buckets), as the service that owns them stages writes for them, each write
/// authorized for `role`, the session of the schedule's role.
pub trait Targets: ArnCheck + Send + Sync {
    /// The writes that hand `payload` to the target, to commit with the firing.
    fn stage(&self, role: &Caller, arn: &str, payload: &[u8]) -> Result<WriteBatch, Failure>;
    /// Sends a firing that could not be delivered to the dead-letter target `arn`;
    /// any writes returned are committed with the firing's removal.
    fn dead_letter(
        &self,
        role: &Caller,
        arn: &str,
        name: &str,
        message: &[u8],
    ) -> Result<WriteBatch, String>;
    /// Tells the target's queue that staged entries were committed.
    fn wake(&self);
}

pub struct Scheduler {
    meta: Arc<dyn MetadataStore>,
    targets: Arc<dyn Targets>,
    roles: Arc<dyn ServiceRoles>,
    region: String,
    account: String,
    wake: Notify,
}

impl Scheduler {
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        targets: Arc<dyn Targets>,
        roles: Arc<dyn ServiceRoles>,
        region: &str,
        account: &str,
    ) -> Arc<Self> {
        Arc::new(Self {
            meta,
            targets,
            roles,
            region: region.to_owned(),
            account: account.to_owned(),
            wake: Notify::new(),
        })
    }

    fn group_arn(&self, group: &str) -> String {
        format!(
            "arn:aws:scheduler:{}:{}:schedule-group/{group}",
            self.region, self.account
        )
    }

    fn schedule_arn(&self, group: &str, name: &str) -> String {
        format!(
            "arn:aws:scheduler:{}:{}:schedule/{group}/{name}",
            self.region, self.account
        )
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
