//! Container image functions (`PackageType` Image): the image a function names is
//! pinned by digest when its code is set, unpacked when the function settles, and
//! becomes the whole root of its sandboxes, whose program is the image's entrypoint
//! and command (or `ImageConfig`'s).

use std::path::PathBuf;

use nimbus_auth::Principal;
use nimbus_storage::OciDigest;
use serde::{Deserialize, Serialize};

use crate::model::ImageConfig;

/// Images from nimbus's registry, as Lambda needs them.
pub trait FunctionImages: Send + Sync {
    /// The digest of the manifest `uri` names now, if `caller` may pull it
    /// (`ecr:BatchGetImage`, `ecr:GetDownloadUrlForLayer`); why not otherwise.
    fn resolve_as(&self, caller: &Principal, uri: &str) -> Result<OciDigest, ImageRefused>;
    /// The image `uri` names, its layers unpacked.
    fn unpack(&self, uri: &str) -> Result<UnpackedImage, String>;
}

/// Why a function cannot have an image.
#[derive(Debug)]
pub enum ImageRefused {
    /// The caller may not pull it; IAM's reason.
    AccessDenied(String),
    /// It does not exist (or cannot be read); the registry's reason.
    Missing(String),
}

/// An image ready to root a sandbox.
#[derive(Debug, Clone)]
pub struct UnpackedImage {
    /// Unpacked layers, bottom first.
    pub layers: Vec<PathBuf>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value` pairs.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
}

/// The image of a function or version: as named, and pinned to a digest (a parsed
/// one, stored and read back as text, so a record cannot carry a path trick).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageCode {
    pub uri: String,
    pub resolved_uri: String,
    pub digest: OciDigest,
}

impl ImageCode {
    pub fn new(uri: &str, digest: OciDigest) -> Self {
        // `host/repo:tag` or `host/repo@digest` → `host/repo@<digest>`.
        let (prefix, last) = uri.rsplit_once('/').unwrap_or(("", uri));
        let repo = last.split(['@', ':']).next().unwrap_or(last);
        let base = if prefix.is_empty() {
            repo.to_owned()
        } else {
            format!("{prefix}/{repo}")
        };
        Self {
            uri: uri.to_owned(),
            resolved_uri: format!("{base}@{digest}"),
            digest,
        }
    }

    /// `CodeSha256` as Lambda reports it for an image: the digest's hex.
    pub fn code_sha256(&self) -> String {
        self.digest.hex().to_owned()
    }
}

/// What an image function's sandbox runs: the program, its arguments, its working
/// directory, with `ImageConfig` overriding the image's settings.
pub fn program(
    image: &UnpackedImage,
    config: Option<&ImageConfig>,
) -> Option<(String, Vec<String>, String)> {
    let entrypoint = config
        .and_then(|c| c.entry_point.clone())
        .unwrap_or_else(|| image.entrypoint.clone());
    let command = config
        .and_then(|c| c.command.clone())
        .unwrap_or_else(|| image.cmd.clone());
    let mut argv = entrypoint.into_iter().chain(command);
    let program = argv.next()?;
    let workdir = config
        .and_then(|c| c.working_directory.clone())
        .or_else(|| image.working_dir.clone())
        .unwrap_or_else(|| "/".to_owned());
    Some((program, argv.collect(), workdir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_pinned_by_digest() {
        let digest = OciDigest::sha256(b"manifest");
        let pinned = ImageCode::new("127.0.0.1:4566/lambda/app:v1", digest.clone());
        assert_eq!(
            pinned.resolved_uri,
            format!("127.0.0.1:4566/lambda/app@{digest}")
        );
        assert_eq!(pinned.code_sha256(), digest.hex());
        let by_digest = ImageCode::new(&format!("repo@{digest}"), digest.clone());
        assert_eq!(by_digest.resolved_uri, format!("repo@{digest}"));
        // A stored record naming a path instead of a digest does not load.
        let mut stored = serde_json::to_value(&pinned).unwrap();
        stored["digest"] = "tmp/../../../../etc".into();
        assert!(serde_json::from_value::<ImageCode>(stored).is_err());
    }

    #[test]
    fn image_config_overrides_the_image() {
        let image = UnpackedImage {
            layers: Vec::new(),
            entrypoint: vec![
                "/usr/bin/python3".into(),
                "-m".into(),
                "awslambdaric".into(),
            ],
            cmd: vec!["app.handler".into()],
            env: Vec::new(),
            working_dir: Some("/var/task".into()),
        };
        let (started, args, workdir) = program(&image, None).unwrap();
        assert_eq!(started, "/usr/bin/python3");
        assert_eq!(args, ["-m", "awslambdaric", "app.handler"]);
        assert_eq!(workdir, "/var/task");
        let config = ImageConfig {
            entry_point: None,
            command: Some(vec!["app.other".into()]),
            working_directory: Some("/srv".into()),
        };
        let (_, args, workdir) = program(&image, Some(&config)).unwrap();
        assert_eq!(args, ["-m", "awslambdaric", "app.other"]);
        assert_eq!(workdir, "/srv");
        let empty = UnpackedImage {
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            ..image
        };
        assert!(program(&empty, None).is_none());
    }
}
