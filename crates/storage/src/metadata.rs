//! The metadata store: ordered key/value tables with atomic, conditional batches.
//!
//! Services keep their records as values under string keys in named tables, and keep
//! any secondary index as more keys written in the same batch. That narrow contract
//! (get, ordered prefix scan, all-or-nothing conditional commit) is what lets the
//! embedded SQLite backend be replaced by PostgreSQL without touching a service.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

/// A metadata store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A batch's precondition did not hold; nothing in the batch was written.
    #[error("conflicting write to {table}/{key}")]
    Conflict { table: String, key: String },
    /// The store on disk was written by a newer nimbus.
    #[error("metadata schema version {found} is newer than this nimbus supports ({supported})")]
    SchemaTooNew { found: u32, supported: u32 },
    /// The backend could not be reached; the call may succeed when tried again.
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    /// The store's location or settings are unusable.
    #[error("{0}")]
    Config(String),
    #[error("metadata store: {0}")]
    Backend(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        StoreError::Backend(err.to_string())
    }
}

/// One stored value with the version a conditional write can expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub value: Vec<u8>,
    /// Changes on every write and is never reused, even for a key deleted and written
    /// again, so a conditional write cannot mistake a new record for the one it read.
    pub version: u64,
}

/// What a write expects to find, checked atomically with the whole batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Anything,
    Absent,
    Version(u64),
}

#[derive(Debug, Clone)]
pub(crate) enum Op {
    Put { value: Vec<u8> },
    Delete,
}

#[derive(Debug, Clone)]
pub(crate) struct Write {
    pub(crate) table: String,
    pub(crate) key: String,
    pub(crate) expect: Expect,
    pub(crate) op: Op,
}

/// Writes that land together or not at all.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    pub(crate) writes: Vec<Write>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(mut self, table: &str, key: &str, value: Vec<u8>, expect: Expect) -> Self {
        self.writes.push(Write {
            table: table.to_owned(),
            key: key.to_owned(),
            expect,
            op: Op::Put { value },
        });
        self
    }

    pub fn delete(mut self, table: &str, key: &str, expect: Expect) -> Self {
        self.writes.push(Write {
            table: table.to_owned(),
            key: key.to_owned(),
            expect,
            op: Op::Delete,
        });
        self
    }

    /// This batch followed by `other`'s writes, committed as one.
    pub fn extend(mut self, other: WriteBatch) -> Self {
        self.writes.extend(other.writes);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

/// Durable, ordered key/value tables. Calls block: async callers run writes on a
/// blocking thread, since a commit waits for the disk.
pub trait MetadataStore: Send + Sync {
    fn get(&self, table: &str, key: &str) -> Result<Option<Record>, StoreError>;

    /// Records whose key starts with `prefix`, in key order, strictly after `after`
    /// when given, at most `limit` of them.
    fn scan(
        &self,
        table: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError>;

    /// Records whose key starts with `prefix`, in reverse key order, strictly before
    /// `before` when given, at most `limit` of them.
    fn scan_back(
        &self,
        table: &str,
        prefix: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError>;

    /// Applies every write of the batch atomically and durably, or none of them when a
    /// precondition fails.
    fn commit(&self, batch: WriteBatch) -> Result<(), StoreError>;

    /// Whether several servers may share this store (a database server), rather than
    /// one server owning it (an embedded file, locked with its data dir).
    fn shared(&self) -> bool {
        false
    }

    /// Asks the store to count changes to `tables` from now on, for every server
    /// sharing it ([`MetadataStore::change_counters`]).
    fn watch_tables(&self, _tables: &[&str]) -> Result<(), StoreError> {
        Ok(())
    }

    /// Returns once another server may have written to a watched table, or after
    /// `timeout`: a wake-up only, [`MetadataStore::change_counters`] says what moved.
    fn wait_for_changes(&self, timeout: std::time::Duration) {
        std::thread::sleep(timeout);
    }

    /// How many rows have been written to each watched table, by any server: a count
    /// that moved means a cache of that table may be stale. An embedded store serves
    /// one server, whose caches see its own writes, so it counts nothing.
    fn change_counters(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(Vec::new())
    }

    /// The names of the tables that hold records, in order; for copying a store.
    fn tables(&self) -> Result<Vec<String>, StoreError>;

    /// Every record whose key starts with `prefix`, in key order, read page by page.
    fn scan_all(&self, table: &str, prefix: &str) -> Result<Vec<Record>, StoreError> {
        const PAGE: usize = 1000;
        let mut records = Vec::new();
        loop {
            let after = records.last().map(|r: &Record| r.key.clone());
            let page = self.scan(table, prefix, after.as_deref(), PAGE)?;
            let full = page.len() == PAGE;
            records.extend(page);
            if !full {
                return Ok(records);
            }
        }
    }
}

/// Ordered schema migrations; the store's `user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE records (
        tbl     TEXT    NOT NULL,
        key     TEXT    NOT NULL,
        value   BLOB    NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (tbl, key)
    ) WITHOUT ROWID;",
    // Versions come from one store-wide sequence, so a deleted and recreated record
    // never gets a version an older reader may still expect.
    "CREATE TABLE write_sequence (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
     INSERT INTO write_sequence (id, value) SELECT 1, COALESCE(MAX(version), 0) FROM records;",
];

/// The embedded backend: one SQLite file in WAL mode with full fsync on commit, a
/// single writer connection and a small pool of readers.
pub struct SqliteStore {
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    path: std::path::PathBuf,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut writer = Connection::open(path)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        writer.pragma_update(None, "synchronous", "FULL")?;
        writer.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut writer)?;
        Ok(Self {
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            path: path.to_owned(),
        })
    }

    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.readers.lock().expect("reader pool poisoned").pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                conn.busy_timeout(std::time::Duration::from_secs(5))?;
                conn
            }
        };
        let result = f(&conn);
        self.readers
            .lock()
            .expect("reader pool poisoned")
            .push(conn);
        result
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let applied: u32 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let supported = MIGRATIONS.len() as u32;
    if applied > supported {
        return Err(StoreError::SchemaTooNew {
            found: applied,
            supported,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as u32 + 1)?;
        tx.commit()?;
        tracing::info!(version = index + 1, "applied metadata migration");
    }
    Ok(())
}

/// The smallest string greater than every string starting with `prefix`, if any.
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        // The code points past U+D7FF are surrogates; the next character is U+E000.
        let next = match last {
            '\u{d7ff}' => Some('\u{e000}'),
            last => char::from_u32(last as u32 + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

impl MetadataStore for SqliteStore {
    fn get(&self, table: &str, key: &str) -> Result<Option<Record>, StoreError> {
        self.with_reader(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT value, version FROM records WHERE tbl = ?1 AND key = ?2")?;
            let record = stmt
                .query_row(params![table, key], |row| {
                    Ok(Record {
                        key: key.to_owned(),
                        value: row.get(0)?,
                        version: row.get::<_, i64>(1)? as u64,
                    })
                })
                .optional()?;
            Ok(record)
        })
    }

    fn scan(
        &self,
        table: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let lower = match after {
            Some(after) if after >= prefix => after,
            _ => prefix,
        };
        let inclusive = after.is_none_or(|after| after < prefix);
        let upper = prefix_end(prefix);
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT key, value, version FROM records
                 WHERE tbl = ?1
                   AND (key > ?2 OR (?3 AND key = ?2))
                   AND (?4 IS NULL OR key < ?4)
                 ORDER BY key LIMIT ?5",
            )?;
            let rows = stmt.query_map(
                params![table, lower, inclusive, upper, limit as i64],
                |row| {
                    Ok(Record {
                        key: row.get(0)?,
                        value: row.get(1)?,
                        version: row.get::<_, i64>(2)? as u64,
                    })
                },
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn scan_back(
        &self,
        table: &str,
        prefix: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let end = prefix_end(prefix);
        let upper = match (before, end.as_deref()) {
            (Some(before), Some(end)) if before > end => Some(end.to_owned()),
            (Some(before), _) => Some(before.to_owned()),
            (None, end) => end.map(str::to_owned),
        };
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT key, value, version FROM records
                 WHERE tbl = ?1 AND key >= ?2 AND (?3 IS NULL OR key < ?3)
                 ORDER BY key DESC LIMIT ?4",
            )?;
            let rows = stmt.query_map(params![table, prefix, upper, limit as i64], |row| {
                Ok(Record {
                    key: row.get(0)?,
                    value: row.get(1)?,
                    version: row.get::<_, i64>(2)? as u64,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut conn = self.writer.lock().expect("writer connection poisoned");
        let tx = conn.transaction()?;
        let new_version: i64 = tx
            .prepare_cached(
                "UPDATE write_sequence SET value = value + 1 WHERE id = 1 RETURNING value",
            )?
            .query_row([], |row| row.get(0))?;
        for write in &batch.writes {
            let current: Option<u64> = tx
                .prepare_cached("SELECT version FROM records WHERE tbl = ?1 AND key = ?2")?
                .query_row(params![write.table, write.key], |row| row.get::<_, i64>(0))
                .optional()?
                .map(|version| version as u64);
            let holds = match write.expect {
                Expect::Anything => true,
                Expect::Absent => current.is_none(),
                Expect::Version(version) => current == Some(version),
            };
            if !holds {
                return Err(StoreError::Conflict {
                    table: write.table.clone(),
                    key: write.key.clone(),
                });
            }
            match &write.op {
                Op::Put { value } => {
                    tx.prepare_cached(
                        "INSERT INTO records (tbl, key, value, version) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (tbl, key) DO UPDATE SET value = excluded.value, version = excluded.version",
                    )?
                    .execute(params![write.table, write.key, value, new_version])?;
                }
                Op::Delete => {
                    tx.prepare_cached("DELETE FROM records WHERE tbl = ?1 AND key = ?2")?
                        .execute(params![write.table, write.key])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn tables(&self) -> Result<Vec<String>, StoreError> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached("SELECT DISTINCT tbl FROM records ORDER BY tbl")?;
            let rows = stmt.query_map([], |row| row.get(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `test` on a fresh SQLite store and, where the test environment names a
    /// PostgreSQL server (`NIMBUS_TEST_POSTGRES`), on a fresh database there: the
    /// backends must agree on every behaviour.
    fn each_store(test: impl Fn(&dyn MetadataStore)) {
        let dir = tempfile::tempdir().unwrap();
        test(&SqliteStore::open(&dir.path().join("meta.db")).unwrap());
        if let Some(store) = crate::postgres::testing::fresh_store() {
            test(&store);
        }
    }

    #[test]
    fn put_get_and_versions() {
        each_store(|store| {
            store
                .commit(WriteBatch::new().put("t", "a", b"1".to_vec(), Expect::Absent))
                .unwrap();
            let first = store.get("t", "a").unwrap().unwrap();
            assert_eq!(first.value, b"1");
            store
                .commit(WriteBatch::new().put(
                    "t",
                    "a",
                    b"2".to_vec(),
                    Expect::Version(first.version),
                ))
                .unwrap();
            assert!(store.get("t", "a").unwrap().unwrap().version > first.version);
            assert!(store.get("other", "a").unwrap().is_none());
        });
    }

    #[test]
    fn a_recreated_record_never_matches_an_old_version() {
        each_store(|store| {
            store
                .commit(WriteBatch::new().put("t", "a", b"old".to_vec(), Expect::Absent))
                .unwrap();
            let old = store.get("t", "a").unwrap().unwrap().version;
            store
                .commit(WriteBatch::new().delete("t", "a", Expect::Version(old)))
                .unwrap();
            store
                .commit(WriteBatch::new().put("t", "a", b"new".to_vec(), Expect::Absent))
                .unwrap();
            let stale = store.commit(WriteBatch::new().put(
                "t",
                "a",
                b"stale".to_vec(),
                Expect::Version(old),
            ));
            assert!(matches!(stale, Err(StoreError::Conflict { .. })));
            assert_eq!(store.get("t", "a").unwrap().unwrap().value, b"new");
        });
    }

    #[test]
    fn failed_precondition_writes_nothing() {
        each_store(|store| {
            store
                .commit(WriteBatch::new().put("t", "a", b"1".to_vec(), Expect::Absent))
                .unwrap();
            let err = store
                .commit(
                    WriteBatch::new()
                        .put("t", "b", b"new".to_vec(), Expect::Absent)
                        .put("t", "a", b"again".to_vec(), Expect::Absent),
                )
                .unwrap_err();
            assert!(matches!(err, StoreError::Conflict { ref key, .. } if key == "a"));
            assert!(
                store.get("t", "b").unwrap().is_none(),
                "batch must be all or nothing"
            );
            let version = store.get("t", "a").unwrap().unwrap().version;
            let err = store
                .commit(WriteBatch::new().delete("t", "a", Expect::Version(version + 1)))
                .unwrap_err();
            assert!(matches!(err, StoreError::Conflict { .. }));
            store
                .commit(WriteBatch::new().delete("t", "a", Expect::Version(version)))
                .unwrap();
            assert!(store.get("t", "a").unwrap().is_none());
        });
    }

    #[test]
    fn scan_back_reads_a_prefix_in_reverse() {
        each_store(|store| {
            let mut batch = WriteBatch::new();
            for key in ["a/1", "a/2", "a/3", "b/1"] {
                batch = batch.put("t", key, vec![], Expect::Anything);
            }
            store.commit(batch).unwrap();
            let keys =
                |records: Vec<Record>| records.into_iter().map(|r| r.key).collect::<Vec<_>>();
            assert_eq!(
                keys(store.scan_back("t", "a/", None, 10).unwrap()),
                ["a/3", "a/2", "a/1"]
            );
            assert_eq!(
                keys(store.scan_back("t", "a/", Some("a/3"), 1).unwrap()),
                ["a/2"]
            );
            assert_eq!(keys(store.scan_back("t", "", None, 1).unwrap()), ["b/1"]);
        });
    }

    #[test]
    fn scan_is_ordered_prefixed_and_pages() {
        each_store(|store| {
            let mut batch = WriteBatch::new();
            for key in ["fn/b", "fn/a", "fn/c", "fo", "f", "fn0"] {
                batch = batch.put("t", key, key.as_bytes().to_vec(), Expect::Anything);
            }
            store.commit(batch).unwrap();
            let keys =
                |records: Vec<Record>| records.into_iter().map(|r| r.key).collect::<Vec<_>>();
            assert_eq!(
                keys(store.scan("t", "fn/", None, 10).unwrap()),
                ["fn/a", "fn/b", "fn/c"]
            );
            assert_eq!(
                keys(store.scan("t", "fn/", None, 2).unwrap()),
                ["fn/a", "fn/b"]
            );
            assert_eq!(
                keys(store.scan("t", "fn/", Some("fn/b"), 10).unwrap()),
                ["fn/c"]
            );
            assert_eq!(
                keys(store.scan("t", "fn/", Some("a"), 10).unwrap()),
                ["fn/a", "fn/b", "fn/c"]
            );
            assert_eq!(keys(store.scan("t", "", None, 10).unwrap()).len(), 6);
            assert_eq!(
                keys(store.scan_all("t", "fn/").unwrap()),
                ["fn/a", "fn/b", "fn/c"]
            );
        });
    }

    #[test]
    fn reopening_keeps_data_and_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            store
                .commit(WriteBatch::new().put("t", "k", b"v".to_vec(), Expect::Absent))
                .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.get("t", "k").unwrap().unwrap().value, b"v");
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::SchemaTooNew { found: 99, .. })
        ));
    }

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_end("a\u{d7ff}").as_deref(), Some("a\u{e000}"));
        assert_eq!(prefix_end(""), None);
    }
}
