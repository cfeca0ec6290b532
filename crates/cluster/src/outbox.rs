//! Work that must happen after a commit, at least once, on one node: records of a
//! table keyed `<due, unix ms, 13 digits>-<id>`, staged in the same batch as the
//! change that calls for them, taken up when due by the node holding a lease and
//! removed once handled. Whatever crashes in between, the work is done at least once
//! if and only if its change happened. SNS publishes bucket events and retries
//! deliveries this way; EventBridge delivers events to targets.

use std::sync::Arc;
use std::time::Duration;

use nimbus_storage::{Expect, MetadataStore, StoreError, WriteBatch};

use crate::Lease;

/// How often the lease holder looks when nothing on its own node woke it: work
/// staged through other nodes, and work coming due.
const POLL: Duration = Duration::from_millis(500);
const PAGE: usize = 100;

/// What became of one record.
pub enum Handled {
    /// Done (or given up on): the record goes.
    Done,
    /// Not done, and worth trying again next round: the record stays and the round
    /// ends, since what failed (the store, say) likely fails for the rest too.
    Again(String),
}

pub struct Outbox {
    meta: Arc<dyn MetadataStore>,
    table: &'static str,
    wake: tokio::sync::Notify,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Outbox {
    pub fn new(meta: Arc<dyn MetadataStore>, table: &'static str) -> Arc<Self> {
        Arc::new(Self {
            meta,
            table,
            wake: tokio::sync::Notify::new(),
        })
    }

    /// The write (table, key, value) of `value` due at `due_ms`, for the caller to
    /// commit with its own change.
    pub fn record(&self, due_ms: i64, value: Vec<u8>) -> (String, String, Vec<u8>) {
        let key = format!("{due_ms:013}-{}", random_id());
        (self.table.to_owned(), key, value)
    }

    /// Commits `value` due at `due_ms` on its own.
    pub fn put(&self, due_ms: i64, value: Vec<u8>) -> Result<(), StoreError> {
        let (table, key, value) = self.record(due_ms, value);
        self.meta
            .commit(WriteBatch::new().put(&table, &key, value, Expect::Absent))
    }

    /// Looks now: staged work was committed.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Hands each due record to `handle` on the one node that holds `lease`.
    pub fn start(
        self: &Arc<Self>,
        lease: Lease,
        handle: impl Fn(&[u8]) -> Handled + Send + Sync + 'static,
    ) {
        let (outbox, handle) = (self.clone(), Arc::new(handle));
        tokio::spawn(async move {
            loop {
                let _ = tokio::time::timeout(POLL, outbox.wake.notified()).await;
                if !lease.held() {
                    continue;
                }
                let (drained, handle, lease) = (outbox.clone(), handle.clone(), lease.clone());
                let held = move || lease.held();
                match tokio::task::spawn_blocking(move || drained.drain(handle.as_ref(), &held))
                    .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(reason)) => {
                        tracing::warn!(table = outbox.table, %reason, "work left for the next round")
                    }
                    Err(err) => {
                        tracing::error!(table = outbox.table, error = %err, "an outbox round failed")
                    }
                }
            }
        });
    }

    /// Handles every due record, oldest first, removing each one handled, while
    /// `held` (the lease) says this node may.
    pub fn drain(
        &self,
        handle: &dyn Fn(&[u8]) -> Handled,
        held: &dyn Fn() -> bool,
    ) -> Result<(), String> {
        let due = format!("{:013}~", now_ms());
        loop {
            let page = self
                .meta
                .scan(self.table, "", None, PAGE)
                .map_err(|err| err.to_string())?;
            let ready: Vec<_> = page.iter().take_while(|r| r.key < due).collect();
            for record in &ready {
                if !held() {
                    return Ok(());
                }
                if let Handled::Again(reason) = handle(&record.value) {
                    return Err(reason);
                }
                self.meta
                    .commit(WriteBatch::new().delete(
                        self.table,
                        &record.key,
                        Expect::Version(record.version),
                    ))
                    .map_err(|err| err.to_string())?;
            }
            if ready.len() < PAGE {
                return Ok(());
            }
        }
    }
}

fn random_id() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the system's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
