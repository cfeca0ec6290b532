//! The image engine: an image reference resolved in nimbus's own registry (the
//! platform's manifest picked from an index), and its layers unpacked once each into
//! content-addressed snapshots that every container of the image shares as overlayfs
//! lower layers. A snapshot is named only by a parsed [`OciDigest`] and filled only
//! through [`layer::unpack`], which cannot write outside it.

mod layer;

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nimbus_auth::Principal;
use nimbus_engine::confined::ConfinedDir;
use nimbus_registry::Registry;
use nimbus_registry::names::{OciDigest, Reference};
use nimbus_registry::store::ManifestRecord;
use nimbus_storage::Blob;
use serde_json::Value;

pub use layer::{Limits, unpack as unpack_layer};

/// What a container needs of its image.
#[derive(Debug, Clone)]
pub struct Image {
    pub digest: OciDigest,
    /// Snapshot directories, lowest layer first.
    pub layers: Vec<PathBuf>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// Where an image reference points in nimbus's registry: `repo[:tag|@digest]`, with
/// or without a registry host in front (`127.0.0.1:4566/`, `<account>.dkr.ecr...`).
fn split(reference: &str) -> Result<(String, String), String> {
    let path = match reference.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') || host == "localhost" => {
            rest
        }
        _ => reference,
    };
    if let Some((repo, digest)) = path.split_once('@') {
        return Ok((repo.to_owned(), digest.to_owned()));
    }
    match path.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => Ok((repo.to_owned(), tag.to_owned())),
        _ => Ok((path.to_owned(), "latest".to_owned())),
    }
}

/// The most of an image config read (real ones are a few KiB).
const MAX_CONFIG: u64 = 4 << 20;

fn parse_digest(text: &str) -> Result<OciDigest, String> {
    text.parse()
        .map_err(|err: nimbus_registry::names::DigestError| err.to_string())
}

/// The digest a manifest's descriptor (its config or a layer) names, parsed before
/// anything uses it.
fn descriptor_digest(descriptor: &Value) -> Result<OciDigest, String> {
    let text = descriptor["digest"]
        .as_str()
        .ok_or("a manifest descriptor has no digest")?;
    parse_digest(text)
}

/// An image from its manifest's digest, its unpacked layers and its config.
fn image_of(digest: OciDigest, layers: Vec<PathBuf>, config: &str) -> Result<Image, String> {
    let config: Value = serde_json::from_str(config).map_err(|err| err.to_string())?;
    let settings = &config["config"];
    Ok(Image {
        digest,
        layers,
        entrypoint: strings(&settings["Entrypoint"]),
        cmd: strings(&settings["Cmd"]),
        env: strings(&settings["Env"]),
        working_dir: settings["WorkingDir"]
            .as_str()
            .filter(|d| !d.is_empty())
            .map(str::to_owned),
        user: settings["User"]
            .as_str()
            .filter(|u| !u.is_empty())
            .map(str::to_owned),
    })
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Tells apart the staging directories of layers unpacked at the same time.
static STAGING: AtomicU64 = AtomicU64::new(0);

pub struct Images {
    registry: std::sync::Arc<Registry>,
    snapshots: PathBuf,
    limits: Limits,
    /// The registry hosts that name nimbus's own registry (its edge address, ECR's
    /// host for its account); other hosts are pulled from over the network.
    own_hosts: std::sync::OnceLock<Vec<String>>,
}

impl Images {
    pub fn new(
        registry: std::sync::Arc<Registry>,
        dir: &Path,
        limits: Limits,
    ) -> std::io::Result<Self> {
        let snapshots = dir.join("snapshots");
        // Half-unpacked layers a crash left.
        let _ = fs::remove_dir_all(snapshots.join("tmp"));
        fs::create_dir_all(snapshots.join("tmp"))?;
        Ok(Self {
            registry,
            snapshots,
            limits,
            own_hosts: std::sync::OnceLock::new(),
        })
    }

    /// Says which registry hosts are this server's own, once it listens.
    pub fn serve_as(&self, hosts: Vec<String>) {
        let _ = self.own_hosts.set(hosts);
    }

    /// The registry host a reference names, unless it is this server's own.
    fn remote_host<'a>(&self, reference: &'a str) -> Option<&'a str> {
        let (host, _) = reference.split_once('/')?;
        let is_host = host.contains('.') || host.contains(':') || host == "localhost";
        let own = self
            .own_hosts
            .get()
            .is_some_and(|hosts| hosts.iter().any(|h| h.eq_ignore_ascii_case(host)));
        (is_host && !own).then_some(host)
    }

    fn record(&self, repo: &str, reference: &str) -> Result<ManifestRecord, String> {
        let parsed =
            Reference::parse(reference).ok_or_else(|| format!("invalid reference {reference}"))?;
        self.registry
            .store
            .resolve(repo, &parsed)
            .map_err(|err| err.to_string())?
            .ok_or_else(|| format!("{repo}:{reference} not found"))
    }

    /// The repository and the digest of the manifest (or index) `reference` names now,
    /// in this server's registry.
    pub fn resolve(&self, reference: &str) -> Result<(String, OciDigest), String> {
        if let Some(host) = self.remote_host(reference) {
            return Err(format!("{host} is not this server's registry"));
        }
        let (repo, tag) = split(reference)?;
        let record = self.record(&repo, &tag)?;
        Ok((repo, parse_digest(&record.digest)?))
    }

    /// A manifest (or index) and its digest.
    fn manifest(&self, repo: &str, reference: &str) -> Result<(OciDigest, Value), String> {
        let store = &self.registry.store;
        let record = self.record(repo, reference)?;
        let bytes = store
            .manifest_bytes(&record)
            .map_err(|err| err.to_string())?;
        let manifest = serde_json::from_slice(&bytes).map_err(|err| err.to_string())?;
        Ok((parse_digest(&record.digest)?, manifest))
    }

    fn blob(&self, repo: &str, digest: &OciDigest) -> Result<Blob, String> {
        let store = &self.registry.store;
        let record = store
            .repo_blob(repo, digest)
            .map_err(|err| err.to_string())?
            .ok_or_else(|| format!("blob {digest} not found in {repo}"))?;
        store.open_blob(&record).map_err(|err| err.to_string())
    }

    /// Checks that `puller` may pull `reference` from this server's registry
    /// (another registry is pulled from anonymously).
    pub fn authorize_pull(&self, puller: &Principal, reference: &str) -> Result<(), String> {
        if self.remote_host(reference).is_some() {
            return Ok(());
        }
        let (repo, _) = split(reference)?;
        self.registry.authorize_pull(puller, &repo)
    }

    /// [`Images::pull`] on behalf of `puller` (an ECS task's execution role), who must
    /// be allowed to pull from the repository.
    pub fn pull_as(&self, puller: &Principal, reference: &str) -> Result<Image, String> {
        self.authorize_pull(puller, reference)?;
        self.pull(reference)
    }

    /// Resolves `reference` for linux/amd64 and makes sure its layers are unpacked;
    /// from this server's registry in-process, from any other over the network. Not
    /// authorized: for an image whose pull was authorized when it was pinned (a
    /// function's image, checked when its code was set), or pulled by this node for
    /// itself (a task without an execution role).
    pub fn pull(&self, reference: &str) -> Result<Image, String> {
        if let Some(host) = self.remote_host(reference) {
            return self.pull_remote(reference, host);
        }
        let (repo, tag) = split(reference)?;
        let (mut digest, mut manifest) = self.manifest(&repo, &tag)?;
        if let Some(entries) = manifest["manifests"].as_array() {
            let chosen = entries
                .iter()
                .find(|m| {
                    m["platform"]["os"] == "linux" && m["platform"]["architecture"] == "amd64"
                })
                .and_then(|m| m["digest"].as_str())
                .ok_or("the image index has no linux/amd64 manifest")?
                .to_owned();
            (digest, manifest) = self.manifest(&repo, &chosen)?;
        }
        let config_digest = descriptor_digest(&manifest["config"])?;
        let mut config = String::new();
        self.blob(&repo, &config_digest)?
            .reader
            .take(MAX_CONFIG)
            .read_to_string(&mut config)
            .map_err(|err| err.to_string())?;
        let mut layers = Vec::new();
        for layer in manifest["layers"].as_array().into_iter().flatten() {
            let layer_digest = descriptor_digest(layer)?;
            let media_type = layer["mediaType"].as_str().unwrap_or_default();
            layers.push(self.snapshot(&layer_digest, media_type, || {
                self.blob(&repo, &layer_digest)
            })?);
        }
        image_of(digest, layers, &config)
    }

    /// Pulls from another registry with `oci-client` (anonymously; plain HTTP to a
    /// loopback host), each layer downloaded (its digest checked) only when it has no
    /// snapshot yet.
    fn pull_remote(&self, reference: &str, host: &str) -> Result<Image, String> {
        use oci_client::client::{ClientConfig, ClientProtocol, linux_amd64_resolver};
        let runtime = tokio::runtime::Handle::try_current().map_err(|err| err.to_string())?;
        let parsed: oci_client::Reference = reference
            .parse()
            .map_err(|err| format!("invalid image reference {reference}: {err}"))?;
        let loopback =
            host.starts_with("localhost") || host.starts_with("127.") || host.starts_with("[::1]");
        let client = oci_client::Client::new(ClientConfig {
            protocol: if loopback {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            platform_resolver: Some(Box::new(linux_amd64_resolver)),
            ..Default::default()
        });
        let auth = oci_client::secrets::RegistryAuth::Anonymous;
        let (manifest, digest, config) = runtime
            .block_on(client.pull_manifest_and_config(&parsed, &auth))
            .map_err(|err| err.to_string())?;
        let digest = parse_digest(&digest)?;
        let mut layers = Vec::new();
        for layer in &manifest.layers {
            let layer_digest = parse_digest(&layer.digest)?;
            if layer.size < 0 || layer.size as u64 > self.limits.layer_bytes {
                return Err(format!("layer {layer_digest} is {} bytes", layer.size));
            }
            layers.push(self.snapshot(&layer_digest, &layer.media_type, || {
                let path = self
                    .snapshots
                    .join("tmp")
                    .join(format!("blob-{}", STAGING.fetch_add(1, Ordering::Relaxed)));
                let downloaded = runtime.block_on(async {
                    let file = tokio::fs::File::create(&path)
                        .await
                        .map_err(|err| err.to_string())?;
                    let mut file = Capped {
                        file,
                        left: layer.size as u64,
                    };
                    client
                        .pull_blob(&parsed, layer, &mut file)
                        .await
                        .map_err(|err| err.to_string())?;
                    tokio::io::AsyncWriteExt::flush(&mut file)
                        .await
                        .map_err(|err| err.to_string())
                });
                let file = downloaded.and_then(|()| {
                    let file = fs::File::open(&path).map_err(|e| e.to_string())?;
                    let len = file.metadata().map_err(|e| e.to_string())?.len();
                    Ok(Blob {
                        len,
                        reader: Box::new(file),
                    })
                });
                // Read through the open file; nothing is left behind.
                let _ = fs::remove_file(&path);
                file
            })?);
        }
        image_of(digest, layers, &config)
    }

    /// Removes the least recently used snapshots no container or sandbox uses (nor
    /// used within `grace`) until the cache holds at most `limit` bytes; how many it
    /// removed. `in_use` names the snapshots that must stay.
    pub fn evict(
        &self,
        limit: u64,
        grace: std::time::Duration,
        in_use: &HashSet<PathBuf>,
    ) -> usize {
        evict(&self.snapshots, limit, grace, in_use)
    }

    /// The snapshot of one layer, unpacked on first use: into a temporary directory,
    /// synced, and renamed into place, so a crash never leaves half a snapshot.
    fn snapshot(
        &self,
        digest: &OciDigest,
        media_type: &str,
        blob: impl FnOnce() -> Result<Blob, String>,
    ) -> Result<PathBuf, String> {
        let name = digest.file_name();
        let target = self.snapshots.join(&name);
        // Its last use: the cache evicts the least recently used first.
        let stamp = self.snapshots.join(format!("{name}.used"));
        if target.is_dir() {
            let touched = fs::OpenOptions::new()
                .append(true)
                .open(&stamp)
                .and_then(|f| f.set_modified(std::time::SystemTime::now()));
            if touched.is_ok() {
                return Ok(target);
            }
            // Eviction began removing it.
            let _ = fs::remove_dir_all(&target);
        }
        let staging = self.snapshots.join("tmp").join(format!(
            "{name}-{}",
            STAGING.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir_all(&staging).map_err(|err| err.to_string())?;
        let unpacked = self
            .unpack_into(&staging, media_type, blob)
            .and_then(|size| {
                // The stamp is synced with the snapshot, before the rename makes it count.
                let mut file = fs::File::create(&stamp).map_err(|err| err.to_string())?;
                std::io::Write::write_all(&mut file, size.to_string().as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|err| err.to_string())
            });
        if let Err(err) = unpacked {
            let _ = fs::remove_dir_all(&staging);
            return Err(format!("unpacking layer {digest}: {err}"));
        }
        let renamed = match fs::rename(&staging, &target) {
            Ok(()) => Ok(target),
            // Unpacked at the same time by another task: theirs is as good.
            Err(_) if target.is_dir() => {
                let _ = fs::remove_dir_all(&staging);
                Ok(target)
            }
            Err(err) => Err(err.to_string()),
        }?;
        fs::File::open(&self.snapshots)
            .and_then(|dir| dir.sync_all())
            .map_err(|err| err.to_string())?;
        Ok(renamed)
    }

    /// Unpacks a layer blob of `media_type` into `staging`; the bytes of its files.
    fn unpack_into(
        &self,
        staging: &Path,
        media_type: &str,
        blob: impl FnOnce() -> Result<Blob, String>,
    ) -> Result<u64, String> {
        let Blob {
            len: stored,
            reader: blob,
        } = blob()?;
        let reader: Box<dyn Read> = if media_type.ends_with("gzip") {
            // Multi-member: parallel compressors (umoci's, pigz) write several gzip members.
            Box::new(flate2::read::MultiGzDecoder::new(blob))
        } else if media_type.ends_with("tar") || media_type.is_empty() {
            Box::new(blob)
        } else {
            return Err(format!("layers of type {media_type} are not supported"));
        };
        layer::unpack(reader, stored, staging, &self.limits).map_err(|err| err.to_string())
    }
}

/// A file inside an image, as its root filesystem shows it: the topmost of `layers`
/// (bottom first) that has it, each looked up inside its own snapshot (a symlink
/// there never leads to the host). A whiteout or anything but a regular file ends
/// the search; at most `limit` bytes.
pub fn read_image_file(
    layers: &[PathBuf],
    path: &str,
    limit: u64,
) -> Result<Option<Vec<u8>>, String> {
    for layer in layers.iter().rev() {
        let root = ConfinedDir::open(layer).map_err(|err| err.to_string())?;
        let inside = Path::new(path.trim_start_matches('/'));
        match root.read(inside, limit) {
            Ok(Some(bytes)) => return Ok(Some(bytes)),
            Ok(None) if root.exists(inside) => return Ok(None),
            Ok(None) => {}
            Err(err) => return Err(format!("reading {path} of the image: {err}")),
        }
    }
    Ok(None)
}

/// A download that fails past the size its descriptor declared: the digest is only
/// checked at the end, and a registry may send without end.
struct Capped {
    file: tokio::fs::File,
    left: u64,
}

impl tokio::io::AsyncWrite for Capped {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if buf.len() as u64 > self.left {
            return std::task::Poll::Ready(Err(std::io::Error::other(
                "the blob is larger than its descriptor says",
            )));
        }
        let written = std::pin::Pin::new(&mut self.file).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = written {
            self.left -= n as u64;
        }
        written
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

/// See [`Images::evict`].
fn evict(
    snapshots: &Path,
    limit: u64,
    grace: std::time::Duration,
    in_use: &HashSet<PathBuf>,
) -> usize {
    let Ok(entries) = fs::read_dir(snapshots) else {
        return 0;
    };
    let mut cached: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            let name = path
                .file_name()?
                .to_str()?
                .strip_suffix(".used")?
                .to_owned();
            let size = fs::read_to_string(&path).ok()?.trim().parse().ok()?;
            let used = entry.metadata().and_then(|m| m.modified()).ok()?;
            Some((used, size, snapshots.join(name)))
        })
        .collect();
    let mut total: u64 = cached.iter().map(|(_, size, _)| size).sum();
    cached.sort();
    let now = std::time::SystemTime::now();
    let mut removed = 0;
    for (used, size, snapshot) in cached {
        if total <= limit {
            break;
        }
        let recent = now.duration_since(used).is_ok_and(|age| age < grace);
        if recent || in_use.contains(&snapshot) {
            continue;
        }
        // The stamp goes first: a half-removed snapshot is unpacked afresh.
        if fs::remove_file(snapshot.with_extension("used")).is_ok() {
            let _ = fs::remove_dir_all(&snapshot);
            total -= size;
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_removes_the_least_recently_used_snapshots_nobody_uses() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = dir.path().join("snapshots");
        fs::create_dir_all(&snapshots).unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
            fs::create_dir_all(snapshots.join(name)).unwrap();
            let stamp = snapshots.join(format!("{name}.used"));
            fs::write(&stamp, "100").unwrap();
            let used = old + std::time::Duration::from_secs(i as u64);
            fs::File::options()
                .append(true)
                .open(&stamp)
                .unwrap()
                .set_modified(used)
                .unwrap();
        }
        let in_use: HashSet<PathBuf> = [snapshots.join("a")].into();
        let grace = std::time::Duration::from_secs(60);
        assert_eq!(
            evict(&snapshots, 400, grace, &in_use),
            0,
            "within the limit"
        );
        assert_eq!(evict(&snapshots, 200, grace, &in_use), 2);
        // a is in use; b and c were the least recently used of the rest.
        assert!(snapshots.join("a").exists() && snapshots.join("d").exists());
        assert!(!snapshots.join("b").exists() && !snapshots.join("c").exists());
        let fresh = snapshots.join("d.used");
        fs::File::options()
            .append(true)
            .open(&fresh)
            .unwrap()
            .set_modified(std::time::SystemTime::now())
            .unwrap();
        assert_eq!(
            evict(&snapshots, 0, grace, &in_use),
            0,
            "d was just used, a is in use"
        );
    }

    #[test]
    fn references_name_a_repository_and_a_tag_or_digest() {
        assert_eq!(
            split("127.0.0.1:4566/web:v1").unwrap(),
            ("web".into(), "v1".into())
        );
        assert_eq!(split("web").unwrap(), ("web".into(), "latest".into()));
        assert_eq!(
            split("000000000000.dkr.ecr.us-east-1.amazonaws.com/team/web@sha256:ab").unwrap(),
            ("team/web".into(), "sha256:ab".into())
        );
        assert_eq!(
            split("team/web:2").unwrap(),
            ("team/web".into(), "2".into())
        );
    }
}
