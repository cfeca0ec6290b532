//! Functions, versions and aliases as records in the metadata store.
//!
//! Keys: `lambda.functions/<name>`, `lambda.versions/<name>/<version, 10 digits>`,
//! `lambda.aliases/<name>/<alias>`, and `lambda.url-ids/<url-id>` naming the function a
//! URL belongs to, kept in the batch that writes the function. Zero-padded versions
//! keep numeric order in scans.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use nimbus_storage::{Expect, MetadataStore, Record, StoreError, WriteBatch};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::code::CodeRef;
use crate::model::{AliasConfiguration, FunctionConfiguration, LayerVersion};

const FUNCTIONS: &str = "lambda.functions";
const VERSIONS: &str = "lambda.versions";
const ALIASES: &str = "lambda.aliases";
const LAYERS: &str = "lambda.layers";
const LAYER_NAMES: &str = "lambda.layer-names";
const URL_IDS: &str = "lambda.url-ids";
/// The tables whose records [`FunctionStore`] caches.
pub const CACHED: &[&str] = &[FUNCTIONS, VERSIONS, ALIASES, LAYERS, LAYER_NAMES, URL_IDS];

/// A function: its `$LATEST` configuration and code, and what belongs to the whole
/// function rather than to one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionRecord {
    pub config: FunctionConfiguration,
    pub code: CodeRef,
    /// The code of `config.layers`, in the same order.
    #[serde(default)]
    pub layers: Vec<CodeRef>,
    pub tags: BTreeMap<String, String>,
    pub reserved_concurrency: Option<i64>,
    /// The highest version number published so far.
    pub last_version: u64,
    /// The resource policy's statements (AddPermission).
    #[serde(default)]
    pub policy: Vec<serde_json::Value>,
    /// Asynchronous-invocation settings by qualifier (`$LATEST` when unqualified).
    #[serde(default)]
    pub event_invoke: BTreeMap<String, crate::event_invoke::EventInvokeConfig>,
    /// Function URLs by qualifier (empty when unqualified).
    #[serde(default)]
    pub urls: BTreeMap<String, crate::function_urls::UrlConfig>,
    /// The image of a container image function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<crate::images::ImageCode>,
}

/// A published version: an immutable snapshot of configuration and code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub config: FunctionConfiguration,
    pub code: CodeRef,
    #[serde(default)]
    pub layers: Vec<CodeRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<crate::images::ImageCode>,
}

/// A published layer version and its code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub layer: LayerVersion,
    pub name: String,
    pub code: CodeRef,
}

/// Per layer name: the highest version number ever published, so numbers are never
/// reused after a delete.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct LayerName {
    last_version: u64,
}

/// A record read together with the version a conditional write expects.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum FunctionStoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

fn decode<T: DeserializeOwned>(record: Record) -> Result<Versioned<T>, FunctionStoreError> {
    let value =
        serde_json::from_slice(&record.value).map_err(|err| FunctionStoreError::Corrupt {
            key: record.key.clone(),
            reason: err.to_string(),
        })?;
    Ok(Versioned {
        value,
        version: record.version,
    })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

fn url_ids(record: Option<&FunctionRecord>) -> std::collections::BTreeSet<&str> {
    record
        .into_iter()
        .flat_map(|record| record.urls.values())
        .map(|config| config.url_id.as_str())
        .collect()
}

/// `batch` with the URL index moved from the URLs of `before` to those of `after`.
fn index_urls(
    mut batch: WriteBatch,
    before: Option<&FunctionRecord>,
    after: Option<&FunctionRecord>,
) -> WriteBatch {
    let (old, new) = (url_ids(before), url_ids(after));
    for id in old.difference(&new) {
        batch = batch.delete(URL_IDS, id, Expect::Anything);
    }
    if let Some(after) = after {
        let name = after.config.function_name.as_bytes();
        for id in new.difference(&old) {
            batch = batch.put(URL_IDS, id, name.to_vec(), Expect::Absent);
        }
    }
    batch
}

fn version_key(name: &str, version: u64) -> String {
    format!("{name}/{version:010}")
}

pub struct FunctionStore {
    meta: Arc<dyn MetadataStore>,
    /// Records read since the last write: every invoke reads its function, version and
    /// alias, which change rarely. Any write through this store empties it.
    cache: Mutex<RecordCache>,
}

#[derive(Default)]
struct RecordCache {
    records: HashMap<(&'static str, String), Record>,
    /// Bumped by every write, so a read that raced one is not cached.
    generation: u64,
}

impl RecordCache {
    fn invalidate(&mut self) {
        self.generation += 1;
        self.records.clear();
    }
}

impl FunctionStore {
    pub fn new(meta: Arc<dyn MetadataStore>) -> Self {
        Self {
            meta,
            cache: Mutex::new(RecordCache::default()),
        }
    }

    fn get(&self, table: &'static str, key: &str) -> Result<Option<Record>, StoreError> {
        let id = (table, key.to_owned());
        let generation = {
            let cache = self.cache.lock().expect("record cache");
            if let Some(record) = cache.records.get(&id) {
                return Ok(Some(record.clone()));
            }
            cache.generation
        };
        let record = self.meta.get(table, key)?;
        let mut cache = self.cache.lock().expect("record cache");
        // Only records that exist are kept: a miss cached per name would let a caller
        // grow the cache without bound by invoking names that do not exist.
        if let Some(found) = &record
            && cache.generation == generation
        {
            cache.records.insert(id, found.clone());
        }
        Ok(record)
    }

    /// Forgets every cached record: another node wrote to one of [`CACHED`].
    pub fn invalidate(&self) {
        self.cache.lock().expect("record cache").invalidate();
    }

    fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        // Invalidated before and after, so a read that overlaps the write is not
        // cached with what it saw before the write landed.
        self.cache.lock().expect("record cache").invalidate();
        let result = self.meta.commit(batch);
        self.cache.lock().expect("record cache").invalidate();
        result
    }

    pub fn function(
        &self,
        name: &str,
    ) -> Result<Option<Versioned<FunctionRecord>>, FunctionStoreError> {
        self.get(FUNCTIONS, name)?.map(decode).transpose()
    }

    /// Functions in name order after `after`, at most `limit`.
    pub fn functions(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FunctionRecord>, FunctionStoreError> {
        self.meta
            .scan(FUNCTIONS, "", after, limit)?
            .into_iter()
            .map(|record| decode(record).map(|v| v.value))
            .collect()
    }

    /// Writes a function if it is as `expect` says (`Absent` to create it, the
    /// version read to update it), publishing `version` with it when given.
    pub fn save(
        &self,
        function: &FunctionRecord,
        expect: Expect,
        version: Option<&VersionRecord>,
    ) -> Result<(), FunctionStoreError> {
        let name = &function.config.function_name;
        // Should the record have changed since, `expect` fails the whole batch.
        let before = self.meta.get(FUNCTIONS, name)?.map(decode).transpose()?;
        let before = before.as_ref().map(|record| &record.value);
        let batch = WriteBatch::new().put(FUNCTIONS, name, encode(function), expect);
        let mut batch = index_urls(batch, before, Some(function));
        if let Some(version) = version {
            batch = batch.put(
                VERSIONS,
                &version_key(name, function.last_version),
                encode(version),
                Expect::Absent,
            );
        }
        Ok(self.commit(batch)?)
    }

    /// The name of the function URL `id` belongs to. Not cached: ids a client makes
    /// up must not fill the cache.
    pub fn url_owner(&self, id: &str) -> Result<Option<String>, FunctionStoreError> {
        Ok(self
            .meta
            .get(URL_IDS, id)?
            .map(|record| String::from_utf8_lossy(&record.value).into_owned()))
    }

    /// Indexes the URLs of functions written before URLs were indexed; how many.
    pub fn index_unindexed_urls(&self) -> Result<usize, FunctionStoreError> {
        let mut batch = WriteBatch::new();
        let mut indexed = 0;
        for function in self.all_functions()? {
            for config in function.urls.values() {
                if self.meta.get(URL_IDS, &config.url_id)?.is_none() {
                    let name = function.config.function_name.as_bytes().to_vec();
                    batch = batch.put(URL_IDS, &config.url_id, name, Expect::Absent);
                    indexed += 1;
                }
            }
        }
        if indexed > 0 {
            self.commit(batch)?;
        }
        Ok(indexed)
    }

    /// Every function, in name order.
    pub fn all_functions(&self) -> Result<Vec<FunctionRecord>, FunctionStoreError> {
        self.meta
            .scan_all(FUNCTIONS, "")?
            .into_iter()
            .map(|record| decode(record).map(|v| v.value))
            .collect()
    }

    /// Deletes a function with all its versions and aliases.
    pub fn delete_function(&self, name: &str, expected: u64) -> Result<(), FunctionStoreError> {
        let before = self.meta.get(FUNCTIONS, name)?.map(decode).transpose()?;
        let batch = WriteBatch::new().delete(FUNCTIONS, name, Expect::Version(expected));
        let mut batch = index_urls(batch, before.as_ref().map(|record| &record.value), None);
        let prefix = format!("{name}/");
        for table in [VERSIONS, ALIASES] {
            for record in self.meta.scan_all(table, &prefix)? {
                batch = batch.delete(table, &record.key, Expect::Version(record.version));
            }
        }
        Ok(self.commit(batch)?)
    }

    pub fn version(
        &self,
        name: &str,
        version: u64,
    ) -> Result<Option<VersionRecord>, FunctionStoreError> {
        Ok(self
            .get(VERSIONS, &version_key(name, version))?
            .map(decode)
            .transpose()?
            .map(|v| v.value))
    }

    /// Published versions in ascending order after version `after`, at most `limit`.
    pub fn versions(
        &self,
        name: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<VersionRecord>, FunctionStoreError> {
        let after = after.map(|v| version_key(name, v));
        self.meta
            .scan(VERSIONS, &format!("{name}/"), after.as_deref(), limit)?
            .into_iter()
            .map(|record| decode(record).map(|v| v.value))
            .collect()
    }

    pub fn delete_version(&self, name: &str, version: u64) -> Result<(), FunctionStoreError> {
        let batch =
            WriteBatch::new().delete(VERSIONS, &version_key(name, version), Expect::Anything);
        Ok(self.commit(batch)?)
    }

    pub fn alias(
        &self,
        name: &str,
        alias: &str,
    ) -> Result<Option<Versioned<AliasConfiguration>>, FunctionStoreError> {
        self.get(ALIASES, &format!("{name}/{alias}"))?
            .map(decode)
            .transpose()
    }

    /// A function's aliases, in name order.
    pub fn aliases(&self, name: &str) -> Result<Vec<AliasConfiguration>, FunctionStoreError> {
        self.meta
            .scan_all(ALIASES, &format!("{name}/"))?
            .into_iter()
            .map(|record| decode(record).map(|v| v.value))
            .collect()
    }

    /// Writes an alias: `expected` `None` creates it, `Some(v)` replaces the one read at `v`.
    pub fn put_alias(
        &self,
        name: &str,
        alias: &AliasConfiguration,
        expected: Option<u64>,
    ) -> Result<(), FunctionStoreError> {
        let expect = expected.map_or(Expect::Absent, Expect::Version);
        let batch = WriteBatch::new().put(
            ALIASES,
            &format!("{name}/{}", alias.name),
            encode(alias),
            expect,
        );
        Ok(self.commit(batch)?)
    }

    pub fn delete_alias(&self, name: &str, alias: &str) -> Result<(), FunctionStoreError> {
        let batch = WriteBatch::new().delete(ALIASES, &format!("{name}/{alias}"), Expect::Anything);
        Ok(self.commit(batch)?)
    }

    /// Publishes the next version of a layer; `make` builds the record for the number.
    pub fn publish_layer(
        &self,
        name: &str,
        make: impl FnOnce(u64) -> LayerRecord,
    ) -> Result<LayerRecord, FunctionStoreError> {
        let current = self.meta.get(LAYER_NAMES, name)?;
        let (mut counter, expect) = match current {
            Some(record) => {
                let version = record.version;
                (decode::<LayerName>(record)?.value, Expect::Version(version))
            }
            None => (LayerName::default(), Expect::Absent),
        };
        counter.last_version += 1;
        let record = make(counter.last_version);
        let batch = WriteBatch::new()
            .put(LAYER_NAMES, name, encode(&counter), expect)
            .put(
                LAYERS,
                &version_key(name, counter.last_version),
                encode(&record),
                Expect::Absent,
            );
        self.commit(batch)?;
        Ok(record)
    }

    pub fn layer(
        &self,
        name: &str,
        version: u64,
    ) -> Result<Option<LayerRecord>, FunctionStoreError> {
        Ok(self
            .meta
            .get(LAYERS, &version_key(name, version))?
            .map(decode)
            .transpose()?
            .map(|v| v.value))
    }

    /// Layer versions in (name, version) order after `after`, optionally of one name.
    /// Layer versions in (name, version) order, of one layer or of all.
    pub fn layers(&self, name: Option<&str>) -> Result<Vec<LayerRecord>, FunctionStoreError> {
        let prefix = name.map(|n| format!("{n}/")).unwrap_or_default();
        self.meta
            .scan_all(LAYERS, &prefix)?
            .into_iter()
            .map(|record| decode(record).map(|v| v.value))
            .collect()
    }

    pub fn delete_layer(&self, name: &str, version: u64) -> Result<(), FunctionStoreError> {
        let batch = WriteBatch::new().delete(LAYERS, &version_key(name, version), Expect::Anything);
        Ok(self.commit(batch)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(name: &str, url_ids: &[&str]) -> FunctionRecord {
        let urls: serde_json::Map<String, serde_json::Value> = url_ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let qualifier = if i == 0 {
                    String::new()
                } else {
                    format!("a{i}")
                };
                let config = serde_json::json!({
                    "url_id": id, "auth_type": "NONE", "cors": null,
                    "invoke_mode": "BUFFERED", "created": "", "modified": "",
                });
                (qualifier, config)
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "config": {
                "FunctionName": name, "FunctionArn": "", "Role": "", "CodeSize": 0,
                "Description": "", "Timeout": 3, "MemorySize": 128, "LastModified": "",
                "CodeSha256": "", "Version": "$LATEST", "TracingConfig": {"Mode": "PassThrough"},
                "RevisionId": "", "State": "Active", "LastUpdateStatus": "Successful",
                "PackageType": "Zip", "Architectures": ["x86_64"],
                "EphemeralStorage": {"Size": 512},
                "LoggingConfig": {"LogFormat": "Text", "LogGroup": ""},
            },
            "code": {"digest": "", "size": 0},
            "tags": {}, "reserved_concurrency": null, "last_version": 0, "urls": urls,
        }))
        .unwrap()
    }

    #[test]
    fn names_that_do_not_exist_are_not_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(nimbus_storage::SqliteStore::open(&dir.path().join("m.db")).unwrap());
        let store = FunctionStore::new(meta);
        for n in 0..100 {
            assert!(store.function(&format!("nope-{n}")).unwrap().is_none());
        }
        assert!(store.cache.lock().unwrap().records.is_empty());
    }

    #[test]
    fn url_ids_name_their_function_for_as_long_as_the_url_lives() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(nimbus_storage::SqliteStore::open(&dir.path().join("m.db")).unwrap());
        let store = FunctionStore::new(meta);
        store
            .save(&function("f", &["one"]), Expect::Absent, None)
            .unwrap();
        let version = store.function("f").unwrap().unwrap().version;
        store
            .save(
                &function("f", &["one", "two"]),
                Expect::Version(version),
                None,
            )
            .unwrap();
        assert_eq!(store.url_owner("two").unwrap().as_deref(), Some("f"));
        let version = store.function("f").unwrap().unwrap().version;
        store
            .save(&function("f", &["two"]), Expect::Version(version), None)
            .unwrap();
        assert_eq!(store.url_owner("one").unwrap(), None);
        assert_eq!(store.url_owner("two").unwrap().as_deref(), Some("f"));
        let version = store.function("f").unwrap().unwrap().version;
        store.delete_function("f", version).unwrap();
        assert_eq!(store.url_owner("two").unwrap(), None);
    }

    #[test]
    fn urls_written_before_the_index_are_indexed_once() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(nimbus_storage::SqliteStore::open(&dir.path().join("m.db")).unwrap());
        let old = function("f", &["one"]);
        meta.commit(WriteBatch::new().put(FUNCTIONS, "f", encode(&old), Expect::Absent))
            .unwrap();
        let store = FunctionStore::new(meta);
        assert_eq!(store.index_unindexed_urls().unwrap(), 1);
        assert_eq!(store.index_unindexed_urls().unwrap(), 0);
        assert_eq!(store.url_owner("one").unwrap().as_deref(), Some("f"));
    }
}
