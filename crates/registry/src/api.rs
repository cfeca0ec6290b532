//! The ECR API (json-1.1, `AmazonEC2ContainerRegistry_V20150921`), with shapes and
//! errors from botocore's `ecr` model, over the same store `/v2/` serves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Response, StatusCode};
use nimbus_auth::authz::Access;
use nimbus_auth::policy::{Policy, PolicyKind};
use nimbus_edge::protocol::json11;
use nimbus_edge::{
    Authorization, AwsError, Check, NamedOperation, Operation, OperationDoc, RequestContext,
    Service, ServiceDescriptor, ServiceRequest, catalog, named,
};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::Registry;
use crate::access::{self, LOGIN_TOKEN_SECS};
use crate::distribution::DOWNLOAD_TOKEN;
use crate::lifecycle;
use crate::names::{self, OciDigest, Reference};
use crate::store::{ManifestRecord, RegistryError, RepoRecord, now};

/// What `InitiateLayerUpload` tells clients to send per part.
const PART_SIZE: u64 = 10 << 20;

macro_rules! operations {
    ($($name:ident => $authorization:expr),* $(,)?) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Op { $($name),* }

        impl Op {
            /// The routing table, in the order of the variants.
            const TABLE: &[NamedOperation] =
                &[$(named(stringify!($name), $authorization)),*];

            fn from_name(name: &str) -> Option<Self> {
                match name { $(stringify!($name) => Some(Op::$name),)* _ => None }
            }

            fn entry(self) -> &'static NamedOperation {
                &Self::TABLE[self as usize]
            }
        }
    };
}

/// The repository ARN, as AWS's authorization reference writes it.
const REPOSITORY: &str = "arn:${Partition}:ecr:${Region}:${Account}:repository/${RepositoryName}";

const fn repository(action: &'static str) -> Authorization {
    Authorization::new(action, REPOSITORY)
}

operations!(
    CreateRepository => repository("ecr:CreateRepository"),
    DescribeRepositories => repository("ecr:DescribeRepositories").checked_in_operation(),
    DeleteRepository => repository("ecr:DeleteRepository"),
    ListImages => repository("ecr:ListImages"),
    DescribeImages => repository("ecr:DescribeImages"),
    BatchGetImage => repository("ecr:BatchGetImage"),
    BatchDeleteImage => repository("ecr:BatchDeleteImage"),
    PutImage => repository("ecr:PutImage"),
    GetAuthorizationToken => Authorization::new("ecr:GetAuthorizationToken", "*"),
    PutImageTagMutability => repository("ecr:PutImageTagMutability"),
    PutImageScanningConfiguration => repository("ecr:PutImageScanningConfiguration"),
    SetRepositoryPolicy => repository("ecr:SetRepositoryPolicy"),
    GetRepositoryPolicy => repository("ecr:GetRepositoryPolicy"),
    DeleteRepositoryPolicy => repository("ecr:DeleteRepositoryPolicy"),
    PutLifecyclePolicy => repository("ecr:PutLifecyclePolicy"),
    GetLifecyclePolicy => repository("ecr:GetLifecyclePolicy"),
    DeleteLifecyclePolicy => repository("ecr:DeleteLifecyclePolicy"),
    StartLifecyclePolicyPreview => repository("ecr:StartLifecyclePolicyPreview"),
    GetLifecyclePolicyPreview => repository("ecr:GetLifecyclePolicyPreview"),
    BatchCheckLayerAvailability => repository("ecr:BatchCheckLayerAvailability"),
    InitiateLayerUpload => repository("ecr:InitiateLayerUpload"),
    UploadLayerPart => repository("ecr:UploadLayerPart"),
    CompleteLayerUpload => repository("ecr:CompleteLayerUpload"),
    GetDownloadUrlForLayer => repository("ecr:GetDownloadUrlForLayer"),
    TagResource => repository("ecr:TagResource"),
    UntagResource => repository("ecr:UntagResource"),
    ListTagsForResource => repository("ecr:ListTagsForResource"),
);

pub struct EcrCall {
    op: Op,
    input: Value,
}

impl Operation for EcrCall {
    fn name(&self) -> &'static str {
        self.op.entry().name
    }

    fn authorization(&self) -> Authorization {
        self.op.entry().authorization
    }
}

pub struct EcrApi {
    registry: Arc<Registry>,
    /// Policies under preview, by repository.
    previews: Mutex<HashMap<String, String>>,
}

impl EcrApi {
    pub fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            previews: Mutex::new(HashMap::new()),
        }
    }
}

fn error(code: &'static str, message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::BAD_REQUEST, code, message)
}

fn invalid(message: impl Into<String>) -> AwsError {
    error("InvalidParameterException", message)
}

impl From<RegistryError> for AwsError {
    fn from(err: RegistryError) -> Self {
        use RegistryError as E;
        let message = err.to_string();
        match err {
            E::RepositoryNotFound(_) => error("RepositoryNotFoundException", message),
            E::RepositoryExists(_) => error("RepositoryAlreadyExistsException", message),
            E::RepositoryNotEmpty(_) => error("RepositoryNotEmptyException", message),
            E::TagImmutable { .. } => error("ImageTagAlreadyExistsException", message),
            E::ImageExists { .. } => error("ImageAlreadyExistsException", message),
            E::ManifestBlobUnknown(_) | E::BlobUnknown(_) => {
                error("LayersNotFoundException", message)
            }
            E::ManifestUnknown(_) => error("ImageNotFoundException", message),
            E::UploadUnknown => error("UploadNotFoundException", message),
            E::UploadInvalid(_) => error("InvalidLayerPartException", message),
            E::DigestInvalid(_) => error("InvalidLayerException", message),
            E::TooManyUploads => error("LimitExceededException", message),
            E::NotFound(_) => error("ImageNotFoundException", message),
            E::NameInvalid(_)
            | E::TagInvalid(_)
            | E::ManifestInvalid(_)
            | E::InvalidParameter(_) => invalid(message),
            E::Internal(detail) => {
                tracing::error!(%detail, "registry failure");
                AwsError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ServerException",
                    "internal error",
                )
            }
        }
    }
}

fn text<'a>(input: &'a Value, field: &str) -> Result<&'a str, AwsError> {
    input[field]
        .as_str()
        .ok_or_else(|| invalid(format!("1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null")))
}

fn repo_name(input: &Value) -> Result<&str, AwsError> {
    let name = text(input, "repositoryName")?;
    if !names::valid_repository(name) {
        return Err(invalid(format!(
            "Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must satisfy regular expression '(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*' and length 2-256' ({name:?})"
        )));
    }
    Ok(name)
}

fn tag_list(tags: &Value) -> Result<Vec<(String, String)>, AwsError> {
    tags.as_array()
        .into_iter()
        .flatten()
        .map(|tag| match (tag["Key"].as_str(), tag["Value"].as_str()) {
            (Some(key), Some(value))
                if !key.is_empty() && key.len() <= 128 && value.len() <= 256 =>
            {
                Ok((key.to_owned(), value.to_owned()))
            }
            _ => Err(invalid(
                "each tag needs a Key (1-128 characters) and a Value (up to 256)",
            )),
        })
        .collect()
}

fn mutability(input: &Value) -> Result<String, AwsError> {
    match input["imageTagMutability"].as_str().unwrap_or("MUTABLE") {
        value @ ("MUTABLE" | "IMMUTABLE") => Ok(value.to_owned()),
        other => Err(invalid(format!(
            "Invalid parameter at 'imageTagMutability' failed to satisfy constraint: 'Member must satisfy enum value set: [MUTABLE, IMMUTABLE]' ({other})"
        ))),
    }
}

/// A page of `items` from `nextToken` (an offset), at most `maxResults` (1-1000).
fn page<T: Clone>(input: &Value, items: &[T]) -> Result<(Vec<T>, Option<String>), AwsError> {
    let max = match input["maxResults"].as_u64() {
        None => 1000,
        Some(n @ 1..=1000) => n as usize,
        Some(_) => return Err(invalid("maxResults must be between 1 and 1000")),
    };
    let start = match input["nextToken"].as_str() {
        None => 0,
        Some(token) => token
            .parse::<usize>()
            .map_err(|_| invalid("Invalid NextToken"))?,
    };
    let end = (start + max).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((items.get(start..end).unwrap_or_default().to_vec(), next))
}

impl EcrApi {
    fn repository_json(&self, repo: &RepoRecord, ctx: &RequestContext) -> Value {
        let host = ctx.endpoint.trim_start_matches("http://");
        json!({
            "repositoryArn": self.registry.repository_arn(&repo.name),
            "registryId": self.registry.account_id,
            "repositoryName": repo.name,
            "repositoryUri": format!("{host}/{}", repo.name),
            "createdAt": repo.created_at,
            "imageTagMutability": repo.tag_mutability,
            "imageScanningConfiguration": { "scanOnPush": repo.scan_on_push },
            "encryptionConfiguration": { "encryptionType": "AES256" },
        })
    }

    fn image_id(manifest: &ManifestRecord, tag: Option<&str>) -> Value {
        let mut id = json!({ "imageDigest": manifest.digest });
        if let Some(tag) = tag {
            id["imageTag"] = tag.into();
        }
        id
    }

    /// The manifest an `imageId` names, or the failure entry ECR reports for it.
    fn find_image(
        &self,
        repo: &str,
        id: &Value,
    ) -> Result<(ManifestRecord, Option<String>), Value> {
        let failure = |code: &str, reason: &str| json!({ "imageId": id, "failureCode": code, "failureReason": reason });
        let tag = id["imageTag"].as_str();
        let digest = match id["imageDigest"].as_str() {
            Some(text) => Some(
                text.parse::<OciDigest>()
                    .map_err(|_| failure("InvalidImageDigest", "Invalid request parameters: image digest should satisfy the regex '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'"))?,
            ),
            None => None,
        };
        let store = &self.registry.store;
        let by_tag = match tag {
            Some(tag) => Some(
                store
                    .tag(repo, tag)
                    .ok()
                    .flatten()
                    .ok_or_else(|| failure("ImageNotFound", "Requested image not found"))?,
            ),
            None => None,
        };
        let digest = match (digest, by_tag) {
            (Some(digest), Some(tagged)) if digest != tagged => {
                return Err(failure(
                    "ImageTagDoesNotMatchDigest",
                    "Invalid request parameters: given tag does not map to the given digest",
                ));
            }
            (Some(digest), _) | (None, Some(digest)) => digest,
            (None, None) => {
                return Err(failure(
                    "MissingDigestAndTag",
                    "Invalid request parameters: both tag and digest cannot be null",
                ));
            }
        };
        let manifest = store
            .manifest(repo, &digest)
            .ok()
            .flatten()
            .ok_or_else(|| failure("ImageNotFound", "Requested image not found"))?;
        Ok((manifest, tag.map(str::to_owned)))
    }

    fn tags_by_digest(&self, repo: &str) -> Result<HashMap<String, Vec<String>>, AwsError> {
        let mut by_digest: HashMap<String, Vec<String>> = HashMap::new();
        for (tag, digest) in self.registry.store.tags(repo)? {
            by_digest.entry(digest).or_default().push(tag);
        }
        Ok(by_digest)
    }

    fn image_detail(&self, repo: &str, manifest: &ManifestRecord, tags: &[String]) -> Value {
        let mut detail = json!({
            "registryId": self.registry.account_id,
            "repositoryName": repo,
            "imageDigest": manifest.digest,
            "imageSizeInBytes": manifest.image_size,
            "imagePushedAt": manifest.pushed_at,
            "imageManifestMediaType": manifest.media_type,
        });
        if !tags.is_empty() {
            detail["imageTags"] = json!(tags);
        }
        if let Some(artifact) = &manifest.artifact_type {
            detail["artifactMediaType"] = artifact.clone().into();
        }
        if let Some(pulled) = manifest.last_pull {
            detail["lastRecordedPullTime"] = pulled.into();
        }
        detail
    }

    fn lifecycle_preview(&self, repo: &str, text: &str) -> Result<Value, AwsError> {
        let policy = lifecycle::parse(text)?;
        let images = lifecycle::images(&self.registry.store, repo)?;
        let results: Vec<Value> = lifecycle::evaluate(&policy, &images, now())
            .into_iter()
            .map(|(image, priority)| {
                json!({
                    "imageTags": image.tags,
                    "imageDigest": image.manifest.digest,
                    "imagePushedAt": image.manifest.pushed_at,
                    "action": { "type": "EXPIRE" },
                    "appliedRulePriority": priority,
                })
            })
            .collect();
        Ok(json!({
            "registryId": self.registry.account_id,
            "repositoryName": repo,
            "lifecyclePolicyText": text,
            "status": "COMPLETE",
            "summary": { "expiringImageTotalCount": results.len() },
            "previewResults": results,
        }))
    }

    /// A repository named by its ARN, for the tagging operations.
    fn repo_by_arn(&self, input: &Value) -> Result<String, AwsError> {
        let arn = text(input, "resourceArn")?;
        let prefix = format!(
            "arn:aws:ecr:{}:{}:repository/",
            self.registry.region, self.registry.account_id
        );
        arn.strip_prefix(&prefix).map(str::to_owned).ok_or_else(|| {
            invalid(format!(
                "Invalid parameter at 'resourceArn': {arn} is not a repository of this registry"
            ))
        })
    }

    fn handle_op(&self, ctx: &RequestContext, op: Op, input: &Value) -> Result<Value, AwsError> {
        let store = &self.registry.store;
        let registry_id = self.registry.account_id.as_str();
        Ok(match op {
            Op::CreateRepository => {
                let name = repo_name(input)?;
                let repo = store.create_repository(RepoRecord {
                    name: name.to_owned(),
                    created_at: now(),
                    tag_mutability: mutability(input)?,
                    scan_on_push: input["imageScanningConfiguration"]["scanOnPush"]
                        .as_bool()
                        .unwrap_or(false),
                    policy: None,
                    lifecycle: None,
                    tags: tag_list(&input["tags"])?.into_iter().collect(),
                })?;
                json!({ "repository": self.repository_json(&repo, ctx) })
            }
            Op::DescribeRepositories => {
                let repos = match input["repositoryNames"].as_array() {
                    Some(names) => names
                        .iter()
                        .map(|name| store.repository(name.as_str().unwrap_or_default()))
                        .collect::<Result<Vec<_>, _>>()?,
                    None => store.repositories()?,
                };
                let visible: Vec<RepoRecord> = repos
                    .into_iter()
                    .filter(|repo| {
                        let arn = self.registry.repository_arn(&repo.name);
                        let access = Access::new("ecr:DescribeRepositories", &arn)
                            .with_policy(repo.policy.as_deref());
                        ctx.authorize(&access).is_ok()
                    })
                    .collect();
                let (page, next) = page(input, &visible)?;
                let repositories: Vec<Value> = page
                    .iter()
                    .map(|repo| self.repository_json(repo, ctx))
                    .collect();
                json!({ "repositories": repositories, "nextToken": next })
            }
            Op::DeleteRepository => {
                let name = repo_name(input)?;
                store.repository(name)?;
                let repo =
                    store.delete_repository(name, input["force"].as_bool().unwrap_or(false))?;
                json!({ "repository": self.repository_json(&repo, ctx) })
            }
            Op::ListImages => {
                let name = repo_name(input)?;
                store.repository(name)?;
                let tags = self.tags_by_digest(name)?;
                let status = input["filter"]["tagStatus"].as_str().unwrap_or("ANY");
                let mut ids = Vec::new();
                for manifest in store.manifests(name)? {
                    let tagged = tags.get(&manifest.digest);
                    match (tagged, status) {
                        (Some(tagged), "TAGGED" | "ANY") => {
                            ids.extend(
                                tagged
                                    .iter()
                                    .map(|tag| Self::image_id(&manifest, Some(tag))),
                            );
                        }
                        (None, "UNTAGGED" | "ANY") => ids.push(Self::image_id(&manifest, None)),
                        _ => {}
                    }
                }
                let (page, next) = page(input, &ids)?;
                json!({ "imageIds": page, "nextToken": next })
            }
            Op::DescribeImages => {
                let name = repo_name(input)?;
                store.repository(name)?;
                let tags = self.tags_by_digest(name)?;
                let manifests = match input["imageIds"].as_array() {
                    Some(ids) => ids
                        .iter()
                        .map(|id| {
                            self.find_image(name, id).map(|(manifest, _)| manifest).map_err(|failure| {
                                error(
                                    "ImageNotFoundException",
                                    format!("The image with imageId {} does not exist within the repository with name '{name}' in the registry with id '{registry_id}'", failure["imageId"]),
                                )
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                    None => store.manifests(name)?,
                };
                let status = input["filter"]["tagStatus"].as_str().unwrap_or("ANY");
                let details: Vec<Value> = manifests
                    .iter()
                    .filter_map(|manifest| {
                        let tagged = tags.get(&manifest.digest).cloned().unwrap_or_default();
                        let keep = match status {
                            "TAGGED" => !tagged.is_empty(),
                            "UNTAGGED" => tagged.is_empty(),
                            _ => true,
                        };
                        keep.then(|| self.image_detail(name, manifest, &tagged))
                    })
                    .collect();
                let (page, next) = page(input, &details)?;
                json!({ "imageDetails": page, "nextToken": next })
            }
            Op::BatchGetImage => {
                let name = repo_name(input)?;
                store.repository(name)?;
                let accepted: Option<Vec<&str>> = input["acceptedMediaTypes"]
                    .as_array()
                    .map(|types| types.iter().filter_map(Value::as_str).collect());
                let (mut images, mut failures) = (Vec::new(), Vec::new());
                for id in input["imageIds"].as_array().into_iter().flatten() {
                    match self.find_image(name, id) {
                        Ok((manifest, tag)) => {
                            if accepted
                                .as_ref()
                                .is_some_and(|types| !types.contains(&manifest.media_type.as_str()))
                            {
                                failures.push(json!({ "imageId": id, "failureCode": "UnsupportedImageType", "failureReason": "The image's media type is not among the accepted ones" }));
                                continue;
                            }
                            let bytes = store.manifest_bytes(&manifest)?;
                            let _ = store.record_pull(name, &manifest);
                            images.push(json!({
                                "registryId": registry_id,
                                "repositoryName": name,
                                "imageId": Self::image_id(&manifest, tag.as_deref()),
                                "imageManifest": String::from_utf8_lossy(&bytes),
                                "imageManifestMediaType": manifest.media_type,
                            }));
                        }
                        Err(failure) => failures.push(failure),
                    }
                }
                json!({ "images": images, "failures": failures })
            }
            Op::BatchDeleteImage => {
                let name = repo_name(input)?;
                store.repository(name)?;
                let (mut deleted, mut failures) = (Vec::new(), Vec::new());
                for id in input["imageIds"].as_array().into_iter().flatten() {
                    match self.find_image(name, id) {
                        Ok((manifest, Some(tag))) if id["imageDigest"].is_null() => {
                            store.delete_tag(name, &tag)?;
                            deleted.push(Self::image_id(&manifest, Some(&tag)));
                        }
                        Ok((manifest, _)) => {
                            let digest: OciDigest =
                                manifest.digest.parse().map_err(|_| invalid("bad digest"))?;
                            store.delete_manifest(name, &digest)?;
                            deleted.push(Self::image_id(&manifest, None));
                        }
                        Err(failure) => failures.push(failure),
                    }
                }
                json!({ "imageIds": deleted, "failures": failures })
            }
            Op::PutImage => {
                let name = repo_name(input)?;
                let repo = store.repository(name)?;
                let manifest = text(input, "imageManifest")?;
                let tag = input["imageTag"].as_str();
                if let Some(tag) = tag
                    && !names::valid_tag(tag)
                {
                    return Err(invalid(format!("Invalid parameter at 'imageTag': {tag:?}")));
                }
                let computed = OciDigest::sha256(manifest.as_bytes());
                if let Some(given) = input["imageDigest"].as_str()
                    && given != computed.to_string()
                {
                    return Err(error(
                        "ImageDigestDoesNotMatchException",
                        format!(
                            "Provided digest {given} does not match the digest of the image manifest {computed}"
                        ),
                    ));
                }
                if let Some(tag) = tag
                    && store.tag(name, tag)? == Some(computed.clone())
                {
                    return Err(RegistryError::ImageExists {
                        digest: computed.to_string(),
                        tag: tag.to_owned(),
                    }
                    .into());
                }
                let reference = match tag {
                    Some(tag) => Reference::Tag(tag.to_owned()),
                    None => Reference::Digest(computed),
                };
                let media_type = input["imageManifestMediaType"].as_str();
                let pushed =
                    store.put_manifest(&repo, &reference, media_type, manifest.as_bytes())?;
                let record = store
                    .manifest(name, &pushed.digest)?
                    .ok_or_else(|| AwsError::internal(nimbus_edge::Protocol::Json11))?;
                json!({ "image": {
                    "registryId": registry_id,
                    "repositoryName": name,
                    "imageId": Self::image_id(&record, tag),
                    "imageManifest": manifest,
                    "imageManifestMediaType": record.media_type,
                }})
            }
            Op::GetAuthorizationToken => {
                let (token, expires) = self.registry.tokens.issue(
                    &ctx.caller.access_key_id,
                    LOGIN_TOKEN_SECS,
                    OffsetDateTime::now_utc(),
                );
                json!({ "authorizationData": [{
                    "authorizationToken": STANDARD.encode(format!("AWS:{token}")),
                    "expiresAt": expires,
                    "proxyEndpoint": ctx.endpoint,
                }]})
            }
            Op::PutImageTagMutability => {
                let name = repo_name(input)?;
                store.repository(name)?;
                let value = mutability(input)?;
                let repo = store.update_repository(name, |repo| {
                    repo.tag_mutability = value.clone();
                    Ok(())
                })?;
                json!({ "registryId": registry_id, "repositoryName": name, "imageTagMutability": repo.tag_mutability })
            }
            Op::PutImageScanningConfiguration => {
                let name = repo_name(input)?;
                store.repository(name)?;
                let scan = input["imageScanningConfiguration"]["scanOnPush"]
                    .as_bool()
                    .unwrap_or(false);
                store.update_repository(name, |repo| {
                    repo.scan_on_push = scan;
                    Ok(())
                })?;
                json!({ "registryId": registry_id, "repositoryName": name, "imageScanningConfiguration": { "scanOnPush": scan } })
            }
            Op::SetRepositoryPolicy => {
                let name = repo_name(input)?;
                store.repository(name)?;
                let policy = text(input, "policyText")?;
                // Parsed by the evaluator's own parser: a stored policy that did not
                // parse would deny every request on the repository.
                Policy::parse(policy, PolicyKind::Resource).map_err(|err| {
                    invalid(format!("Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid repository policy provided': {err}"))
                })?;
                store.update_repository(name, |repo| {
                    repo.policy = Some(policy.to_owned());
                    Ok(())
                })?;
                json!({ "registryId": registry_id, "repositoryName": name, "policyText": policy })
            }
            Op::GetRepositoryPolicy | Op::DeleteRepositoryPolicy => {
                let name = repo_name(input)?;
                let repo = store.repository(name)?;
                let policy = repo.policy.ok_or_else(|| {
                    error("RepositoryPolicyNotFoundException", format!("Repository policy does not exist for the repository with name '{name}' in the registry with id '{registry_id}'"))
                })?;
                if op == Op::DeleteRepositoryPolicy {
                    store.update_repository(name, |repo| {
                        repo.policy = None;
                        Ok(())
                    })?;
                }
                json!({ "registryId": registry_id, "repositoryName": name, "policyText": policy })
            }
            Op::PutLifecyclePolicy => {
                let name = repo_name(input)?;
                store.repository(name)?;
                let policy = text(input, "lifecyclePolicyText")?;
                lifecycle::parse(policy)?;
                store.update_repository(name, |repo| {
                    repo.lifecycle = Some(policy.to_owned());
                    Ok(())
                })?;
                json!({ "registryId": registry_id, "repositoryName": name, "lifecyclePolicyText": policy })
            }
            Op::GetLifecyclePolicy | Op::DeleteLifecyclePolicy => {
                let name = repo_name(input)?;
                let repo = store.repository(name)?;
                let policy = repo.lifecycle.ok_or_else(|| {
                    error("LifecyclePolicyNotFoundException", format!("Lifecycle policy does not exist for the repository with name '{name}' in the registry with id '{registry_id}'"))
                })?;
                if op == Op::DeleteLifecyclePolicy {
                    store.update_repository(name, |repo| {
                        repo.lifecycle = None;
                        Ok(())
                    })?;
                }
                json!({ "registryId": registry_id, "repositoryName": name, "lifecyclePolicyText": policy })
            }
            Op::StartLifecyclePolicyPreview => {
                let name = repo_name(input)?;
                let repo = store.repository(name)?;
                let policy = match input["lifecyclePolicyText"].as_str() {
                    Some(policy) => policy.to_owned(),
                    None => repo.lifecycle.ok_or_else(|| {
                        error("LifecyclePolicyNotFoundException", format!("Lifecycle policy does not exist for the repository with name '{name}' in the registry with id '{registry_id}'"))
                    })?,
                };
                lifecycle::parse(&policy)?;
                self.previews
                    .lock()
                    .expect("previews")
                    .insert(name.to_owned(), policy.clone());
                json!({ "registryId": registry_id, "repositoryName": name, "lifecyclePolicyText": policy, "status": "IN_PROGRESS" })
            }
            Op::GetLifecyclePolicyPreview => {
                let name = repo_name(input)?;
                store.repository(name)?;
                let policy = self.previews.lock().expect("previews").get(name).cloned().ok_or_else(|| {
                    error("LifecyclePolicyPreviewNotFoundException", format!("There is no dry run for the repository with name '{name}' in the registry with id '{registry_id}'"))
                })?;
                self.lifecycle_preview(name, &policy)?
            }
            Op::BatchCheckLayerAvailability => {
                let name = repo_name(input)?;
                store.repository(name)?;
                let (mut layers, mut failures) = (Vec::new(), Vec::new());
                for digest in input["layerDigests"].as_array().into_iter().flatten() {
                    let text = digest.as_str().unwrap_or_default();
                    match text.parse::<OciDigest>() {
                        Ok(parsed) => match store.repo_blob(name, &parsed)? {
                            Some(blob) => layers.push(json!({ "layerDigest": text, "layerAvailability": "AVAILABLE", "layerSize": blob.size })),
                            None => failures.push(json!({ "layerDigest": text, "failureCode": "MissingLayerDigest", "failureReason": "Layer does not exist" })),
                        },
                        Err(_) => failures.push(json!({ "layerDigest": text, "failureCode": "InvalidLayerDigest", "failureReason": "Invalid layer digest" })),
                    }
                }
                json!({ "layers": layers, "failures": failures })
            }
            Op::InitiateLayerUpload => {
                let name = repo_name(input)?;
                store.repository(name)?;
                let id = self
                    .registry
                    .start_upload(name, &ctx.caller.principal.arn())?;
                json!({ "uploadId": id, "partSize": PART_SIZE })
            }
            Op::GetDownloadUrlForLayer => {
                let name = repo_name(input)?;
                store.repository(name)?;
                let digest = text(input, "layerDigest")?;
                let parsed: OciDigest = digest
                    .parse()
                    .map_err(|_| invalid(format!("Invalid layer digest {digest}")))?;
                if store.repo_blob(name, &parsed)?.is_none() {
                    return Err(error(
                        "LayersNotFoundException",
                        format!("The image layer {digest} does not exist in the repository"),
                    ));
                }
                let (token, _) = self.registry.tokens.issue(
                    &ctx.caller.access_key_id,
                    access::BEARER_TOKEN_SECS,
                    OffsetDateTime::now_utc(),
                );
                json!({ "downloadUrl": format!("{}/v2/{name}/blobs/{digest}?{DOWNLOAD_TOKEN}={token}", ctx.endpoint), "layerDigest": digest })
            }
            Op::TagResource | Op::UntagResource => {
                let name = self.repo_by_arn(input)?;
                store.repository(&name)?;
                let added = tag_list(&input["tags"])?;
                let removed: Vec<String> = input["tagKeys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect();
                store.update_repository(&name, |repo| {
                    repo.tags.extend(added.iter().cloned());
                    for key in &removed {
                        repo.tags.remove(key);
                    }
                    if repo.tags.len() > 50 {
                        return Err(RegistryError::InvalidParameter(
                            "a repository has at most 50 tags".into(),
                        ));
                    }
                    Ok(())
                })?;
                json!({})
            }
            Op::ListTagsForResource => {
                let name = self.repo_by_arn(input)?;
                let repo = store.repository(&name)?;
                let tags: Vec<Value> = repo
                    .tags
                    .iter()
                    .map(|(k, v)| json!({ "Key": k, "Value": v }))
                    .collect();
                json!({ "tags": tags })
            }
            Op::UploadLayerPart | Op::CompleteLayerUpload => unreachable!("handled asynchronously"),
        })
    }

    async fn upload_part(&self, input: &Value) -> Result<Value, AwsError> {
        let name = repo_name(input)?;
        self.registry.store.repository(name)?;
        let id = text(input, "uploadId")?;
        let blob = STANDARD
            .decode(text(input, "layerPartBlob")?)
            .map_err(|_| invalid("layerPartBlob is not base64"))?;
        let first = input["partFirstByte"]
            .as_u64()
            .ok_or_else(|| invalid("partFirstByte is required"))?;
        let last = input["partLastByte"]
            .as_u64()
            .ok_or_else(|| invalid("partLastByte is required"))?;
        let mut upload = self.registry.upload(name, id).await?;
        if first != upload.offset || last + 1 != first + blob.len() as u64 {
            return Err(error(
                "InvalidLayerPartException",
                format!(
                    "The layer part's range {first}-{last} does not follow the upload's last byte received ({})",
                    upload.offset as i64 - 1
                ),
            ));
        }
        let offset =
            tokio::task::spawn_blocking(move || upload.write(&blob).map(|()| upload.offset))
                .await
                .map_err(|_| AwsError::internal(nimbus_edge::Protocol::Json11))??;
        Ok(
            json!({ "registryId": self.registry.account_id, "repositoryName": name, "uploadId": id, "lastByteReceived": offset.saturating_sub(1) }),
        )
    }

    async fn complete_upload(&self, input: &Value) -> Result<Value, AwsError> {
        let name = repo_name(input)?;
        self.registry.store.repository(name)?;
        let id = text(input, "uploadId")?;
        let digest = input["layerDigests"][0]
            .as_str()
            .ok_or_else(|| invalid("layerDigests needs one digest"))?;
        let parsed: OciDigest = digest.parse().map_err(|_| {
            error(
                "InvalidLayerException",
                format!("Invalid layer digest {digest}"),
            )
        })?;
        if self.registry.store.repo_blob(name, &parsed)?.is_some() {
            self.registry.end_upload(id);
            return Err(error(
                "LayerAlreadyExistsException",
                format!("The image layer {digest} already exists in the repository"),
            ));
        }
        let mut upload = self.registry.upload(name, id).await?;
        let registry = self.registry.clone();
        let outcome =
            tokio::task::spawn_blocking(move || registry.store.finish_upload(&mut upload, &parsed))
                .await
                .map_err(|_| AwsError::internal(nimbus_edge::Protocol::Json11))?;
        self.registry.end_upload(id);
        outcome?;
        Ok(
            json!({ "registryId": self.registry.account_id, "repositoryName": name, "uploadId": id, "layerDigest": digest }),
        )
    }
}

impl Service for EcrApi {
    type Operation = EcrCall;

    fn descriptor(&self) -> &'static ServiceDescriptor {
        &catalog::ECR
    }

    fn operations(&self) -> Vec<OperationDoc> {
        OperationDoc::named(Op::TABLE)
    }

    fn parse(&self, req: &ServiceRequest) -> Result<EcrCall, AwsError> {
        let name = json11::operation(req);
        let op = Op::from_name(name)
            .ok_or_else(|| AwsError::unknown_operation(nimbus_edge::Protocol::Json11, name))?;
        let input = json11::input(req)?;
        Ok(EcrCall { op, input })
    }

    async fn access(&self, _ctx: &RequestContext, call: &EcrCall) -> Result<Vec<Check>, AwsError> {
        let input = &call.input;
        let name = match call.op {
            Op::GetAuthorizationToken => return Ok(vec![Check::on("*")]),
            Op::TagResource | Op::UntagResource | Op::ListTagsForResource => {
                self.repo_by_arn(input)?
            }
            _ => repo_name(input)?.to_owned(),
        };
        // The repository's own policy takes part, as a resource policy. A missing
        // repository has none: the caller learns it is missing only once allowed.
        let policy = match call.op {
            Op::CreateRepository => None,
            _ => tokio::task::block_in_place(|| self.registry.store.repository(&name))
                .ok()
                .and_then(|repo| repo.policy),
        };
        Ok(vec![
            Check::on(self.registry.repository_arn(&name)).with_policy(policy),
        ])
    }

    async fn handle(
        &self,
        ctx: &RequestContext,
        call: EcrCall,
    ) -> Result<Response<Bytes>, AwsError> {
        let output = match call.op {
            Op::UploadLayerPart => self.upload_part(&call.input).await?,
            Op::CompleteLayerUpload => self.complete_upload(&call.input).await?,
            // Store calls wait for the disk; the server's runtime is multi-threaded.
            op => tokio::task::block_in_place(|| self.handle_op(ctx, op, &call.input))?,
        };
        Ok(json11::response(&output))
    }
}
