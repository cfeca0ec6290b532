//! The image registry: OCI distribution v1.1 under `/v2/` ([`distribution`]) and the
//! ECR API ([`api`]), two faces of one [`Registry`] kept in the metadata and blob
//! stores ([`store`]), with ECR's tokens and repository policies ([`access`]).

pub mod access;
pub mod api;
pub mod distribution;
pub mod lifecycle;
pub mod names;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use nimbus_auth::authz::{Access, Authorizer};
use nimbus_auth::{Caller, CredentialStore, Principal};
use nimbus_edge::forward::Peers;
use nimbus_storage::{BlobStore, Expect, MetadataStore, WriteBatch};

pub use api::EcrApi;
pub use store::{RegistryError, RepoRecord, Store};

use access::Tokens;
use store::Upload;

/// Open uploads one caller may hold at once.
const UPLOADS_PER_CALLER: usize = 64;
/// An upload nobody touched for this long is dropped, and its bytes with it.
const UPLOAD_IDLE: Duration = Duration::from_secs(3600);
/// Which node holds each open upload, in a deployment of several.
const UPLOAD_NODES: &str = "registry.upload-nodes";

/// When garbage collection and lifecycle rules run.
#[derive(Clone)]
pub struct Housekeeping {
    pub interval: Duration,
    /// Blobs younger than this are never collected, so a blob pushed just before its
    /// manifest survives (on whichever node it is being pushed).
    pub grace: Duration,
    /// Housekeeping runs on the one node that holds this.
    pub lease: nimbus_cluster::Lease,
}

/// Where a registry request came from: `aws:SourceIp` and `aws:SecureTransport`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin {
    pub ip: Option<IpAddr>,
    pub secure: bool,
}

pub struct Registry {
    pub store: Store,
    pub tokens: Tokens,
    uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Upload>>>>,
    /// Open uploads recorded in `registry.upload-nodes`, for other nodes to find.
    shared: Mutex<HashSet<String>>,
    /// The deployment, when this registry is one node's of several, and how to reach
    /// the other nodes.
    cluster: OnceLock<(Arc<nimbus_cluster::Cluster>, Peers)>,
    pub account_id: String,
    pub region: String,
    authorizer: Arc<dyn Authorizer>,
}

impl Registry {
    /// Opens the registry's state: records in `meta`, bytes in `blobs` (a store of the
    /// registry's own, since its garbage collection deletes what no image names), the
    /// token key under `dir`.
    pub fn open(
        meta: Arc<dyn MetadataStore>,
        blobs: Arc<dyn BlobStore>,
        dir: &Path,
        credentials: Arc<CredentialStore>,
        account_id: &str,
        region: &str,
        authorizer: Arc<dyn Authorizer>,
    ) -> Result<Arc<Self>, RegistryError> {
        std::fs::create_dir_all(dir)?;
        Ok(Arc::new(Self {
            tokens: Tokens::open(meta.as_ref(), &dir.join("token-key"), credentials)?,
            store: Store::new(meta, blobs),
            uploads: Mutex::new(HashMap::new()),
            shared: Mutex::new(HashSet::new()),
            cluster: OnceLock::new(),
            account_id: account_id.to_owned(),
            region: region.to_owned(),
            authorizer,
        }))
    }

    /// Whether `caller` (`None`: anonymous) may do `action` on `repo`, connecting from
    /// `origin`: IAM's one evaluator over the caller's identity policies and the
    /// repository policy (for an anonymous caller, the repository policy alone).
    pub fn permits(
        &self,
        caller: Option<&Principal>,
        origin: Origin,
        action: &str,
        repo: &RepoRecord,
    ) -> bool {
        let arn = self.repository_arn(&repo.name);
        let mut access = Access::new(action, &arn).with_policy(repo.policy.as_deref());
        if origin.secure {
            access = access.with_context("aws:SecureTransport", vec!["true".into()]);
        }
        let source_ip = origin.ip;
        let decision = match caller {
            Some(principal) => {
                let caller = Caller {
                    principal: principal.clone(),
                    access_key_id: String::new(),
                    is_session: false,
                };
                self.authorizer.authorize(&caller, source_ip, &access)
            }
            None => self.authorizer.authorize_anonymous(source_ip, &access),
        };
        decision.is_ok()
    }

    /// Whether `puller` may pull images from the repository `repo`
    /// (`ecr:BatchGetImage` and `ecr:GetDownloadUrlForLayer`, its policy considered):
    /// what a service pulling on a principal's behalf (ECS as a task's execution role,
    /// Lambda for a function's creator) is held to, as a client pulling over `/v2/`
    /// is.
    pub fn authorize_pull(&self, puller: &Principal, repo: &str) -> Result<(), String> {
        let record = self.store.repository(repo).map_err(|err| err.to_string())?;
        for action in ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"] {
            if !self.permits(Some(puller), Origin::default(), action, &record) {
                return Err(format!(
                    "User: {} is not authorized to perform: {action} on resource: {}",
                    puller.arn(),
                    self.repository_arn(repo)
                ));
            }
        }
        Ok(())
    }

    pub fn repository_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:ecr:{}:{}:repository/{name}",
            self.region, self.account_id
        )
    }

    /// Serves this registry as one node of `cluster`: an upload is held by the node
    /// that started it, and other nodes hand its requests over to that node.
    /// Uploads recorded as this node's by an earlier run are gone with its memory.
    pub fn join(&self, cluster: Arc<nimbus_cluster::Cluster>, peers: Peers) {
        let mine = cluster.me().advertise.as_bytes().to_vec();
        if let Ok(records) = self.store.meta().scan_all(UPLOAD_NODES, "") {
            let stale = records
                .iter()
                .filter(|r| r.value == mine)
                .fold(WriteBatch::new(), |batch, r| {
                    batch.delete(UPLOAD_NODES, &r.key, Expect::Version(r.version))
                });
            if let Err(err) = self.store.meta().commit(stale) {
                tracing::warn!(error = %err, "forgetting an earlier run's uploads failed");
            }
        }
        let _ = self.cluster.set((cluster, peers));
    }

    /// Starts an upload into `repo` for `owner`, within the per-caller bound.
    pub fn start_upload(&self, repo: &str, owner: &str) -> Result<String, RegistryError> {
        let upload = self.store.start_upload(repo, owner)?;
        let mut uploads = self.uploads.lock().expect("uploads");
        let mut idle = Vec::new();
        uploads.retain(|id, upload| {
            let keep = upload
                .try_lock()
                .map_or(true, |upload| upload.touched.elapsed() < UPLOAD_IDLE);
            if !keep {
                idle.push(id.clone());
            }
            keep
        });
        for id in &idle {
            self.unshare(id);
        }
        let held = uploads
            .values()
            .filter(|upload| {
                upload
                    .try_lock()
                    .map_or(true, |upload| upload.owner == owner)
            })
            .count();
        if held >= UPLOADS_PER_CALLER {
            return Err(RegistryError::TooManyUploads);
        }
        let id = uuid::Uuid::new_v4().to_string();
        uploads.insert(id.clone(), Arc::new(tokio::sync::Mutex::new(upload)));
        drop(uploads);
        // With other nodes about, the upload says where it lives; a deployment of one
        // writes nothing.
        if let Some((cluster, _)) = self.cluster.get()
            && !cluster.alone()
            && nimbus_cluster::reachable(&cluster.me().advertise)
        {
            self.store.meta().commit(WriteBatch::new().put(
                UPLOAD_NODES,
                &id,
                cluster.me().advertise.clone().into_bytes(),
                Expect::Anything,
            ))?;
            self.shared
                .lock()
                .expect("shared uploads")
                .insert(id.clone());
        }
        Ok(id)
    }

    /// The node holding upload `id`, when another node holds it, and how to reach it.
    pub fn upload_elsewhere(&self, id: &str) -> Option<(String, Peers)> {
        let (cluster, peers) = self.cluster.get()?;
        if self.uploads.lock().expect("uploads").contains_key(id) {
            return None;
        }
        let record = self.store.meta().get(UPLOAD_NODES, id).ok()??;
        let address = String::from_utf8(record.value).ok()?;
        (address != cluster.me().advertise).then(|| (address, peers.clone()))
    }

    fn unshare(&self, id: &str) {
        if self.shared.lock().expect("shared uploads").remove(id) {
            let _ = self.store.meta().commit(WriteBatch::new().delete(
                UPLOAD_NODES,
                id,
                Expect::Anything,
            ));
        }
    }

    /// An open upload of `repo`.
    pub async fn upload(
        &self,
        repo: &str,
        id: &str,
    ) -> Result<tokio::sync::OwnedMutexGuard<Upload>, RegistryError> {
        let upload = self
            .uploads
            .lock()
            .expect("uploads")
            .get(id)
            .cloned()
            .ok_or(RegistryError::UploadUnknown)?;
        let guard = upload.lock_owned().await;
        if guard.repo != repo || guard.touched.elapsed() >= UPLOAD_IDLE {
            return Err(RegistryError::UploadUnknown);
        }
        Ok(guard)
    }

    /// Forgets an upload (finished or cancelled); unfinished bytes are discarded.
    pub fn end_upload(&self, id: &str) -> bool {
        self.unshare(id);
        self.uploads.lock().expect("uploads").remove(id).is_some()
    }

    /// Collects garbage and applies lifecycle policies every `interval`, forever.
    pub fn start_housekeeping(self: &Arc<Self>, settings: Housekeeping) {
        let registry = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(settings.interval);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                if !settings.lease.held() {
                    continue;
                }
                let registry = registry.clone();
                let done =
                    tokio::task::spawn_blocking(move || registry.housekeep(settings.grace)).await;
                if let Ok(Err(err)) = done {
                    tracing::warn!(error = %err, "registry housekeeping failed");
                }
            }
        });
    }

    fn housekeep(&self, grace: Duration) -> Result<(), RegistryError> {
        let expired = lifecycle::apply_all(&self.store)?;
        let (blobs, files) = self.store.collect_garbage(grace.as_secs_f64())?;
        if expired + blobs + files > 0 {
            tracing::info!(expired, blobs, files, "registry housekeeping");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use nimbus_iam::{IamAuthorizer, IamStore};
    use nimbus_storage::SqliteStore;
    use time::OffsetDateTime;

    use super::*;

    #[test]
    fn anonymous_pulls_are_judged_by_iam_with_the_callers_address() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(SqliteStore::open(&dir.path().join("meta.db")).unwrap());
        let credentials =
            Arc::new(CredentialStore::load(meta.clone(), OffsetDateTime::now_utc()).unwrap());
        let iam = Arc::new(IamStore::new(meta.clone(), "000000000000"));
        let blobs = Arc::new(nimbus_storage::FsBlobStore::open(&dir.path().join("blobs")).unwrap());
        let registry = Registry::open(
            meta,
            blobs,
            &dir.path().join("registry"),
            credentials,
            "000000000000",
            "us-east-1",
            Arc::new(IamAuthorizer::new(iam)),
        )
        .unwrap();
        let repo = |policy: &str| RepoRecord {
            name: "app".into(),
            created_at: 0.0,
            tag_mutability: "MUTABLE".into(),
            scan_on_push: false,
            policy: Some(policy.to_owned()),
            lifecycle: None,
            tags: Default::default(),
        };
        let office = repo(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"],"Condition":{"IpAddress":{"aws:SourceIp":"127.0.0.0/8"}}}}"#,
        );
        let pull = |ip: &str, action: &str, repo: &RepoRecord| {
            let origin = Origin {
                ip: ip.parse().ok(),
                secure: false,
            };
            registry.permits(None, origin, action, repo)
        };
        assert!(pull("127.0.0.1", "ecr:BatchGetImage", &office));
        assert!(!pull("203.0.113.9", "ecr:BatchGetImage", &office));
        assert!(!pull("127.0.0.1", "ecr:PutImage", &office));
        // NotAction: a Deny of everything but pulls leaves pulls to the Allow.
        let pull_only = repo(
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"ecr:*"},{"Effect":"Deny","Principal":"*","NotAction":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}]}"#,
        );
        assert!(pull("127.0.0.1", "ecr:BatchGetImage", &pull_only));
        assert!(!pull("127.0.0.1", "ecr:InitiateLayerUpload", &pull_only));
        // The account root is not subject to the repository policy.
        let root = Principal::root("000000000000");
        assert!(registry.permits(Some(&root), Origin::default(), "ecr:PutImage", &pull_only));
    }
}
