//! The S3 API (rest-xml) over [`Store`]: path-style and virtual-hosted-style
//! (`<bucket>.localhost`) addressing, bodies streamed both ways.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use md5::{Digest as _, Md5};
use nimbus_auth::authz::Access;
use nimbus_auth::policy::{Policy, PolicyKind};
use nimbus_edge::body::stream_reader;
use nimbus_edge::protocol::range::byte_range;
use nimbus_edge::protocol::xml::{self, XmlWriter};
use nimbus_edge::{
    Authorization, AwsError, Check, Operation, OperationDoc, Protocol, RequestContext,
    ServiceDescriptor, StreamBody, StreamingService, catalog,
};
use time::OffsetDateTime;
use time::format_description::well_known::{Rfc2822, Rfc3339};

use crate::notifications::{self, EventTarget, Staged};
use crate::store::{BucketRecord, ObjectRecord, PartRecord, S3Error, Store, UploadRecord};

const NAMESPACE: &str = "http://s3.amazonaws.com/doc/2006-03-01/";
/// S3's bound on one PutObject.
const MAX_OBJECT: u64 = 5 << 30;
/// The longest key S3 accepts, in UTF-8 bytes.
const MAX_KEY: usize = 1024;
/// Bytes gathered from a body before they go to disk in one blocking write.
const WRITE_BATCH: usize = 1 << 20;
/// Multipart bounds: part numbers, and the least size of every part but the last.
const MAX_PARTS: u32 = 10_000;
const MIN_PART: u64 = 5 << 20;

/// A body stored in the blob store, not yet part of any object.
struct Received {
    blob: String,
    size: u64,
    md5: [u8; 16],
    checksums: BTreeMap<String, String>,
}

fn user_metadata(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            let name = name.as_str().strip_prefix("x-amz-meta-")?;
            Some((name.to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect()
}

fn set_checksums(response: &mut Response<Body>, checksums: &BTreeMap<String, String>) {
    for (algorithm, value) in checksums {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::try_from(format!(
                "x-amz-checksum-{}",
                algorithm.to_ascii_lowercase()
            )),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
}

fn malformed_xml() -> AwsError {
    error(
        StatusCode::BAD_REQUEST,
        "MalformedXML",
        "The XML you provided was not well-formed or did not validate against our published schema",
    )
}

/// Writes `readers` one after the other into a new blob; returns its name and MD5.
fn concatenate(
    store: &Store,
    readers: impl IntoIterator<Item = impl Read>,
) -> Result<(String, [u8; 16]), S3Error> {
    let mut writer = store.writer()?;
    let mut md5 = Md5::new();
    let mut buffer = vec![0u8; 1 << 20];
    for mut reader in readers {
        loop {
            let n = reader
                .read(&mut buffer)
                .map_err(|e| S3Error::Internal(e.to_string()))?;
            if n == 0 {
                break;
            }
            md5.update(&buffer[..n]);
            std::io::Write::write_all(&mut writer, &buffer[..n])
                .map_err(|e| S3Error::Internal(e.to_string()))?;
        }
    }
    let (digest, _) = writer.commit(None)?;
    Ok((digest.to_string(), md5.finalize().into()))
}

pub struct S3Api {
    core: OffThread<Core>,
}

impl S3Api {
    pub fn new(store: Arc<Store>, events: Option<Arc<dyn EventTarget>>) -> Self {
        Self {
            core: OffThread(Arc::new(Core { store, events })),
        }
    }
}

/// What the async API may reach only through [`OffThread::run`]: the store's calls
/// wait on the disk (a commit fsyncs), and an async worker that waits on the disk
/// stalls every request scheduled on it.
struct OffThread<T>(Arc<T>);

impl<T: Send + Sync + 'static> OffThread<T> {
    async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce(&T) -> Result<R, AwsError> + Send + 'static,
    ) -> Result<R, AwsError> {
        let inner = self.0.clone();
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|_| AwsError::internal(Protocol::RestXml))?
    }
}

/// The operations' blocking halves, over the store.
struct Core {
    store: Arc<Store>,
    /// Where bucket notifications go; without one, configurations are refused.
    events: Option<Arc<dyn EventTarget>>,
}

impl Core {
    fn put_policy(&self, bucket: &str, document: &[u8]) -> Result<Response<Body>, AwsError> {
        let document = std::str::from_utf8(document).map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                "MalformedPolicy",
                "Policies must be UTF-8 JSON",
            )
        })?;
        Policy::parse(document, PolicyKind::Resource)
            .map_err(|err| error(StatusCode::BAD_REQUEST, "MalformedPolicy", err.to_string()))?;
        let document = document.to_owned();
        self.store
            .update_bucket(bucket, |record| record.policy = Some(document.clone()))?;
        Ok(empty(StatusCode::NO_CONTENT))
    }

    fn get_policy(&self, bucket: &str) -> Result<Response<Body>, AwsError> {
        let policy = self.store.bucket(bucket)?.policy.ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                "NoSuchBucketPolicy",
                "The bucket policy does not exist",
            )
        })?;
        let mut response = Response::new(Body::from(policy));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Ok(response)
    }

    fn put_notifications(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        document: &[u8],
    ) -> Result<Response<Body>, AwsError> {
        self.store.bucket(bucket)?;
        let rules = notifications::parse(document)
            .map_err(|reason| error(StatusCode::BAD_REQUEST, "InvalidArgument", reason))?;
        if !rules.is_empty() {
            let target = self
                .events
                .as_ref()
                .ok_or_else(|| not_implemented("delivering bucket events"))?;
            // As on S3, every destination is checked now, not when an event comes.
            for rule in &rules {
                if let Some(reason) = target.refuses(&rule.target, bucket, &ctx.account_id) {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        "InvalidArgument",
                        format!("Unable to validate the following destination configurations: {}: {reason}", rule.target),
                    )
                    .with_field("ArgumentName", rule.target.clone()));
                }
            }
        }
        self.store
            .update_bucket(bucket, |record| record.notifications = rules.clone())?;
        Ok(empty(StatusCode::OK))
    }

    /// The writes delivering `event` on `key` to every function and queue the
    /// bucket's rules name, to commit with the change itself.
    fn stage(
        &self,
        ctx: &RequestContext,
        bucket: &BucketRecord,
        key: &str,
        event: &str,
        created: Option<(u64, &str)>,
    ) -> Result<Vec<Staged>, S3Error> {
        let Some(target) = &self.events else {
            return Ok(Vec::new());
        };
        let principal = format!("AWS:{}", ctx.caller.principal.user_id());
        bucket
            .notifications
            .iter()
            .filter(|rule| rule.wants(event, key))
            .map(|rule| {
                let change = notifications::Change {
                    event,
                    bucket: &bucket.name,
                    key,
                    created,
                    region: &ctx.region,
                    account: &ctx.account_id,
                    request_id: &ctx.request_id,
                    principal: &principal,
                };
                let payload = notifications::record(&change, rule, OffsetDateTime::now_utc());
                target.stage(&rule.target, payload).map_err(|reason| {
                    S3Error::Internal(format!(
                        "a bucket event for {} cannot be queued: {reason}",
                        rule.target
                    ))
                })
            })
            .collect::<Result<Vec<Vec<Staged>>, S3Error>>()
            .map(|staged| staged.into_iter().flatten().collect())
    }

    /// Makes an object visible, if its bucket is still there, with the events its
    /// bucket's rules ask for.
    fn record(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        object: &ObjectRecord,
        event: &str,
    ) -> Result<(), S3Error> {
        let mut staged = false;
        self.store.put_object(bucket, object, |record| {
            let events = self.stage(
                ctx,
                record,
                &object.key,
                event,
                Some((object.size, &object.etag)),
            )?;
            staged = !events.is_empty();
            Ok(events)
        })?;
        self.wake(staged);
        Ok(())
    }

    /// Deletes the objects the caller may delete, in one commit with the events their
    /// deletion causes. As on S3, a batch is authorized key by key (`s3:DeleteObject`
    /// on each object, under the bucket's policy): each key gets its own outcome.
    fn delete_objects(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        keys: Vec<String>,
    ) -> Result<Vec<KeyOutcome>, AwsError> {
        let record = self.store.bucket(bucket)?;
        let outcomes: Vec<KeyOutcome> = keys
            .into_iter()
            .map(|key| {
                let allowed = authorize_object(
                    ctx,
                    "s3:DeleteObject",
                    bucket,
                    record.policy.as_deref(),
                    &key,
                );
                (key, allowed)
            })
            .collect();
        let allowed = outcomes
            .iter()
            .filter(|(_, allowed)| allowed.is_ok())
            .map(|(key, _)| key.as_str());
        self.delete(ctx, &record, allowed)?;
        Ok(outcomes)
    }

    /// Deletes objects of a bucket in one commit with the events their deletion causes.
    fn delete<'k>(
        &self,
        ctx: &RequestContext,
        bucket: &BucketRecord,
        keys: impl Iterator<Item = &'k str>,
    ) -> Result<(), S3Error> {
        let mut staged = false;
        let deletions = keys
            .map(|key| {
                let events = self.stage(ctx, bucket, key, "ObjectRemoved:Delete", None)?;
                staged |= !events.is_empty();
                Ok((key.to_owned(), events))
            })
            .collect::<Result<Vec<_>, S3Error>>()?;
        self.store.delete_objects(&bucket.name, deletions)?;
        self.wake(staged);
        Ok(())
    }

    /// After a commit that carried staged events: the queue looks at them now.
    fn wake(&self, staged: bool) {
        if staged && let Some(target) = &self.events {
            target.wake();
        }
    }
}

/// A key of a DeleteObjects, and whether it was deleted.
type KeyOutcome = (String, Result<(), AwsError>);

/// Authorizes `action` on one object under its bucket's policy: the checks S3 makes
/// beyond a request's own, key by key (DeleteObjects) or on a copy's source.
fn authorize_object(
    ctx: &RequestContext,
    action: &str,
    bucket: &str,
    policy: Option<&str>,
    key: &str,
) -> Result<(), AwsError> {
    let resource = format!("arn:aws:s3:::{bucket}/{key}");
    ctx.authorize(&Access::new(action, &resource).with_policy(policy))
}

fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> AwsError {
    AwsError::new(status, code, message)
}

impl From<S3Error> for AwsError {
    fn from(err: S3Error) -> Self {
        let message = err.to_string();
        match err {
            S3Error::NoSuchBucket(bucket) => error(StatusCode::NOT_FOUND, "NoSuchBucket", message)
                .with_field("BucketName", bucket),
            S3Error::BucketAlreadyOwnedByYou(bucket) => {
                error(StatusCode::CONFLICT, "BucketAlreadyOwnedByYou", message)
                    .with_field("BucketName", bucket)
            }
            S3Error::BucketNotEmpty(bucket) => {
                error(StatusCode::CONFLICT, "BucketNotEmpty", message)
                    .with_field("BucketName", bucket)
            }
            S3Error::NoSuchKey(key) => {
                error(StatusCode::NOT_FOUND, "NoSuchKey", message).with_field("Key", key)
            }
            S3Error::NoSuchUpload(id) => {
                error(StatusCode::NOT_FOUND, "NoSuchUpload", message).with_field("UploadId", id)
            }
            S3Error::Internal(detail) => {
                tracing::error!(%detail, "s3 failure");
                AwsError::internal(Protocol::RestXml)
            }
        }
    }
}

/// 3-63 lower-case letters, digits, dots and hyphens, starting and ending with a
/// letter or digit, not shaped like an IP address.
pub fn valid_bucket(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err()
}

/// What a request addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Service,
    Bucket(String),
    Object(String, String),
}

/// What a request addresses, as routing sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum On {
    Service,
    Bucket,
    Object,
}

/// What else a route asks of the request.
#[derive(Debug, Clone, Copy)]
enum When {
    Always,
    /// A query parameter is present.
    Has(&'static str),
    /// `x-amz-copy-source` is present, and the parameter if one is named.
    Copy(Option<&'static str>),
    /// `list-type=2`.
    ListV2,
}

/// The ARNs the operations act on, as AWS's authorization reference writes them.
const BUCKET: &str = "arn:${Partition}:s3:::${BucketName}";
const OBJECT: &str = "arn:${Partition}:s3:::${BucketName}/${ObjectName}";
const ANY: &str = "*";
/// A listing supplies its prefix to policies.
const LIST_KEYS: &[&str] = &["s3:prefix"];
/// A copy reads its source object.
const READS_SOURCE: &[&str] = &["s3:GetObject"];

/// S3's routing table: the first route that fits a request names its operation.
const ROUTES: &[(Method, On, When, &str, Authorization)] = &[
    (
        Method::GET,
        On::Service,
        When::Always,
        "ListBuckets",
        Authorization::new("s3:ListAllMyBuckets", ANY),
    ),
    (
        Method::PUT,
        On::Bucket,
        When::Has("policy"),
        "PutBucketPolicy",
        Authorization::new("s3:PutBucketPolicy", BUCKET),
    ),
    (
        Method::GET,
        On::Bucket,
        When::Has("policy"),
        "GetBucketPolicy",
        Authorization::new("s3:GetBucketPolicy", BUCKET),
    ),
    (
        Method::DELETE,
        On::Bucket,
        When::Has("policy"),
        "DeleteBucketPolicy",
        Authorization::new("s3:DeleteBucketPolicy", BUCKET),
    ),
    (
        Method::PUT,
        On::Bucket,
        When::Has("notification"),
        "PutBucketNotificationConfiguration",
        Authorization::new("s3:PutBucketNotification", BUCKET),
    ),
    (
        Method::GET,
        On::Bucket,
        When::Has("notification"),
        "GetBucketNotificationConfiguration",
        Authorization::new("s3:GetBucketNotification", BUCKET),
    ),
    (
        Method::PUT,
        On::Bucket,
        When::Always,
        "CreateBucket",
        Authorization::new("s3:CreateBucket", BUCKET),
    ),
    (
        Method::HEAD,
        On::Bucket,
        When::Always,
        "HeadBucket",
        Authorization::new("s3:ListBucket", BUCKET),
    ),
    (
        Method::DELETE,
        On::Bucket,
        When::Always,
        "DeleteBucket",
        Authorization::new("s3:DeleteBucket", BUCKET),
    ),
    (
        Method::GET,
        On::Bucket,
        When::Has("uploads"),
        "ListMultipartUploads",
        Authorization::new("s3:ListBucketMultipartUploads", BUCKET),
    ),
    (
        Method::POST,
        On::Bucket,
        When::Has("delete"),
        "DeleteObjects",
        // S3 has no action for the batch: each key is checked as it is deleted, with
        // an outcome of its own.
        Authorization::new("s3:DeleteObject", OBJECT).checked_in_operation(),
    ),
    (
        Method::POST,
        On::Object,
        When::Has("uploads"),
        "CreateMultipartUpload",
        Authorization::new("s3:PutObject", OBJECT),
    ),
    (
        Method::POST,
        On::Object,
        When::Has("uploadId"),
        "CompleteMultipartUpload",
        Authorization::new("s3:PutObject", OBJECT),
    ),
    (
        Method::PUT,
        On::Object,
        When::Copy(Some("uploadId")),
        "UploadPartCopy",
        Authorization::new("s3:PutObject", OBJECT).dependent(READS_SOURCE),
    ),
    (
        Method::PUT,
        On::Object,
        When::Has("uploadId"),
        "UploadPart",
        Authorization::new("s3:PutObject", OBJECT),
    ),
    (
        Method::GET,
        On::Object,
        When::Has("uploadId"),
        "ListParts",
        Authorization::new("s3:ListMultipartUploadParts", OBJECT),
    ),
    (
        Method::DELETE,
        On::Object,
        When::Has("uploadId"),
        "AbortMultipartUpload",
        Authorization::new("s3:AbortMultipartUpload", OBJECT),
    ),
    (
        Method::GET,
        On::Bucket,
        When::Has("location"),
        "GetBucketLocation",
        Authorization::new("s3:GetBucketLocation", BUCKET),
    ),
    (
        Method::GET,
        On::Bucket,
        When::ListV2,
        "ListObjectsV2",
        Authorization::new("s3:ListBucket", BUCKET).keys(LIST_KEYS),
    ),
    (
        Method::GET,
        On::Bucket,
        When::Always,
        "ListObjects",
        Authorization::new("s3:ListBucket", BUCKET).keys(LIST_KEYS),
    ),
    (
        Method::PUT,
        On::Object,
        When::Copy(None),
        "CopyObject",
        Authorization::new("s3:PutObject", OBJECT).dependent(READS_SOURCE),
    ),
    (
        Method::PUT,
        On::Object,
        When::Always,
        "PutObject",
        Authorization::new("s3:PutObject", OBJECT),
    ),
    (
        Method::HEAD,
        On::Object,
        When::Always,
        "HeadObject",
        Authorization::new("s3:GetObject", OBJECT),
    ),
    (
        Method::GET,
        On::Object,
        When::Always,
        "GetObject",
        Authorization::new("s3:GetObject", OBJECT),
    ),
    (
        Method::DELETE,
        On::Object,
        When::Always,
        "DeleteObject",
        Authorization::new("s3:DeleteObject", OBJECT),
    ),
];

/// The S3 operation a request is (its name and declared authorization), from its
/// method, target and query.
fn operation(
    parts: &http::request::Parts,
    target: &Target,
    params: &BTreeMap<String, String>,
) -> Option<(&'static str, Authorization)> {
    let on = match target {
        Target::Service => On::Service,
        Target::Bucket(_) => On::Bucket,
        Target::Object(..) => On::Object,
    };
    let copy = parts.headers.contains_key("x-amz-copy-source");
    let fits = |when: &When| match *when {
        When::Always => true,
        When::Has(name) => params.contains_key(name),
        When::Copy(name) => copy && name.is_none_or(|name| params.contains_key(name)),
        When::ListV2 => params.get("list-type").map(String::as_str) == Some("2"),
    };
    ROUTES
        .iter()
        .find(|(method, route_on, when, _, _)| {
            *method == parts.method && *route_on == on && fits(when)
        })
        .map(|(_, _, _, name, authorization)| (*name, *authorization))
}

/// The routing table as the docs show it: `GET /{Bucket}/{Key+}?uploadId`.
fn documented_routes() -> Vec<OperationDoc> {
    ROUTES
        .iter()
        .map(|(method, on, when, name, authorization)| {
            let path = match on {
                On::Service => "/",
                On::Bucket => "/{Bucket}",
                On::Object => "/{Bucket}/{Key+}",
            };
            let condition = match when {
                When::Always => String::new(),
                When::Has(param) => format!("?{param}"),
                When::Copy(None) => " with x-amz-copy-source".to_owned(),
                When::Copy(Some(param)) => format!("?{param} with x-amz-copy-source"),
                When::ListV2 => "?list-type=2".to_owned(),
            };
            OperationDoc {
                name: (*name).to_owned(),
                route: Some(format!("{method} {path}{condition}")),
                authorization: *authorization,
            }
        })
        .collect()
}

/// A parsed S3 request: its operation, what it addresses and its query.
#[derive(Debug)]
pub struct S3Call {
    name: &'static str,
    authorization: Authorization,
    target: Target,
    params: BTreeMap<String, String>,
}

impl Operation for S3Call {
    fn name(&self) -> &'static str {
        self.name
    }

    fn authorization(&self) -> Authorization {
        self.authorization
    }
}

/// The bucket or object ARN an operation acts on, with the bucket's own policy as a
/// resource policy and `s3:prefix` for listings. A copy's source is checked by the
/// copy itself, on the one parse of its `x-amz-copy-source` (`Core::copy_source`),
/// and each key of a DeleteObjects by the deletion (`Core::delete_objects`).
fn access(store: &Store, target: &Target, prefix: Option<String>) -> Vec<Check> {
    let resource = match target {
        Target::Service => "*".to_owned(),
        Target::Bucket(bucket) => format!("arn:aws:s3:::{bucket}"),
        Target::Object(bucket, key) => format!("arn:aws:s3:::{bucket}/{key}"),
    };
    let policy = match target {
        Target::Bucket(bucket) | Target::Object(bucket, _) => {
            store.bucket(bucket).ok().and_then(|record| record.policy)
        }
        Target::Service => None,
    };
    let mut check = Check::on(resource).with_policy(policy);
    if let Some(prefix) = prefix {
        check = check.with_context("s3:prefix", vec![prefix]);
    }
    vec![check]
}

/// The bucket and key of a request: from the `Host` for virtual-hosted-style
/// requests (`<bucket>.localhost[:port]`), else from the path.
fn target(parts: &http::request::Parts) -> Result<Target, AwsError> {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(name, _)| name);
    let path = percent_encoding::percent_decode_str(parts.uri.path())
        .decode_utf8()
        .map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                "InvalidURI",
                "Couldn't parse the specified URI.",
            )
        })?;
    let path = path.strip_prefix('/').unwrap_or(&path);
    let (bucket, key) = match host
        .strip_suffix(".localhost")
        .filter(|bucket| !bucket.is_empty())
    {
        Some(bucket) => (bucket.to_owned(), path.to_owned()),
        None => match path.split_once('/') {
            Some((bucket, key)) => (bucket.to_owned(), key.to_owned()),
            None => (path.to_owned(), String::new()),
        },
    };
    if bucket.is_empty() {
        return Ok(Target::Service);
    }
    if !valid_bucket(&bucket) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "InvalidBucketName",
            "The specified bucket is not valid.",
        )
        .with_field("BucketName", bucket));
    }
    if key.is_empty() {
        return Ok(Target::Bucket(bucket));
    }
    if key.len() > MAX_KEY {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "KeyTooLongError",
            "Your key is too long",
        ));
    }
    Ok(Target::Object(bucket, key))
}

/// An `x-amz-copy-source`, parsed once so that the object authorized is the object
/// copied: `[/]bucket/key[?versionId=id]`, the path URL-decoded as a whole (so a
/// `%2F` separates like `/`) and the query split off before decoding (so an encoded
/// `%3F` stays in the key).
#[derive(Debug, PartialEq, Eq)]
struct CopySource {
    bucket: String,
    key: String,
    version: Option<String>,
}

impl CopySource {
    fn from_headers(headers: &HeaderMap) -> Result<Self, AwsError> {
        let invalid = || {
            error(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
            )
            .with_field("ArgumentName", "x-amz-copy-source")
        };
        let header = header_text(headers, "x-amz-copy-source").ok_or_else(invalid)?;
        let (path, query) = header.split_once('?').unwrap_or((header, ""));
        let path = percent_encoding::percent_decode_str(path)
            .decode_utf8()
            .map_err(|_| invalid())?;
        let path = path.strip_prefix('/').unwrap_or(&path);
        let (bucket, key) = path
            .split_once('/')
            .filter(|(bucket, key)| valid_bucket(bucket) && !key.is_empty() && key.len() <= MAX_KEY)
            .ok_or_else(invalid)?;
        let version = form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "versionId")
            .map(|(_, id)| id.into_owned());
        Ok(Self {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version,
        })
    }
}

fn query(parts: &http::request::Parts) -> BTreeMap<String, String> {
    form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn iso(at: f64) -> String {
    let at = OffsetDateTime::from_unix_timestamp_nanos((at * 1e9) as i128)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let text = at.format(&Rfc3339).unwrap_or_default();
    // S3 writes milliseconds: 2009-10-12T17:50:30.000Z.
    format!("{}.{:03}Z", &text[..19], at.millisecond())
}

fn http_date(at: f64) -> String {
    let at = OffsetDateTime::from_unix_timestamp(at as i64).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    at.format(&Rfc2822)
        .map(|text| text.replace("+0000", "GMT"))
        .unwrap_or_default()
}

fn parse_http_date(text: &str) -> Option<i64> {
    let normalized = text.trim().replace("GMT", "+0000");
    OffsetDateTime::parse(&normalized, &Rfc2822)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

fn xml_response(status: StatusCode, xml: XmlWriter) -> Response<Body> {
    let mut body = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    body.push_str(&xml.finish());
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    response
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn set(response: &mut Response<Body>, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

fn not_implemented(what: &str) -> AwsError {
    error(
        StatusCode::NOT_IMPLEMENTED,
        "NotImplemented",
        format!("{what} is not implemented by this nimbus yet"),
    )
}

impl S3Api {
    fn parse(&self, parts: &http::request::Parts) -> Result<S3Call, AwsError> {
        let target = target(parts)?;
        let params = query(parts);
        let subresource = [
            "acl",
            "cors",
            "lifecycle",
            "tagging",
            "versioning",
            "website",
            "versions",
        ]
        .into_iter()
        .find(|name| params.contains_key(*name));
        if let Some(name) = subresource {
            return Err(not_implemented(&format!("the ?{name} subresource")));
        }
        let (name, authorization) = operation(parts, &target, &params).ok_or_else(|| {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!(
                    "The specified method {} is not allowed against this resource.",
                    parts.method
                ),
            )
        })?;
        Ok(S3Call {
            name,
            authorization,
            target,
            params,
        })
    }

    async fn route(
        &self,
        ctx: &RequestContext,
        call: S3Call,
        parts: http::request::Parts,
        mut body: StreamBody,
    ) -> Result<Response<Body>, AwsError> {
        let S3Call {
            name,
            target,
            params,
            ..
        } = call;
        let owned = ctx.clone();
        let headers = parts.headers.clone();
        match (name, target) {
            ("ListBuckets", _) => self.core.run(move |core| core.list_buckets(&owned)).await,
            ("PutBucketPolicy", Target::Bucket(bucket)) => {
                match body.collect(Protocol::RestXml, 20 * 1024).await {
                    Ok(document) => {
                        self.core
                            .run(move |core| core.put_policy(&bucket, &document))
                            .await
                    }
                    Err(err) => Err(err),
                }
            }
            ("GetBucketPolicy", Target::Bucket(bucket)) => {
                self.core.run(move |core| core.get_policy(&bucket)).await
            }
            ("DeleteBucketPolicy", Target::Bucket(bucket)) => {
                self.core
                    .run(move |core| {
                        core.store
                            .update_bucket(&bucket, |record| record.policy = None)?;
                        Ok(empty(StatusCode::NO_CONTENT))
                    })
                    .await
            }
            ("PutBucketNotificationConfiguration", Target::Bucket(bucket)) => {
                match body.collect(Protocol::RestXml, 1 << 20).await {
                    Ok(document) => {
                        self.core
                            .run(move |core| core.put_notifications(&owned, &bucket, &document))
                            .await
                    }
                    Err(err) => Err(err),
                }
            }
            ("GetBucketNotificationConfiguration", Target::Bucket(bucket)) => {
                self.core
                    .run(move |core| {
                        let record = core.store.bucket(&bucket)?;
                        Ok(xml_response(
                            StatusCode::OK,
                            notifications::render(&record.notifications, NAMESPACE),
                        ))
                    })
                    .await
            }
            ("CreateBucket", Target::Bucket(bucket)) => self.create_bucket(bucket, &mut body).await,
            ("HeadBucket", Target::Bucket(bucket)) => {
                self.core
                    .run(move |core| {
                        core.store.bucket(&bucket)?;
                        Ok(empty(StatusCode::OK))
                    })
                    .await
            }
            ("DeleteBucket", Target::Bucket(bucket)) => {
                self.core
                    .run(move |core| {
                        core.store.delete_bucket(&bucket)?;
                        Ok(empty(StatusCode::NO_CONTENT))
                    })
                    .await
            }
            ("ListMultipartUploads", Target::Bucket(bucket)) => {
                self.core.run(move |core| core.list_uploads(&bucket)).await
            }
            ("DeleteObjects", Target::Bucket(bucket)) => {
                self.delete_objects(owned, bucket, &mut body).await
            }
            ("CreateMultipartUpload", Target::Object(bucket, key)) => {
                self.core
                    .run(move |core| core.create_upload(&bucket, &key, &headers))
                    .await
            }
            ("CompleteMultipartUpload", Target::Object(bucket, key)) => {
                self.complete_upload(owned, bucket, key, params, &mut body)
                    .await
            }
            ("UploadPartCopy" | "UploadPart", Target::Object(bucket, key)) => {
                self.upload_part(owned, bucket, key, params, headers, &mut body)
                    .await
            }
            ("ListParts", Target::Object(bucket, key)) => {
                self.core
                    .run(move |core| core.list_parts(&bucket, &key, &params))
                    .await
            }
            ("AbortMultipartUpload", Target::Object(bucket, key)) => {
                self.core
                    .run(move |core| {
                        let upload = core.upload_of(&bucket, &key, &params)?;
                        core.store.end_upload(&upload, None, |_| Ok(Vec::new()))?;
                        Ok(empty(StatusCode::NO_CONTENT))
                    })
                    .await
            }
            ("GetBucketLocation", Target::Bucket(bucket)) => {
                self.core
                    .run(move |core| core.location(&owned, &bucket))
                    .await
            }
            ("ListObjectsV2", Target::Bucket(bucket)) => {
                self.core
                    .run(move |core| core.list_objects(&bucket, &params))
                    .await
            }
            ("ListObjects", _) => Err(not_implemented("ListObjects (version 1)")),
            ("CopyObject", Target::Object(bucket, key)) => match CopySource::from_headers(&headers)
            {
                Ok(source) => {
                    self.core
                        .run(move |core| core.copy_object(&owned, &bucket, &key, &source, &headers))
                        .await
                }
                Err(err) => Err(err),
            },
            ("PutObject", Target::Object(bucket, key)) => {
                self.put_object(owned, bucket, key, headers, &mut body)
                    .await
            }
            ("HeadObject" | "GetObject", Target::Object(bucket, key)) => {
                let head = name == "HeadObject";
                self.core
                    .run(move |core| core.get_object(&bucket, &key, &headers, head))
                    .await
            }
            ("DeleteObject", Target::Object(bucket, key)) => {
                self.core
                    .run(move |core| {
                        let record = core.store.bucket(&bucket)?;
                        core.delete(&owned, &record, std::iter::once(key.as_str()))?;
                        Ok(empty(StatusCode::NO_CONTENT))
                    })
                    .await
            }
            _ => Err(error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!(
                    "The specified method {} is not allowed against this resource.",
                    parts.method
                ),
            )),
        }
    }

    async fn create_bucket(
        &self,
        bucket: String,
        body: &mut StreamBody,
    ) -> Result<Response<Body>, AwsError> {
        // The body, if any, is a CreateBucketConfiguration naming a region; this
        // server has one region, which every bucket is in.
        body.collect(Protocol::RestXml, 64 * 1024).await?;
        self.core
            .run(move |core| {
                core.store.create_bucket(BucketRecord {
                    name: bucket.clone(),
                    created_at: now(),
                    notifications: Vec::new(),
                    policy: None,
                })?;
                let mut response = empty(StatusCode::OK);
                set(&mut response, "location", &format!("/{bucket}"));
                Ok(response)
            })
            .await
    }

    async fn delete_objects(
        &self,
        ctx: RequestContext,
        bucket: String,
        body: &mut StreamBody,
    ) -> Result<Response<Body>, AwsError> {
        let document = body.collect(Protocol::RestXml, 2 << 20).await?;
        let keys = xml::records(&document, "Object", &["Key"]).map_err(|_| malformed_xml())?;
        if keys.len() > 1000 {
            return Err(malformed_xml());
        }
        let keys = keys
            .into_iter()
            .map(|fields| fields.into_iter().next().unwrap_or_default())
            .collect();
        let quiet = String::from_utf8_lossy(&document).contains("<Quiet>true</Quiet>");
        let outcomes = self
            .core
            .run(move |core| core.delete_objects(&ctx, &bucket, keys))
            .await?;
        let mut xml = XmlWriter::new();
        xml.open_with_namespace("DeleteResult", Some(NAMESPACE));
        for (key, outcome) in outcomes {
            match outcome {
                Ok(()) => {
                    if !quiet {
                        xml.open("Deleted");
                        xml.leaf("Key", &key);
                        xml.close("Deleted");
                    }
                }
                Err(err) => {
                    xml.open("Error");
                    xml.leaf("Key", &key);
                    xml.leaf("Code", &err.code);
                    xml.leaf("Message", &err.message);
                    xml.close("Error");
                }
            }
        }
        xml.close("DeleteResult");
        Ok(xml_response(StatusCode::OK, xml))
    }

    /// Streams a request body into the blob store, checking it against its
    /// Content-MD5 and checksum headers or trailers. Nothing is visible until the
    /// caller records the returned blob.
    async fn receive(
        &self,
        headers: &HeaderMap,
        body: &mut StreamBody,
    ) -> Result<Received, AwsError> {
        let too_large = || {
            error(
                StatusCode::BAD_REQUEST,
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed size",
            )
        };
        let declared = header_text(headers, "x-amz-decoded-content-length")
            .or_else(|| header_text(headers, "content-length"))
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > MAX_OBJECT) {
            return Err(too_large());
        }
        let algorithm = checksum_algorithm(headers)?;
        let mut writer = self.core.run(|core| Ok(core.store.writer()?)).await?;
        let (mut md5, mut crc) = (Md5::new(), crc32fast::Hasher::new());
        let mut size = 0u64;
        let mut batch: Vec<u8> = Vec::with_capacity(WRITE_BATCH);
        loop {
            let piece = body.next(Protocol::RestXml).await.transpose()?;
            let done = piece.is_none();
            if let Some(piece) = piece {
                md5.update(&piece);
                crc.update(&piece);
                size += piece.len() as u64;
                if size > MAX_OBJECT {
                    return Err(too_large());
                }
                batch.extend_from_slice(&piece);
            }
            if batch.len() >= WRITE_BATCH || (done && !batch.is_empty()) {
                let bytes = std::mem::take(&mut batch);
                let (returned, written) = tokio::task::spawn_blocking(move || {
                    let written = std::io::Write::write_all(&mut writer, &bytes);
                    (writer, written)
                })
                .await
                .map_err(|_| AwsError::internal(Protocol::RestXml))?;
                writer = returned;
                written.map_err(|err| S3Error::Internal(err.to_string()))?;
            }
            if done {
                break;
            }
        }
        let trailers = body.finish(Protocol::RestXml)?;
        let md5 = md5.finalize();
        if let Some(claimed) = header_text(headers, "content-md5") {
            if STANDARD
                .decode(claimed.trim())
                .map_or(true, |bytes| bytes.len() != 16)
            {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "InvalidDigest",
                    "The Content-MD5 you specified was invalid.",
                ));
            }
            if claimed.trim() != STANDARD.encode(md5) {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "BadDigest",
                    "The Content-MD5 you specified did not match what we received.",
                ));
            }
        }
        let (committed, _) = tokio::task::spawn_blocking(move || writer.commit(None))
            .await
            .map_err(|_| AwsError::internal(Protocol::RestXml))?
            .map_err(S3Error::from)?;
        let mut checksums = BTreeMap::new();
        if let Some(algorithm) = algorithm {
            let header = format!("x-amz-checksum-{}", algorithm.to_ascii_lowercase());
            let actual = match algorithm {
                "CRC32" => STANDARD.encode(crc.finalize().to_be_bytes()),
                _ => STANDARD.encode(committed.as_bytes()),
            };
            let claimed = header_text(headers, &header)
                .map(str::to_owned)
                .or_else(|| {
                    trailers
                        .iter()
                        .find(|(name, _)| *name == header)
                        .map(|(_, value)| value.clone())
                });
            if let Some(claimed) = claimed
                && claimed != actual
            {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "BadDigest",
                    format!("The {algorithm} you specified did not match the calculated checksum."),
                ));
            }
            checksums.insert(algorithm.to_owned(), actual);
        }
        Ok(Received {
            blob: committed.to_string(),
            size,
            md5: md5.into(),
            checksums,
        })
    }

    async fn put_object(
        &self,
        ctx: RequestContext,
        bucket: String,
        key: String,
        headers: HeaderMap,
        body: &mut StreamBody,
    ) -> Result<Response<Body>, AwsError> {
        let checked = bucket.clone();
        self.core
            .run(move |core| Ok(core.store.bucket(&checked)?))
            .await?;
        let received = self.receive(&headers, body).await?;
        let object = ObjectRecord {
            key,
            blob: received.blob,
            size: received.size,
            etag: hex::encode(received.md5),
            last_modified: now(),
            content_type: header_text(&headers, "content-type").map(str::to_owned),
            metadata: user_metadata(&headers),
            checksums: received.checksums,
        };
        let mut response = empty(StatusCode::OK);
        set(&mut response, "etag", &format!("\"{}\"", object.etag));
        set_checksums(&mut response, &object.checksums);
        self.core
            .run(move |core| Ok(core.record(&ctx, &bucket, &object, "ObjectCreated:Put")?))
            .await?;
        Ok(response)
    }

    async fn upload_part(
        &self,
        ctx: RequestContext,
        bucket: String,
        key: String,
        params: BTreeMap<String, String>,
        headers: HeaderMap,
        body: &mut StreamBody,
    ) -> Result<Response<Body>, AwsError> {
        let number = Core::part_number(&params)?;
        if headers.contains_key("x-amz-copy-source") {
            let source = CopySource::from_headers(&headers)?;
            return self
                .core
                .run(move |core| {
                    let upload = core.upload_of(&bucket, &key, &params)?;
                    let part = core.copy_part(&ctx, &source, &headers, number)?;
                    core.store.put_part(&upload, &part)?;
                    let mut xml = XmlWriter::new();
                    xml.open_with_namespace("CopyPartResult", Some(NAMESPACE));
                    xml.leaf("LastModified", &iso(part.last_modified));
                    xml.leaf("ETag", &format!("\"{}\"", part.etag));
                    xml.close("CopyPartResult");
                    Ok(xml_response(StatusCode::OK, xml))
                })
                .await;
        }
        let upload = self
            .core
            .run(move |core| Ok(core.upload_of(&bucket, &key, &params)?))
            .await?;
        let received = self.receive(&headers, body).await?;
        let part = PartRecord {
            number,
            blob: received.blob,
            size: received.size,
            etag: hex::encode(received.md5),
            last_modified: now(),
        };
        let mut response = empty(StatusCode::OK);
        set(&mut response, "etag", &format!("\"{}\"", part.etag));
        self.core
            .run(move |core| Ok(core.store.put_part(&upload, &part)?))
            .await?;
        Ok(response)
    }

    async fn complete_upload(
        &self,
        ctx: RequestContext,
        bucket: String,
        key: String,
        params: BTreeMap<String, String>,
        body: &mut StreamBody,
    ) -> Result<Response<Body>, AwsError> {
        let document = body.collect(Protocol::RestXml, 1 << 20).await?;
        let requested = xml::records(&document, "Part", &["PartNumber", "ETag"])
            .map_err(|_| malformed_xml())?
            .into_iter()
            .map(|fields| {
                let number = fields
                    .first()
                    .and_then(|n| n.parse::<u32>().ok())
                    .ok_or_else(malformed_xml)?;
                Ok((
                    number,
                    fields
                        .get(1)
                        .cloned()
                        .unwrap_or_default()
                        .trim_matches('"')
                        .to_owned(),
                ))
            })
            .collect::<Result<Vec<(u32, String)>, AwsError>>()?;
        if requested.is_empty() {
            return Err(malformed_xml());
        }
        if requested.windows(2).any(|pair| pair[0].0 >= pair[1].0) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "InvalidPartOrder",
                "The list of parts was not in ascending order. Parts must be ordered by part number.",
            ));
        }
        self.core
            .run(move |core| core.complete_upload(&ctx, &bucket, &key, &params, &requested))
            .await
    }
}

impl Core {
    fn list_buckets(&self, ctx: &RequestContext) -> Result<Response<Body>, AwsError> {
        let mut xml = XmlWriter::new();
        xml.open_with_namespace("ListAllMyBucketsResult", Some(NAMESPACE));
        xml.open("Owner");
        xml.leaf("ID", &ctx.account_id);
        xml.leaf("DisplayName", &ctx.account_id);
        xml.close("Owner");
        xml.open("Buckets");
        for bucket in self.store.buckets()? {
            xml.open("Bucket");
            xml.leaf("Name", &bucket.name);
            xml.leaf("CreationDate", &iso(bucket.created_at));
            xml.close("Bucket");
        }
        xml.close("Buckets");
        xml.close("ListAllMyBucketsResult");
        Ok(xml_response(StatusCode::OK, xml))
    }

    fn location(&self, ctx: &RequestContext, bucket: &str) -> Result<Response<Body>, AwsError> {
        self.store.bucket(bucket)?;
        let mut xml = XmlWriter::new();
        xml.open_with_namespace("LocationConstraint", Some(NAMESPACE));
        // us-east-1 is written as an empty constraint, as S3 does.
        if &*ctx.region != "us-east-1" {
            xml.text(&ctx.region);
        }
        xml.close("LocationConstraint");
        Ok(xml_response(StatusCode::OK, xml))
    }

    fn list_objects(
        &self,
        bucket: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<Response<Body>, AwsError> {
        self.store.bucket(bucket)?;
        let prefix = params.get("prefix").cloned().unwrap_or_default();
        let delimiter = params.get("delimiter").filter(|d| !d.is_empty()).cloned();
        let max_keys = match params.get("max-keys") {
            Some(n) => n.parse::<usize>().map_err(|_| {
                error(
                    StatusCode::BAD_REQUEST,
                    "InvalidArgument",
                    "Provided max-keys not an integer or within integer range",
                )
            })?,
            None => 1000,
        }
        .min(1000);
        let url_encoded = params.get("encoding-type").map(String::as_str) == Some("url");
        let token = match params.get("continuation-token") {
            Some(token) => Some(
                STANDARD
                    .decode(token)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .ok_or_else(|| {
                        error(
                            StatusCode::BAD_REQUEST,
                            "InvalidArgument",
                            "The continuation token provided is incorrect",
                        )
                    })?,
            ),
            None => None,
        };
        let mut after = token.clone().or_else(|| params.get("start-after").cloned());
        let (mut contents, mut prefixes): (Vec<ObjectRecord>, Vec<String>) =
            (Vec::new(), Vec::new());
        let mut truncated = false;
        let mut last = None;
        'scan: loop {
            if max_keys == 0 {
                break;
            }
            let page = self.store.list(bucket, &prefix, after.as_deref(), 1000)?;
            if page.is_empty() {
                break;
            }
            for object in page {
                after = Some(object.key.clone());
                if contents.len() + prefixes.len() == max_keys {
                    truncated = true;
                    break 'scan;
                }
                let rest = &object.key[prefix.len()..];
                match delimiter
                    .as_deref()
                    .and_then(|d| rest.find(d).map(|at| at + d.len()))
                {
                    Some(end) => {
                        let common = format!("{prefix}{}", &rest[..end]);
                        if prefixes.last() != Some(&common) {
                            prefixes.push(common.clone());
                            last = Some(object.key.clone());
                        }
                        // Everything under the common prefix is skipped at once.
                        after = Some(format!("{common}\u{10FFFF}"));
                        continue 'scan;
                    }
                    None => {
                        last = Some(object.key.clone());
                        contents.push(object);
                    }
                }
            }
        }
        let encode = |text: &str| {
            if url_encoded {
                percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
                    .replace("%2F", "/")
                    .replace("%2D", "-")
                    .replace("%2E", ".")
                    .replace("%5F", "_")
                    .replace("%7E", "~")
            } else {
                text.to_owned()
            }
        };
        let mut xml = XmlWriter::new();
        xml.open_with_namespace("ListBucketResult", Some(NAMESPACE));
        xml.leaf("Name", bucket);
        xml.leaf("Prefix", &encode(&prefix));
        if let Some(delimiter) = &delimiter {
            xml.leaf("Delimiter", &encode(delimiter));
        }
        xml.leaf("MaxKeys", &max_keys.to_string());
        xml.leaf("KeyCount", &(contents.len() + prefixes.len()).to_string());
        xml.leaf("IsTruncated", if truncated { "true" } else { "false" });
        if let Some(token) = params.get("continuation-token") {
            xml.leaf("ContinuationToken", token);
        }
        if let Some(start) = params.get("start-after") {
            xml.leaf("StartAfter", &encode(start));
        }
        if truncated && let Some(last) = &last {
            xml.leaf("NextContinuationToken", &STANDARD.encode(last));
        }
        if url_encoded {
            xml.leaf("EncodingType", "url");
        }
        for object in &contents {
            xml.open("Contents");
            xml.leaf("Key", &encode(&object.key));
            xml.leaf("LastModified", &iso(object.last_modified));
            xml.leaf("ETag", &format!("\"{}\"", object.etag));
            xml.leaf("Size", &object.size.to_string());
            xml.leaf("StorageClass", "STANDARD");
            xml.close("Contents");
        }
        for common in &prefixes {
            xml.open("CommonPrefixes");
            xml.leaf("Prefix", &encode(common));
            xml.close("CommonPrefixes");
        }
        xml.close("ListBucketResult");
        Ok(xml_response(StatusCode::OK, xml))
    }

    fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        headers: &HeaderMap,
    ) -> Result<Response<Body>, AwsError> {
        let upload = UploadRecord {
            id: uuid::Uuid::new_v4().simple().to_string(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            initiated: now(),
            content_type: header_text(headers, "content-type").map(str::to_owned),
            metadata: user_metadata(headers),
        };
        self.store.create_upload(&upload)?;
        let mut xml = XmlWriter::new();
        xml.open_with_namespace("InitiateMultipartUploadResult", Some(NAMESPACE));
        xml.leaf("Bucket", bucket);
        xml.leaf("Key", key);
        xml.leaf("UploadId", &upload.id);
        xml.close("InitiateMultipartUploadResult");
        Ok(xml_response(StatusCode::OK, xml))
    }

    /// The multipart upload a request's `uploadId` names.
    fn upload_of(
        &self,
        bucket: &str,
        key: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<UploadRecord, S3Error> {
        let id = params.get("uploadId").map_or("", String::as_str);
        self.store.upload(bucket, key, id)
    }

    fn part_number(params: &BTreeMap<String, String>) -> Result<u32, AwsError> {
        params
            .get("partNumber")
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| (1..=MAX_PARTS).contains(n))
            .ok_or_else(|| {
                error(
                    StatusCode::BAD_REQUEST,
                    "InvalidArgument",
                    "Part number must be an integer between 1 and 10000, inclusive",
                )
            })
    }

    /// The object a copy's source names, if the caller may read it: `s3:GetObject` on
    /// that object (`s3:GetObjectVersion` for a version) under the source bucket's
    /// policy.
    fn copy_source(
        &self,
        ctx: &RequestContext,
        source: &CopySource,
    ) -> Result<ObjectRecord, AwsError> {
        let bucket = self.store.bucket(&source.bucket);
        let policy = bucket
            .as_ref()
            .ok()
            .and_then(|record| record.policy.as_deref());
        let action = match source.version {
            Some(_) => "s3:GetObjectVersion",
            None => "s3:GetObject",
        };
        authorize_object(ctx, action, &source.bucket, policy, &source.key)?;
        bucket?;
        // Without versioning, an object's only version is the one S3 calls "null".
        if source
            .version
            .as_deref()
            .is_some_and(|version| version != "null")
        {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                "Invalid version id specified",
            )
            .with_field("ArgumentName", "x-amz-copy-source"));
        }
        Ok(self.store.object(&source.bucket, &source.key)?)
    }

    /// CopyObject: the new object shares the source's stored bytes.
    fn copy_object(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        key: &str,
        source: &CopySource,
        headers: &HeaderMap,
    ) -> Result<Response<Body>, AwsError> {
        self.store.bucket(bucket)?;
        let source = self.copy_source(ctx, source)?;
        let replace = header_text(headers, "x-amz-metadata-directive") == Some("REPLACE");
        let object = ObjectRecord {
            key: key.to_owned(),
            last_modified: now(),
            content_type: if replace {
                header_text(headers, "content-type").map(str::to_owned)
            } else {
                source.content_type.clone()
            },
            metadata: if replace {
                user_metadata(headers)
            } else {
                source.metadata.clone()
            },
            ..source
        };
        self.record(ctx, bucket, &object, "ObjectCreated:Copy")?;
        let mut xml = XmlWriter::new();
        xml.open_with_namespace("CopyObjectResult", Some(NAMESPACE));
        xml.leaf("LastModified", &iso(object.last_modified));
        xml.leaf("ETag", &format!("\"{}\"", object.etag));
        xml.close("CopyObjectResult");
        Ok(xml_response(StatusCode::OK, xml))
    }

    /// UploadPartCopy: a byte range of another object, copied into a new blob.
    fn copy_part(
        &self,
        ctx: &RequestContext,
        source: &CopySource,
        headers: &HeaderMap,
        number: u32,
    ) -> Result<PartRecord, AwsError> {
        let source = self.copy_source(ctx, source)?;
        let (start, end) = match header_text(headers, "x-amz-copy-source-range") {
            Some(range) => byte_range(range, source.size).ok_or_else(|| {
                error(
                    StatusCode::BAD_REQUEST,
                    "InvalidArgument",
                    "The x-amz-copy-source-range value is not valid",
                )
            })?,
            None if source.size == 0 => (0, 0),
            None => (0, source.size - 1),
        };
        let len = if source.size == 0 { 0 } else { end - start + 1 };
        let mut blob = self.store.open(&source)?;
        blob.reader
            .seek(SeekFrom::Start(start))
            .map_err(|e| S3Error::Internal(e.to_string()))?;
        let (blob, md5) = concatenate(&self.store, [blob.reader.take(len)])?;
        Ok(PartRecord {
            number,
            blob,
            size: len,
            etag: hex::encode(md5),
            last_modified: now(),
        })
    }

    /// CompleteMultipartUpload once its request is parsed: the parts named, checked
    /// and concatenated into the object.
    fn complete_upload(
        &self,
        ctx: &RequestContext,
        bucket: &str,
        key: &str,
        params: &BTreeMap<String, String>,
        requested: &[(u32, String)],
    ) -> Result<Response<Body>, AwsError> {
        let upload = self.upload_of(bucket, key, params)?;
        let stored: BTreeMap<u32, PartRecord> = self
            .store
            .parts(&upload)?
            .into_iter()
            .map(|part| (part.number, part))
            .collect();
        let mut chosen = Vec::new();
        for (n, (number, etag)) in requested.iter().enumerate() {
            let part = stored
                .get(number)
                .filter(|part| part.etag == *etag)
                .ok_or_else(|| error(StatusCode::BAD_REQUEST, "InvalidPart", "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."))?;
            if n + 1 < requested.len() && part.size < MIN_PART {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "EntityTooSmall",
                    "Your proposed upload is smaller than the minimum allowed object size.",
                ));
            }
            chosen.push(part);
        }
        // S3's multipart ETag: the MD5 of the parts' MD5s, and their count.
        let mut md5s = Md5::new();
        for part in &chosen {
            md5s.update(hex::decode(&part.etag).unwrap_or_default());
        }
        let etag = format!("{}-{}", hex::encode(md5s.finalize()), chosen.len());
        let readers = chosen
            .iter()
            .map(|part| self.store.open_blob(&part.blob).map(|blob| blob.reader))
            .collect::<Result<Vec<_>, _>>()?;
        let (blob, _) = concatenate(&self.store, readers)?;
        let object = ObjectRecord {
            key: key.to_owned(),
            blob,
            size: chosen.iter().map(|part| part.size).sum(),
            etag: etag.clone(),
            last_modified: now(),
            content_type: upload.content_type.clone(),
            metadata: upload.metadata.clone(),
            checksums: BTreeMap::new(),
        };
        let mut staged = false;
        self.store.end_upload(&upload, Some(&object), |record| {
            let events = self.stage(
                ctx,
                record,
                key,
                "ObjectCreated:CompleteMultipartUpload",
                Some((object.size, &object.etag)),
            )?;
            staged = !events.is_empty();
            Ok(events)
        })?;
        self.wake(staged);
        let mut xml = XmlWriter::new();
        xml.open_with_namespace("CompleteMultipartUploadResult", Some(NAMESPACE));
        xml.leaf("Location", &format!("/{bucket}/{key}"));
        xml.leaf("Bucket", bucket);
        xml.leaf("Key", key);
        xml.leaf("ETag", &format!("\"{etag}\""));
        xml.close("CompleteMultipartUploadResult");
        Ok(xml_response(StatusCode::OK, xml))
    }

    fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<Response<Body>, AwsError> {
        let upload = self.upload_of(bucket, key, params)?;
        let mut xml = XmlWriter::new();
        xml.open_with_namespace("ListPartsResult", Some(NAMESPACE));
        xml.leaf("Bucket", bucket);
        xml.leaf("Key", key);
        xml.leaf("UploadId", &upload.id);
        xml.leaf("IsTruncated", "false");
        for part in self.store.parts(&upload)? {
            xml.open("Part");
            xml.leaf("PartNumber", &part.number.to_string());
            xml.leaf("LastModified", &iso(part.last_modified));
            xml.leaf("ETag", &format!("\"{}\"", part.etag));
            xml.leaf("Size", &part.size.to_string());
            xml.close("Part");
        }
        xml.close("ListPartsResult");
        Ok(xml_response(StatusCode::OK, xml))
    }

    fn list_uploads(&self, bucket: &str) -> Result<Response<Body>, AwsError> {
        self.store.bucket(bucket)?;
        let mut xml = XmlWriter::new();
        xml.open_with_namespace("ListMultipartUploadsResult", Some(NAMESPACE));
        xml.leaf("Bucket", bucket);
        xml.leaf("IsTruncated", "false");
        for upload in self.store.uploads(bucket)? {
            xml.open("Upload");
            xml.leaf("Key", &upload.key);
            xml.leaf("UploadId", &upload.id);
            xml.leaf("Initiated", &iso(upload.initiated));
            xml.leaf("StorageClass", "STANDARD");
            xml.close("Upload");
        }
        xml.close("ListMultipartUploadsResult");
        Ok(xml_response(StatusCode::OK, xml))
    }

    fn get_object(
        &self,
        bucket: &str,
        key: &str,
        headers: &HeaderMap,
        head: bool,
    ) -> Result<Response<Body>, AwsError> {
        self.store.bucket(bucket)?;
        let object = match self.store.object(bucket, key) {
            Ok(object) => object,
            // HEAD answers carry no body, so no error document either.
            Err(S3Error::NoSuchKey(_)) if head => return Ok(empty(StatusCode::NOT_FOUND)),
            Err(err) => return Err(err.into()),
        };
        let etag = format!("\"{}\"", object.etag);
        if let Some(status) = precondition(headers, &etag, object.last_modified) {
            if status == StatusCode::PRECONDITION_FAILED && !head {
                return Err(error(
                    status,
                    "PreconditionFailed",
                    "At least one of the pre-conditions you specified did not hold",
                ));
            }
            let mut response = empty(status);
            set(&mut response, "etag", &etag);
            return Ok(response);
        }
        let (status, start, len, range) = match header_text(headers, "range") {
            Some(range) => match byte_range(range, object.size) {
                Some((start, end)) => (
                    StatusCode::PARTIAL_CONTENT,
                    start,
                    end - start + 1,
                    Some(format!("bytes {start}-{end}/{}", object.size)),
                ),
                None => {
                    return Err(error(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        "InvalidRange",
                        "The requested range is not satisfiable",
                    )
                    .with_field("ActualObjectSize", object.size.to_string()));
                }
            },
            None => (StatusCode::OK, 0, object.size, None),
        };
        let mut response = if head {
            empty(status)
        } else {
            let mut blob = self.store.open(&object)?;
            blob.reader
                .seek(SeekFrom::Start(start))
                .map_err(|err| S3Error::Internal(err.to_string()))?;
            let mut response = Response::new(stream_reader(blob.reader.take(len)));
            *response.status_mut() = status;
            response
        };
        set(&mut response, "content-length", &len.to_string());
        set(&mut response, "etag", &etag);
        set(
            &mut response,
            "last-modified",
            &http_date(object.last_modified),
        );
        set(&mut response, "accept-ranges", "bytes");
        set(
            &mut response,
            "content-type",
            object
                .content_type
                .as_deref()
                .unwrap_or("binary/octet-stream"),
        );
        // A whole-object checksum says nothing of a part, so ranges go without.
        let whole = range.is_none();
        if let Some(range) = range {
            set(&mut response, "content-range", &range);
        }
        for (name, value) in &object.metadata {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::try_from(format!("x-amz-meta-{name}")),
                HeaderValue::from_str(value),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
        if whole
            && header_text(headers, "x-amz-checksum-mode")
                .is_some_and(|mode| mode.eq_ignore_ascii_case("ENABLED"))
        {
            set_checksums(&mut response, &object.checksums);
        }
        Ok(response)
    }
}

/// The checksum a PutObject asks to be checked and kept: CRC32 and SHA256 are.
fn checksum_algorithm(headers: &HeaderMap) -> Result<Option<&'static str>, AwsError> {
    let named = header_text(headers, "x-amz-sdk-checksum-algorithm")
        .map(str::to_ascii_uppercase)
        .or_else(|| {
            header_text(headers, "x-amz-trailer")
                .and_then(|trailer| trailer.trim().strip_prefix("x-amz-checksum-"))
                .map(str::to_ascii_uppercase)
        })
        .or_else(|| {
            headers
                .keys()
                .find_map(|name| name.as_str().strip_prefix("x-amz-checksum-"))
                .filter(|algorithm| *algorithm != "mode" && *algorithm != "type")
                .map(str::to_ascii_uppercase)
        });
    match named.as_deref() {
        None => Ok(None),
        Some("CRC32") => Ok(Some("CRC32")),
        Some("SHA256") => Ok(Some("SHA256")),
        Some(other) => Err(not_implemented(&format!("the {other} checksum algorithm"))),
    }
}

/// The status a conditional GET answers with when a condition stops it.
fn precondition(headers: &HeaderMap, etag: &str, modified: f64) -> Option<StatusCode> {
    let matches = |list: &str| {
        list.split(',')
            .any(|tag| tag.trim() == "*" || tag.trim() == etag)
    };
    let modified = modified as i64;
    if let Some(list) = header_text(headers, "if-match")
        && !matches(list)
    {
        return Some(StatusCode::PRECONDITION_FAILED);
    }
    if header_text(headers, "if-match").is_none()
        && let Some(since) = header_text(headers, "if-unmodified-since").and_then(parse_http_date)
        && modified > since
    {
        return Some(StatusCode::PRECONDITION_FAILED);
    }
    if let Some(list) = header_text(headers, "if-none-match") {
        if matches(list) {
            return Some(StatusCode::NOT_MODIFIED);
        }
    } else if let Some(since) = header_text(headers, "if-modified-since").and_then(parse_http_date)
        && modified <= since
    {
        return Some(StatusCode::NOT_MODIFIED);
    }
    None
}

fn now() -> f64 {
    OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9
}

impl StreamingService for S3Api {
    type Operation = S3Call;

    fn descriptor(&self) -> &'static ServiceDescriptor {
        &catalog::S3
    }

    fn operations(&self) -> Vec<OperationDoc> {
        documented_routes()
    }

    fn parse(&self, parts: &http::request::Parts) -> Result<S3Call, AwsError> {
        S3Api::parse(self, parts)
    }

    async fn access(&self, _ctx: &RequestContext, call: &S3Call) -> Result<Vec<Check>, AwsError> {
        let (target, prefix) = (call.target.clone(), call.params.get("prefix").cloned());
        self.core
            .run(move |core| Ok(access(&core.store, &target, prefix)))
            .await
    }

    async fn handle(
        &self,
        ctx: RequestContext,
        call: S3Call,
        parts: http::request::Parts,
        body: StreamBody,
    ) -> Result<Response<Body>, AwsError> {
        self.route(&ctx, call, parts, body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(host: &str, path: &str) -> http::request::Parts {
        let (parts, ()) = http::Request::builder()
            .uri(path)
            .header("host", host)
            .body(())
            .unwrap()
            .into_parts();
        parts
    }

    #[test]
    fn buckets_and_keys_come_from_the_path_or_the_host() {
        assert_eq!(
            target(&parts("localhost:4566", "/")).unwrap(),
            Target::Service
        );
        assert_eq!(
            target(&parts("localhost:4566", "/photos")).unwrap(),
            Target::Bucket("photos".into())
        );
        assert_eq!(
            target(&parts("localhost:4566", "/photos/2024/a%20b.jpg")).unwrap(),
            Target::Object("photos".into(), "2024/a b.jpg".into())
        );
        assert_eq!(
            target(&parts("photos.localhost:4566", "/2024/x")).unwrap(),
            Target::Object("photos".into(), "2024/x".into())
        );
        assert!(target(&parts("localhost", "/Bad_Bucket/x")).is_err());
        assert!(!valid_bucket("192.168.1.1") && !valid_bucket("ab") && valid_bucket("my.bucket-1"));
    }

    #[test]
    fn ranges_and_preconditions_follow_http() {
        assert_eq!(byte_range("bytes=0-4", 10), Some((0, 4)));
        assert_eq!(byte_range("bytes=-3", 10), Some((7, 9)));
        assert_eq!(byte_range("bytes=10-", 10), None);
        let mut headers = HeaderMap::new();
        headers.insert("if-none-match", HeaderValue::from_static("\"abc\""));
        assert_eq!(
            precondition(&headers, "\"abc\"", 0.0),
            Some(StatusCode::NOT_MODIFIED)
        );
        let mut headers = HeaderMap::new();
        headers.insert("if-match", HeaderValue::from_static("\"other\""));
        assert_eq!(
            precondition(&headers, "\"abc\"", 0.0),
            Some(StatusCode::PRECONDITION_FAILED)
        );
        let date = http_date(1_700_000_000.0);
        assert_eq!(parse_http_date(&date), Some(1_700_000_000));
    }

    fn copy_source(header: &str) -> Result<CopySource, AwsError> {
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-copy-source", HeaderValue::from_str(header).unwrap());
        CopySource::from_headers(&headers)
    }

    fn source(bucket: &str, key: &str, version: Option<&str>) -> CopySource {
        CopySource {
            bucket: bucket.into(),
            key: key.into(),
            version: version.map(Into::into),
        }
    }

    #[test]
    fn a_copy_source_names_one_object_however_it_is_encoded() {
        for header in [
            "photos/a/b.jpg",
            "/photos/a/b.jpg",
            "photos%2Fa%2Fb.jpg",
            "%2Fphotos/a%2Fb.jpg",
        ] {
            assert_eq!(
                copy_source(header).unwrap(),
                source("photos", "a/b.jpg", None),
                "{header}"
            );
        }
        // An encoded `?` is part of the key; a bare one starts the query.
        assert_eq!(
            copy_source("photos/a%3Fb?versionId=null").unwrap(),
            source("photos", "a?b", Some("null"))
        );
        assert_eq!(copy_source("photos/a%20b%C3%A9").unwrap().key, "a bé");
        for bad in [
            "photos",
            "photos/",
            "//photos/a",
            "Photos/a",
            "photos%FF/a",
            "photos/%FF",
            "/",
        ] {
            let err = copy_source(bad).unwrap_err();
            assert_eq!(
                (err.status, &*err.code),
                (StatusCode::BAD_REQUEST, "InvalidArgument"),
                "{bad}"
            );
        }
        let long = format!("photos/{}", "k".repeat(MAX_KEY + 1));
        assert!(copy_source(&long).is_err());
        assert!(CopySource::from_headers(&HeaderMap::new()).is_err());
    }

    /// Allows every resource under a prefix, unless a resource policy is `deny`.
    struct Under(&'static str);

    impl nimbus_auth::authz::Authorizer for Under {
        fn authorize(
            &self,
            _: &nimbus_auth::Caller,
            _: Option<std::net::IpAddr>,
            access: &Access,
        ) -> Result<(), String> {
            if access.resource.starts_with(self.0) && access.resource_policy != Some("deny") {
                Ok(())
            } else {
                Err(format!(
                    "not allowed: {} on {}",
                    access.action, access.resource
                ))
            }
        }
    }

    fn core_with(buckets: &[&str]) -> (tempfile::TempDir, Core) {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(nimbus_storage::SqliteStore::open(&dir.path().join("m.db")).unwrap());
        let blobs = Arc::new(nimbus_storage::FsBlobStore::open(&dir.path().join("b")).unwrap());
        let store = Arc::new(Store::new(meta, blobs));
        for name in buckets {
            store
                .create_bucket(BucketRecord {
                    name: (*name).into(),
                    created_at: 0.0,
                    notifications: Vec::new(),
                    policy: None,
                })
                .unwrap();
        }
        (
            dir,
            Core {
                store,
                events: None,
            },
        )
    }

    fn caller_allowed(prefix: &'static str) -> RequestContext {
        RequestContext {
            request_id: "r".into(),
            caller: nimbus_auth::Caller {
                principal: nimbus_auth::Principal::root("000000000000"),
                access_key_id: String::new(),
                is_session: false,
            },
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            endpoint: String::new(),
            source_ip: None,
            secure: false,
            protocol: Protocol::RestXml,
            authorizer: Arc::new(Under(prefix)),
        }
    }

    #[test]
    fn a_batch_delete_deletes_only_the_keys_the_caller_may_delete() {
        let (_dir, core) = core_with(&["photos"]);
        for key in ["allowed/a", "other/b"] {
            core.store
                .put_bytes("photos", key, b"x", "text/plain")
                .unwrap();
        }
        let ctx = caller_allowed("arn:aws:s3:::photos/allowed/");
        let outcomes = core
            .delete_objects(&ctx, "photos", vec!["allowed/a".into(), "other/b".into()])
            .unwrap();
        let outcomes: Vec<(&str, Option<&str>)> = outcomes
            .iter()
            .map(|(key, outcome)| (key.as_str(), outcome.as_ref().err().map(|err| &*err.code)))
            .collect();
        assert_eq!(
            outcomes,
            [("allowed/a", None), ("other/b", Some("AccessDenied"))]
        );
        let left: Vec<String> = core
            .store
            .list("photos", "", None, 10)
            .unwrap()
            .into_iter()
            .map(|object| object.key)
            .collect();
        assert_eq!(left, ["other/b"]);
    }

    #[test]
    fn a_copy_source_is_read_under_the_source_buckets_policy() {
        let (_dir, core) = core_with(&["source"]);
        core.store
            .put_bytes("source", "k", b"x", "text/plain")
            .unwrap();
        let ctx = caller_allowed("arn:aws:s3:::source/");
        let source = source("source", "k", None);
        assert_eq!(core.copy_source(&ctx, &source).unwrap().key, "k");
        core.store
            .update_bucket("source", |record| record.policy = Some("deny".into()))
            .unwrap();
        let denied = core.copy_source(&ctx, &source).unwrap_err();
        assert_eq!(&*denied.code, "AccessDenied");
    }
}
