//! The PostgreSQL metadata backend: the same one-table model as SQLite, for
//! deployments that keep their state on a database server.
//!
//! Keys are `bytea`, so prefix scans keep the byte order SQLite's keys have and keys
//! may hold any character. Conditional writes are single statements whose `WHERE`
//! clause carries the expectation (`ON CONFLICT DO NOTHING` for `Absent`, `version =`
//! for `Version`), which PostgreSQL re-checks after waiting on a row lock, so they
//! keep their meaning under concurrency at read committed. Versions come from a
//! sequence, which never blocks concurrent writers the way a counter row would.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, NoTls, Socket, config::SslMode};

use crate::metadata::{Expect, MetadataStore, Op, Record, StoreError, WriteBatch, prefix_end};
use crate::remote::{self, METADATA, Unreachable};

/// Ordered schema migrations; `nimbus_schema.version` counts those applied.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE records (
        tbl     BYTEA  NOT NULL,
        key     BYTEA  NOT NULL,
        value   BYTEA  NOT NULL,
        version BIGINT NOT NULL,
        PRIMARY KEY (tbl, key)
    );
    CREATE SEQUENCE record_versions;",
    // Change counters for the tables servers cache: a trigger counts every row written
    // to a watched table in the writing transaction, so every server's caches learn of
    // every other's writes (servers read the counters several times a second).
    "CREATE TABLE nimbus_changes (
        tbl     BYTEA  PRIMARY KEY,
        changes BIGINT NOT NULL DEFAULT 0
    );
    CREATE FUNCTION nimbus_count_change() RETURNS trigger AS $$
    DECLARE
        changed BYTEA := CASE WHEN TG_OP = 'DELETE' THEN OLD.tbl ELSE NEW.tbl END;
    BEGIN
        UPDATE nimbus_changes SET changes = changes + 1 WHERE tbl = changed;
        RETURN NULL;
    END $$ LANGUAGE plpgsql;
    CREATE TRIGGER nimbus_count_change AFTER INSERT OR UPDATE OR DELETE ON records
        FOR EACH ROW EXECUTE FUNCTION nimbus_count_change();",
    // A write to a watched table also wakes the servers listening on `nimbus_changes`
    // (PostgreSQL folds a transaction's identical notifications into one).
    "CREATE OR REPLACE FUNCTION nimbus_count_change() RETURNS trigger AS $$
    DECLARE
        changed BYTEA := CASE WHEN TG_OP = 'DELETE' THEN OLD.tbl ELSE NEW.tbl END;
    BEGIN
        UPDATE nimbus_changes SET changes = changes + 1 WHERE tbl = changed;
        IF FOUND THEN
            PERFORM pg_notify('nimbus_changes', '');
        END IF;
        RETURN NULL;
    END $$ LANGUAGE plpgsql;",
];

/// Taken while migrating, so two servers starting at once never migrate together.
const MIGRATION_LOCK: i64 = 0x6e696d627573; // "nimbus"
/// How long a migration (and the wait for another server's) may take.
const MIGRATION_DEADLINE: Duration = Duration::from_secs(600);
/// What the server lets one statement run: under the caller's deadline.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(8);
/// What a batch gets on top of the usual deadline per write it holds.
const PER_WRITE: Duration = Duration::from_millis(20);

/// Attempts for a batch PostgreSQL aborted for a deadlock or serialization failure.
const ATTEMPTS: usize = 5;

pub struct PgStore {
    pool: Pool,
    changes: Arc<ChangeSignal>,
    /// Starts listening for changes, once a server watches tables.
    listen: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

/// Notifications of changes to watched tables, counted for the waiters.
#[derive(Default)]
struct ChangeSignal {
    seen: Mutex<u64>,
    arrived: Condvar,
}

impl ChangeSignal {
    fn wake(&self) {
        *self.seen.lock().expect("change signal") += 1;
        self.arrived.notify_all();
    }

    fn wait(&self, timeout: Duration) {
        let seen = self.seen.lock().expect("change signal");
        let before = *seen;
        let _ = self
            .arrived
            .wait_timeout_while(seen, timeout, |now| *now == before);
    }
}

/// Holds a connection of its own listening on `nimbus_changes` and wakes `signal` for
/// each notification, connecting again whenever the connection ends. A reconnection
/// wakes it too, for what was missed meanwhile.
async fn listen<T>(config: tokio_postgres::Config, tls: T, signal: Arc<ChangeSignal>)
where
    T: MakeTlsConnect<Socket> + Clone + Send + 'static,
    T::Stream: Send,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    loop {
        if let Ok((client, mut connection)) = config.connect(tls.clone()).await {
            let driven = async {
                while let Some(Ok(message)) =
                    std::future::poll_fn(|cx| connection.poll_message(cx)).await
                {
                    if let AsyncMessage::Notification(_) = message {
                        signal.wake();
                    }
                }
            };
            let listening = async {
                if client.batch_execute("LISTEN nimbus_changes").await.is_ok() {
                    signal.wake();
                }
            };
            tokio::join!(driven, listening);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl Unreachable for StoreError {
    fn unreachable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

fn classify(err: tokio_postgres::Error) -> StoreError {
    // An error with an SQL state came from a server that answered; anything else is
    // the connection.
    match err.code().map(|code| code.code()) {
        // Connection exceptions, a server shutting down or starting, no free slots:
        // the server is there but cannot serve now.
        Some(code) if code.starts_with("08") || code.starts_with("57P") || code == "53300" => {
            StoreError::Unavailable(format!("postgres: {err} ({code})"))
        }
        Some(code) => StoreError::Backend(format!("postgres: {err} ({code})")),
        None => StoreError::Unavailable(format!("postgres: {err}")),
    }
}

/// The server a configuration names, as `host:port`, for messages (never the password).
fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(name)) => name.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}")
}

fn pool_error(err: PoolError) -> StoreError {
    match err {
        PoolError::Backend(err) => classify(err),
        other => StoreError::Unavailable(format!("postgres pool: {other}")),
    }
}

impl PgStore {
    /// Connects to the database at `url` (a `postgres://` URL; `sslmode=require` in it
    /// asks for TLS), keeping at most `pool_size` connections, and migrates its schema.
    pub fn connect(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|err| StoreError::Config(format!("invalid PostgreSQL URL: {err}")))?;
        let address = describe(&config);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        // A peer that vanished (a crashed host, a failover elsewhere) is noticed in
        // about 20 s, not the system's default of minutes.
        config
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(3))
            .keepalives_retries(3)
            .tcp_user_timeout(Duration::from_secs(20));
        // The server ends a statement before the caller's deadline gives up on it, so
        // a connection is never handed out again while still busy with one.
        let options = config.get_options().unwrap_or_default().to_owned();
        config.options(format!(
            "{options} -c statement_timeout={}",
            STATEMENT_TIMEOUT.as_millis()
        ));
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        // TLS when the URL asks for it (tokio-postgres's default, `prefer`, is
        // indistinguishable from an explicit one, hence the look at the text).
        let wants_tls = config.get_ssl_mode() == SslMode::Require || url.contains("sslmode=prefer");
        let changes = Arc::new(ChangeSignal::default());
        let signal = changes.clone();
        let (manager, listen): (_, Box<dyn FnOnce() + Send>) = if wants_tls {
            let tls = native_tls::TlsConnector::new()
                .map_err(|err| StoreError::Config(format!("TLS for PostgreSQL: {err}")))?;
            let tls = postgres_native_tls::MakeTlsConnector::new(tls);
            let listener = (config.clone(), tls.clone());
            (
                Manager::from_config(config, tls, manager_config),
                Box::new(move || {
                    remote::spawn(listen(listener.0, listener.1, signal));
                }),
            )
        } else {
            config.ssl_mode(SslMode::Disable);
            let listener = config.clone();
            (
                Manager::from_config(config, NoTls, manager_config),
                Box::new(move || {
                    remote::spawn(listen(listener, NoTls, signal));
                }),
            )
        };
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(remote::DEADLINE))
            .create_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|err| StoreError::Config(format!("PostgreSQL pool: {err}")))?;
        let store = Self {
            pool,
            changes,
            listen: Mutex::new(Some(listen)),
        };
        store.migrate().map_err(|err| match err {
            StoreError::Unavailable(why) => {
                StoreError::Unavailable(format!("cannot reach PostgreSQL at {address}: {why}"))
            }
            other => other,
        })?;
        let probe = Self {
            pool: store.pool.clone(),
            changes: Arc::default(),
            listen: Mutex::new(None),
        };
        METADATA.set_probe(move || {
            let _ = probe.ping();
        });
        Ok(store)
    }

    /// Runs `work` with a pooled connection on the storage runtime, within the
    /// deadline, recording the backend's health.
    fn call<T, F>(
        &self,
        work: impl FnOnce(deadpool_postgres::Object) -> F + Send + 'static,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        self.call_within(remote::DEADLINE, work)
    }

    /// [`PgStore::call`] with a deadline of its own.
    fn call_within<T, F>(
        &self,
        deadline: Duration,
        work: impl FnOnce(deadpool_postgres::Object) -> F + Send + 'static,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let pool = self.pool.clone();
        METADATA.observe(|| {
            remote::block_on_within(deadline, async move {
                let client = pool.get().await.map_err(pool_error)?;
                work(client).await
            })
            .map_err(|elapsed| StoreError::Unavailable(format!("postgres: {elapsed}")))?
        })
    }

    fn migrate(&self) -> Result<(), StoreError> {
        // A migration (an index on a large table) may take long, and so may the wait
        // for another server's.
        self.call_within(MIGRATION_DEADLINE, |mut client| async move {
            client
                .batch_execute("SET statement_timeout = 0")
                .await
                .map_err(classify)?;
            client
                .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
                .await
                .map_err(classify)?;
            let result = apply_migrations(&mut client).await;
            // A failed unlock or reset still ends with the session, which the pool
            // then drops.
            let _ = client
                .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
                .await;
            let _ = client.batch_execute("RESET statement_timeout").await;
            result
        })
    }

    /// Asks the database for one trivial answer; for health checks.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.call(|client| async move {
            client.simple_query("SELECT 1").await.map_err(classify)?;
            Ok(())
        })
    }
}

async fn apply_migrations(client: &mut deadpool_postgres::Object) -> Result<(), StoreError> {
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS nimbus_schema (version INTEGER NOT NULL)")
        .await
        .map_err(classify)?;
    let applied: i32 = client
        .query_opt("SELECT version FROM nimbus_schema", &[])
        .await
        .map_err(classify)?
        .map_or(0, |row| row.get(0));
    let supported = MIGRATIONS.len() as u32;
    if applied as u32 > supported {
        return Err(StoreError::SchemaTooNew {
            found: applied as u32,
            supported,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        let version = index as i32 + 1;
        let tx = client.transaction().await.map_err(classify)?;
        tx.batch_execute(sql).await.map_err(classify)?;
        tx.execute("DELETE FROM nimbus_schema", &[])
            .await
            .map_err(classify)?;
        tx.execute(
            "INSERT INTO nimbus_schema (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        tracing::info!(version, "applied metadata migration");
    }
    Ok(())
}

/// An exclusive upper bound on keys: `end`, or past every key when there is none
/// (keys are UTF-8, in which the byte 0xFF never occurs).
fn upper_bound(end: Option<String>) -> Vec<u8> {
    end.map_or_else(|| vec![0xff], String::into_bytes)
}

fn record(key: Vec<u8>, value: Vec<u8>, version: i64) -> Result<Record, StoreError> {
    Ok(Record {
        key: String::from_utf8(key)
            .map_err(|_| StoreError::Backend("a stored key is not UTF-8".into()))?,
        value,
        version: version as u64,
    })
}

fn records(rows: Vec<tokio_postgres::Row>) -> Result<Vec<Record>, StoreError> {
    rows.into_iter()
        .map(|row| record(row.get(0), row.get(1), row.get(2)))
        .collect()
}

/// Why one attempt at a batch failed.
enum Attempt {
    Conflict { table: String, key: String },
    Failed(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for Attempt {
    fn from(err: tokio_postgres::Error) -> Self {
        Attempt::Failed(err)
    }
}

impl Attempt {
    /// Whether PostgreSQL aborted the transaction only for its timing with another,
    /// so the same batch may simply be tried again.
    fn retryable(&self) -> bool {
        matches!(self, Attempt::Failed(err)
            if err.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED)
                || err.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE))
    }
}

impl From<Attempt> for StoreError {
    fn from(attempt: Attempt) -> Self {
        match attempt {
            Attempt::Conflict { table, key } => StoreError::Conflict { table, key },
            Attempt::Failed(err) => classify(err),
        }
    }
}

async fn apply(client: &mut deadpool_postgres::Object, batch: &WriteBatch) -> Result<(), Attempt> {
    let tx = client.transaction().await?;
    for write in &batch.writes {
        let (table, key) = (write.table.as_bytes(), write.key.as_bytes());
        let changed = match (&write.op, write.expect) {
            (Op::Put { value }, Expect::Anything) => {
                let stmt = tx
                    .prepare_cached(
                        "INSERT INTO records (tbl, key, value, version)
                         VALUES ($1, $2, $3, nextval('record_versions'))
                         ON CONFLICT (tbl, key) DO UPDATE
                         SET value = excluded.value, version = excluded.version",
                    )
                    .await?;
                tx.execute(&stmt, &[&table, &key, value]).await
            }
            (Op::Put { value }, Expect::Absent) => {
                let stmt = tx
                    .prepare_cached(
                        "INSERT INTO records (tbl, key, value, version)
                         VALUES ($1, $2, $3, nextval('record_versions'))
                         ON CONFLICT (tbl, key) DO NOTHING",
                    )
                    .await?;
                tx.execute(&stmt, &[&table, &key, value]).await
            }
            (Op::Put { value }, Expect::Version(version)) => {
                let stmt = tx
                    .prepare_cached(
                        "UPDATE records SET value = $3, version = nextval('record_versions')
                         WHERE tbl = $1 AND key = $2 AND version = $4",
                    )
                    .await?;
                tx.execute(&stmt, &[&table, &key, value, &(version as i64)])
                    .await
            }
            (Op::Delete, Expect::Anything) => {
                let stmt = tx
                    .prepare_cached("DELETE FROM records WHERE tbl = $1 AND key = $2")
                    .await?;
                // Deleting what is not there is no conflict.
                tx.execute(&stmt, &[&table, &key]).await.map(|_| 1)
            }
            (Op::Delete, Expect::Absent) => {
                let stmt = tx
                    .prepare_cached("SELECT 1 FROM records WHERE tbl = $1 AND key = $2 FOR SHARE")
                    .await?;
                tx.query_opt(&stmt, &[&table, &key])
                    .await
                    .map(|row| u64::from(row.is_none()))
            }
            (Op::Delete, Expect::Version(version)) => {
                let stmt = tx
                    .prepare_cached(
                        "DELETE FROM records WHERE tbl = $1 AND key = $2 AND version = $3",
                    )
                    .await?;
                tx.execute(&stmt, &[&table, &key, &(version as i64)]).await
            }
        }?;
        if changed == 0 {
            // Dropping the transaction rolls it back.
            return Err(Attempt::Conflict {
                table: write.table.clone(),
                key: write.key.clone(),
            });
        }
    }
    Ok(tx.commit().await?)
}

impl MetadataStore for PgStore {
    fn get(&self, table: &str, key: &str) -> Result<Option<Record>, StoreError> {
        let (table, key) = (table.as_bytes().to_vec(), key.as_bytes().to_vec());
        self.call(|client| async move {
            let stmt = client
                .prepare_cached(
                    "SELECT key, value, version FROM records WHERE tbl = $1 AND key = $2",
                )
                .await
                .map_err(classify)?;
            let row = client
                .query_opt(&stmt, &[&table, &key])
                .await
                .map_err(classify)?;
            row.map(|row| record(row.get(0), row.get(1), row.get(2)))
                .transpose()
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
        let upper = upper_bound(prefix_end(prefix));
        let (table, lower) = (table.as_bytes().to_vec(), lower.as_bytes().to_vec());
        let limit = limit as i64;
        self.call(move |client| async move {
            // Plain bounds on the key, so even a generic plan scans the index range.
            let stmt = client
                .prepare_cached(
                    "SELECT key, value, version FROM records
                     WHERE tbl = $1 AND key >= $2 AND key < $4 AND (key > $2 OR $3)
                     ORDER BY key LIMIT $5",
                )
                .await
                .map_err(classify)?;
            let rows = client
                .query(&stmt, &[&table, &lower, &inclusive, &upper, &limit])
                .await
                .map_err(classify)?;
            records(rows)
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
        let upper = upper_bound(match (before, end) {
            (Some(before), Some(end)) if before > end.as_str() => Some(end),
            (Some(before), _) => Some(before.to_owned()),
            (None, end) => end,
        });
        let (table, prefix) = (table.as_bytes().to_vec(), prefix.as_bytes().to_vec());
        let limit = limit as i64;
        self.call(move |client| async move {
            let stmt = client
                .prepare_cached(
                    "SELECT key, value, version FROM records
                     WHERE tbl = $1 AND key >= $2 AND key < $3
                     ORDER BY key DESC LIMIT $4",
                )
                .await
                .map_err(classify)?;
            let rows = client
                .query(&stmt, &[&table, &prefix, &upper, &limit])
                .await
                .map_err(classify)?;
            records(rows)
        })
    }

    fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        // One round trip per write: a batch of thousands (a repository deleted with
        // its images) takes longer than a single call may.
        let deadline = remote::DEADLINE + PER_WRITE * batch.writes.len() as u32;
        self.call_within(deadline, |mut client| async move {
            let mut attempt = 1;
            loop {
                match apply(&mut client, &batch).await {
                    Err(failure) if failure.retryable() && attempt < ATTEMPTS => {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                    }
                    result => return Ok(result?),
                }
            }
        })
    }

    fn shared(&self) -> bool {
        true
    }

    fn watch_tables(&self, tables: &[&str]) -> Result<(), StoreError> {
        if let Some(listen) = self.listen.lock().expect("listener").take() {
            listen();
        }
        let tables: Vec<Vec<u8>> = tables.iter().map(|t| t.as_bytes().to_vec()).collect();
        self.call(|client| async move {
            client
                .execute(
                    "INSERT INTO nimbus_changes (tbl) SELECT unnest($1::bytea[])
                     ON CONFLICT (tbl) DO NOTHING",
                    &[&tables],
                )
                .await
                .map_err(classify)?;
            Ok(())
        })
    }

    fn wait_for_changes(&self, timeout: Duration) {
        self.changes.wait(timeout);
    }

    fn change_counters(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.call(|client| async move {
            let stmt = client
                .prepare_cached("SELECT tbl, changes FROM nimbus_changes")
                .await
                .map_err(classify)?;
            let rows = client.query(&stmt, &[]).await.map_err(classify)?;
            Ok(rows
                .into_iter()
                .filter_map(|row| Some((String::from_utf8(row.get(0)).ok()?, row.get(1))))
                .collect())
        })
    }

    fn tables(&self) -> Result<Vec<String>, StoreError> {
        self.call(|client| async move {
            let rows = client
                .query("SELECT DISTINCT tbl FROM records ORDER BY tbl", &[])
                .await
                .map_err(classify)?;
            rows.into_iter()
                .map(|row| {
                    String::from_utf8(row.get(0))
                        .map_err(|_| StoreError::Backend("a stored table name is not UTF-8".into()))
                })
                .collect()
        })
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A URL of a new, empty database on the test environment's PostgreSQL server
    /// (`NIMBUS_TEST_POSTGRES`, a URL of a role that may create databases).
    pub(crate) fn fresh_url() -> Option<String> {
        let base = std::env::var("NIMBUS_TEST_POSTGRES").ok()?;
        let name = format!("nimbus_test_{}", uuid::Uuid::new_v4().simple());
        let (admin, create) = (base.clone(), format!("CREATE DATABASE {name}"));
        remote::block_on(async move {
            let (client, connection) = tokio_postgres::connect(&admin, NoTls)
                .await
                .expect("the test PostgreSQL server answers");
            tokio::spawn(connection);
            client
                .batch_execute(&create)
                .await
                .expect("a test database");
        })
        .expect("the test PostgreSQL server answers in time");
        let mut url = url::Url::parse(&base).expect("NIMBUS_TEST_POSTGRES is a URL");
        url.set_path(&name);
        Some(url.to_string())
    }

    pub(crate) fn fresh_store() -> Option<PgStore> {
        fresh_url().map(|url| PgStore::connect(&url, 4).expect("the test database opens"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{Expect, WriteBatch};

    #[test]
    fn concurrent_conditional_writes_lose_no_update() {
        let Some(url) = testing::fresh_url() else {
            return;
        };
        let store = std::sync::Arc::new(PgStore::connect(&url, 8).unwrap());
        store
            .commit(WriteBatch::new().put("t", "n", b"0".to_vec(), Expect::Absent))
            .unwrap();
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        loop {
                            let record = store.get("t", "n").unwrap().unwrap();
                            let n: u64 =
                                std::str::from_utf8(&record.value).unwrap().parse().unwrap();
                            let next = (n + 1).to_string().into_bytes();
                            let batch = WriteBatch::new().put(
                                "t",
                                "n",
                                next,
                                Expect::Version(record.version),
                            );
                            match store.commit(batch) {
                                Ok(()) => break,
                                Err(StoreError::Conflict { .. }) => continue,
                                Err(err) => panic!("{err}"),
                            }
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        assert_eq!(store.get("t", "n").unwrap().unwrap().value, b"200");
    }

    #[test]
    fn watched_tables_count_every_write_of_any_kind() {
        let Some(url) = testing::fresh_url() else {
            return;
        };
        let store = PgStore::connect(&url, 2).unwrap();
        store.watch_tables(&["seen"]).unwrap();
        let count = |store: &PgStore| store.change_counters().unwrap();
        assert_eq!(count(&store), [("seen".to_owned(), 0)]);
        let put = |table: &str| WriteBatch::new().put(table, "k", b"v".to_vec(), Expect::Anything);
        store.commit(put("seen").extend(put("unseen"))).unwrap();
        store.commit(put("seen")).unwrap();
        store
            .commit(WriteBatch::new().delete("seen", "k", Expect::Anything))
            .unwrap();
        // A second server watching the same table shares the count.
        let other = PgStore::connect(&url, 1).unwrap();
        other.watch_tables(&["seen"]).unwrap();
        assert_eq!(count(&other), [("seen".to_owned(), 3)]);

        // A write to a watched table wakes the other server's waiter (once its
        // listener is connected, which wakes it too); one to another table does not.
        let seen = |store: &PgStore| *store.changes.seen.lock().unwrap();
        while seen(&other) == 0 {
            other.wait_for_changes(Duration::from_millis(100));
        }
        let before = seen(&other);
        store.commit(put("unseen")).unwrap();
        store.commit(put("seen")).unwrap();
        for _ in 0..300 {
            if seen(&other) > before {
                break;
            }
            other.wait_for_changes(Duration::from_millis(100));
        }
        assert_eq!(seen(&other), before + 1);
    }

    #[test]
    fn servers_starting_together_migrate_once() {
        let Some(url) = testing::fresh_url() else {
            return;
        };
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || PgStore::connect(&url, 1).map(|_| ()))
            })
            .collect();
        for start in starts {
            start.join().unwrap().unwrap();
        }
        let store = PgStore::connect(&url, 1).unwrap();
        let versions = store
            .call(|client| async move {
                let rows = client
                    .query("SELECT version FROM nimbus_schema", &[])
                    .await
                    .map_err(classify)?;
                Ok(rows
                    .iter()
                    .map(|row| row.get::<_, i32>(0))
                    .collect::<Vec<_>>())
            })
            .unwrap();
        assert_eq!(versions, [MIGRATIONS.len() as i32]);
    }

    #[test]
    fn scans_keep_byte_order() {
        let Some(store) = testing::fresh_store() else {
            return;
        };
        let mut keys = vec!["a", "B", "é", "z", "a/b", "a0", "Z", "~", "ab"];
        let mut batch = WriteBatch::new();
        for key in &keys {
            batch = batch.put("t", key, Vec::new(), Expect::Anything);
        }
        store.commit(batch).unwrap();
        keys.sort();
        let scanned: Vec<_> = store
            .scan_all("t", "")
            .unwrap()
            .into_iter()
            .map(|record| record.key)
            .collect();
        assert_eq!(scanned, keys);
        assert_eq!(store.tables().unwrap(), ["t"]);
    }

    #[test]
    fn an_unreachable_server_is_named_and_reported_unavailable() {
        let err = PgStore::connect("postgres://nimbus@127.0.0.1:1/nimbus", 1)
            .err()
            .expect("nothing listens on port 1");
        assert!(
            matches!(&err, StoreError::Unavailable(message) if message.contains("cannot reach PostgreSQL at 127.0.0.1:1")),
            "{err}"
        );
    }
}
