//! OCI distribution v1.1 under `/v2/`: blobs (with ranges), uploads (monolithic,
//! POST-then-PUT, chunked, resumable, cross-repository mounts), manifests, tags and
//! referrers, with the spec's error bodies; plus the Bearer token endpoint.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::any;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use nimbus_auth::Principal;
use nimbus_edge::body::stream_reader;
use nimbus_edge::protocol::range::byte_range;
use nimbus_edge::{Peer, SecureTransport, forward};
use time::OffsetDateTime;

use crate::access::{BEARER_TOKEN_SECS, Identity, Refused};
use crate::names::{self, OciDigest, Reference};
use crate::store::{MAX_MANIFEST, OCI_INDEX, RegistryError, RepoRecord};
use crate::{Origin, Registry};

/// Bytes gathered from a request body before they go to disk in one blocking write.
const WRITE_BATCH: usize = 1 << 20;
/// The query parameter of a download URL that carries its token.
pub const DOWNLOAD_TOKEN: &str = "nimbus-token";
/// Oversized manifests up to this size are read (and dropped) before the 413.
const DRAIN_LIMIT: u64 = 4 * MAX_MANIFEST as u64;
/// The most tags or referrers one page holds.
const MAX_PAGE: usize = 1000;

/// The `/v2/` routes, to merge into the edge's router.
pub fn routes(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/v2", any(serve))
        .route("/v2/", any(serve))
        .route("/v2/{*rest}", any(serve))
        .with_state(registry)
}

/// What a `/v2/` path names.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Base,
    Token,
    Blob(String, String),
    Uploads(String),
    Upload(String, String),
    Manifest(String, String),
    Tags(String),
    Referrers(String, String),
}

/// Splits a path after `/v2/`. Repository names contain `/`, so the operation is
/// found from the end.
fn route(rest: &str) -> Option<Route> {
    if rest.is_empty() {
        return Some(Route::Base);
    }
    if rest == "token" {
        return Some(Route::Token);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name.to_owned()));
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Some(Route::Uploads(name.to_owned()));
    }
    for (marker, make) in [
        (
            "/blobs/uploads/",
            Route::Upload as fn(String, String) -> Route,
        ),
        ("/blobs/", Route::Blob),
        ("/manifests/", Route::Manifest),
        ("/referrers/", Route::Referrers),
    ] {
        if let Some(at) = rest.rfind(marker) {
            let (name, last) = (&rest[..at], &rest[at + marker.len()..]);
            if !last.is_empty() && !last.contains('/') && !name.is_empty() {
                return Some(make(name.to_owned(), last.to_owned()));
            }
        }
    }
    None
}

/// An error as the distribution spec shapes it.
struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
    challenge: Option<String>,
}

impl Failure {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            challenge: None,
        }
    }

    fn unauthorized(message: &str, challenge: String) -> Self {
        Self {
            challenge: Some(challenge),
            ..Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
        }
    }
}

impl From<RegistryError> for Failure {
    fn from(err: RegistryError) -> Self {
        use RegistryError as E;
        let (status, code) = match &err {
            E::RepositoryNotFound(_) => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
            E::NameInvalid(_) => (StatusCode::BAD_REQUEST, "NAME_INVALID"),
            E::TagInvalid(_) | E::TagImmutable { .. } | E::ImageExists { .. } => {
                (StatusCode::BAD_REQUEST, "TAG_INVALID")
            }
            E::DigestInvalid(_) => (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
            E::BlobUnknown(_) => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
            E::UploadUnknown => (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
            E::UploadInvalid(_) => (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
            E::ManifestUnknown(_) | E::NotFound(_) => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
            E::ManifestInvalid(_) => (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
            E::ManifestBlobUnknown(_) => (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"),
            E::TooManyUploads => (StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS"),
            E::RepositoryExists(_) | E::RepositoryNotEmpty(_) | E::InvalidParameter(_) => {
                (StatusCode::BAD_REQUEST, "UNSUPPORTED")
            }
            E::Internal(detail) => {
                tracing::error!(%detail, "registry failure");
                if nimbus_storage::backends_degraded() {
                    // Retryable, as the distribution registry answers when its storage
                    // driver cannot be reached.
                    return Failure::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "UNAVAILABLE",
                        "a storage backend is unreachable",
                    );
                }
                return Failure::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "UNKNOWN",
                    "internal error",
                );
            }
        };
        Failure::new(status, code, err.to_string())
    }
}

fn distribution_headers(response: &mut Response) {
    response.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
}

fn failure_response(failure: Failure) -> Response {
    let body = serde_json::json!({
        "errors": [{ "code": failure.code, "message": failure.message, "detail": null }]
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = failure.status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(challenge) = failure
        .challenge
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        headers.insert(header::WWW_AUTHENTICATE, challenge);
    }
    distribution_headers(&mut response);
    response
}

fn respond(status: StatusCode, headers: Vec<(&'static str, String)>, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    distribution_headers(&mut response);
    response
}

async fn serve(State(registry): State<Arc<Registry>>, request: Request) -> Response {
    match handle(registry, request).await {
        Ok(response) => response,
        Err(failure) => failure_response(failure),
    }
}

/// The request as the handlers need it.
struct Call {
    registry: Arc<Registry>,
    method: Method,
    headers: HeaderMap,
    query: Vec<(String, String)>,
    body: Body,
    caller: Option<Identity>,
    /// Where the connection came from (`aws:SourceIp`, `aws:SecureTransport`).
    source: Origin,
    /// The edge as the client addressed it, for the token realm.
    origin: String,
}

impl Call {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn principal(&self) -> Option<&Principal> {
        self.caller.as_ref().map(|caller| &caller.principal)
    }

    fn challenge(&self, scope: Option<String>) -> String {
        let mut challenge = format!(
            "Bearer realm=\"{}/v2/token\",service=\"{}\"",
            self.origin,
            self.origin
                .split_once("://")
                .map_or(self.origin.as_str(), |(_, host)| host)
        );
        if let Some(scope) = scope {
            challenge.push_str(&format!(",scope=\"{scope}\""));
        }
        challenge
    }

    /// The repository `name` if the caller may do `action` on it. Anonymous callers
    /// are challenged rather than told whether a repository exists.
    fn authorize(&self, name: &str, action: &str, push: bool) -> Result<RepoRecord, Failure> {
        if !names::valid_repository(name) {
            return Err(RegistryError::NameInvalid(name.to_owned()).into());
        }
        let scope = format!(
            "repository:{name}:{}",
            if push { "pull,push" } else { "pull" }
        );
        let repo = match self.registry.store.repository(name) {
            Ok(repo) => repo,
            Err(err) if self.caller.is_none() => {
                drop(err);
                return Err(Failure::unauthorized(
                    "authentication required",
                    self.challenge(Some(scope)),
                ));
            }
            Err(err) => return Err(err.into()),
        };
        if self
            .registry
            .permits(self.principal(), self.source, action, &repo)
        {
            return Ok(repo);
        }
        match &self.caller {
            None => Err(Failure::unauthorized(
                "authentication required",
                self.challenge(Some(scope)),
            )),
            Some(caller) => Err(Failure::new(
                StatusCode::FORBIDDEN,
                "DENIED",
                format!(
                    "User: {} is not authorized to perform: {action} on resource: {}",
                    caller.principal.arn(),
                    self.registry.repository_arn(name)
                ),
            )),
        }
    }
}

async fn handle(registry: Arc<Registry>, request: Request) -> Result<Response, Failure> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let rest = path
        .strip_prefix("/v2")
        .map(|rest| rest.strip_prefix('/').unwrap_or(rest))
        .unwrap_or_default();
    let decoded = percent_encoding::percent_decode_str(rest)
        .decode_utf8_lossy()
        .into_owned();
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or("localhost")
        .to_owned();
    let query: Vec<(String, String)> =
        form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    // Download URLs (`GetDownloadUrlForLayer`) carry a Bearer token in the query.
    let query_token = query
        .iter()
        .find(|(key, _)| key == DOWNLOAD_TOKEN)
        .map(|(_, token)| format!("Bearer {token}"));
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .or(query_token.as_deref());
    let now = OffsetDateTime::now_utc();
    let secure = parts.extensions.get::<SecureTransport>().is_some();
    let mut call = Call {
        registry: registry.clone(),
        method: parts.method.clone(),
        headers: parts.headers.clone(),
        query,
        body,
        caller: None,
        source: Origin {
            ip: parts.extensions.get::<Peer>().map(|peer| peer.0),
            secure,
        },
        origin: format!("{}://{host}", if secure { "https" } else { "http" }),
    };
    let route = route(&decoded)
        .ok_or_else(|| Failure::new(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "no such endpoint"))?;
    // An upload another node holds is continued there: that node checks the request's
    // credentials itself.
    if let Route::Upload(_, id) = &route
        && !call.headers.contains_key(forward::FORWARDED)
        && let Some((address, peers)) = registry.upload_elsewhere(id)
    {
        let mut request = http::Request::new(std::mem::replace(&mut call.body, Body::empty()));
        *request.method_mut() = call.method.clone();
        *request.uri_mut() = parts.uri.path_and_query().map_or_else(
            || "/".parse().expect("a path"),
            |p| p.as_str().parse().expect("a path"),
        );
        *request.headers_mut() = call.headers.clone();
        if let Some(ip) = call.source.ip {
            request.extensions_mut().insert(Peer(ip));
        }
        if call.source.secure {
            request.extensions_mut().insert(SecureTransport);
        }
        return peers
            .forward(&address, request)
            .await
            .map_err(|why| Failure::new(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN", why));
    }
    match registry.tokens.caller(authorization, now) {
        Ok(caller) => call.caller = caller,
        Err(Refused(reason)) => {
            return Err(Failure::unauthorized(reason, call.challenge(None)));
        }
    }
    match (route, call.method.clone()) {
        (Route::Base, Method::GET | Method::HEAD) => {
            // Any accepted credential will do, an anonymous Bearer token included: a
            // client that fetched one for a public repository checks it here.
            if authorization.is_none() {
                return Err(Failure::unauthorized(
                    "authentication required",
                    call.challenge(None),
                ));
            }
            Ok(respond(
                StatusCode::OK,
                vec![("content-type", "application/json".into())],
                Body::from("{}"),
            ))
        }
        (Route::Token, Method::GET) => Ok(token(&call, now)),
        (Route::Blob(name, digest), method @ (Method::GET | Method::HEAD)) => {
            get_blob(&call, &name, &digest, method == Method::HEAD)
        }
        (Route::Blob(name, digest), Method::DELETE) => {
            call.authorize(&name, "ecr:BatchDeleteImage", true)?;
            let digest = parse_digest(&digest)?;
            registry.store.unlink_blob(&name, &digest)?;
            Ok(respond(StatusCode::ACCEPTED, Vec::new(), Body::empty()))
        }
        (Route::Uploads(name), Method::POST) => start_upload(call, &name).await,
        (Route::Upload(name, id), Method::GET) => {
            call.authorize(&name, "ecr:UploadLayerPart", true)?;
            let upload = registry.upload(&name, &id).await?;
            Ok(upload_progress(
                StatusCode::NO_CONTENT,
                &name,
                &id,
                upload.offset,
            ))
        }
        (Route::Upload(name, id), Method::PATCH) => patch_upload(call, &name, &id).await,
        (Route::Upload(name, id), Method::PUT) => put_upload(call, &name, &id).await,
        (Route::Upload(name, id), Method::DELETE) => {
            call.authorize(&name, "ecr:UploadLayerPart", true)?;
            registry.upload(&name, &id).await?;
            registry.end_upload(&id);
            Ok(respond(StatusCode::NO_CONTENT, Vec::new(), Body::empty()))
        }
        (Route::Manifest(name, reference), method @ (Method::GET | Method::HEAD)) => {
            get_manifest(&call, &name, &reference, method == Method::HEAD)
        }
        (Route::Manifest(name, reference), Method::PUT) => {
            put_manifest(call, &name, &reference).await
        }
        (Route::Manifest(name, reference), Method::DELETE) => {
            call.authorize(&name, "ecr:BatchDeleteImage", true)?;
            let reference = parse_reference(&reference)?;
            match reference {
                Reference::Digest(digest) => {
                    registry.store.delete_manifest(&name, &digest)?;
                }
                Reference::Tag(tag) => registry.store.delete_tag(&name, &tag)?,
            }
            Ok(respond(StatusCode::ACCEPTED, Vec::new(), Body::empty()))
        }
        (Route::Tags(name), Method::GET) => tags(&call, &name),
        (Route::Referrers(name, digest), Method::GET) => referrers(&call, &name, &digest),
        _ => Err(Failure::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            format!("{} is not supported here", call.method),
        )),
    }
}

fn parse_digest(text: &str) -> Result<OciDigest, Failure> {
    text.parse()
        .map_err(|err: names::DigestError| RegistryError::DigestInvalid(err.to_string()).into())
}

fn parse_reference(text: &str) -> Result<Reference, Failure> {
    Reference::parse(text).ok_or_else(|| {
        if text.contains(':') {
            RegistryError::DigestInvalid(format!("invalid digest {text:?}")).into()
        } else {
            RegistryError::TagInvalid(text.to_owned()).into()
        }
    })
}

/// `GET /v2/token`: a Bearer token for whoever the Basic credentials name, or an
/// anonymous one; what the token may do is decided per request, not by its scope.
fn token(call: &Call, now: OffsetDateTime) -> Response {
    let key = call
        .caller
        .as_ref()
        .map(|caller| caller.access_key_id.as_str())
        .unwrap_or_default();
    let (token, _) = call.registry.tokens.issue(key, BEARER_TOKEN_SECS, now);
    let issued = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": BEARER_TOKEN_SECS,
        "issued_at": issued,
    });
    respond(
        StatusCode::OK,
        vec![("content-type", "application/json".into())],
        Body::from(body.to_string()),
    )
}

fn get_blob(call: &Call, name: &str, digest: &str, head: bool) -> Result<Response, Failure> {
    let action = if head {
        "ecr:BatchCheckLayerAvailability"
    } else {
        "ecr:GetDownloadUrlForLayer"
    };
    call.authorize(name, action, false)?;
    let digest = parse_digest(digest)?;
    let blob = call
        .registry
        .store
        .repo_blob(name, &digest)?
        .ok_or_else(|| RegistryError::BlobUnknown(digest.to_string()))?;
    let mut headers = vec![
        ("docker-content-digest", digest.to_string()),
        ("content-type", "application/octet-stream".to_owned()),
        ("accept-ranges", "bytes".to_owned()),
    ];
    let (status, start, end) = match call
        .headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
    {
        Some(range) => match byte_range(range, blob.size) {
            Some((start, end)) => {
                headers.push((
                    "content-range",
                    format!("bytes {start}-{end}/{}", blob.size),
                ));
                (StatusCode::PARTIAL_CONTENT, start, end)
            }
            None => {
                let mut failure = Failure::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "BLOB_UNKNOWN",
                    format!("range {range} is not satisfiable for {} bytes", blob.size),
                );
                failure.challenge = None;
                let mut response = failure_response(failure);
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{}", blob.size)) {
                    response.headers_mut().insert(header::CONTENT_RANGE, value);
                }
                return Ok(response);
            }
        },
        None => (StatusCode::OK, 0, blob.size.saturating_sub(1)),
    };
    let len = if blob.size == 0 { 0 } else { end - start + 1 };
    headers.push(("content-length", len.to_string()));
    if head {
        return Ok(respond(status, headers, Body::empty()));
    }
    let mut reader = call.registry.store.open_blob(&blob)?.reader;
    reader
        .seek(SeekFrom::Start(start))
        .map_err(RegistryError::from)?;
    Ok(respond(status, headers, stream_reader(reader.take(len))))
}

fn upload_progress(status: StatusCode, name: &str, id: &str, offset: u64) -> Response {
    respond(
        status,
        vec![
            ("location", format!("/v2/{name}/blobs/uploads/{id}")),
            ("range", format!("0-{}", offset.saturating_sub(1))),
            ("docker-upload-uuid", id.to_owned()),
            ("content-length", "0".to_owned()),
        ],
        Body::empty(),
    )
}

fn blob_created(name: &str, digest: &OciDigest) -> Response {
    respond(
        StatusCode::CREATED,
        vec![
            ("location", format!("/v2/{name}/blobs/{digest}")),
            ("docker-content-digest", digest.to_string()),
            ("content-length", "0".to_owned()),
        ],
        Body::empty(),
    )
}

fn owner(call: &Call) -> String {
    call.principal()
        .map_or_else(|| "anonymous".to_owned(), Principal::arn)
}

async fn start_upload(call: Call, name: &str) -> Result<Response, Failure> {
    call.authorize(name, "ecr:InitiateLayerUpload", true)?;
    let registry = call.registry.clone();
    if let (Some(mount), Some(from)) = (call.param("mount"), call.param("from")) {
        let digest = parse_digest(mount)?;
        // Mounted only when the caller may pull it from where it is; otherwise the
        // client gets a plain upload, as the spec says.
        let readable = names::valid_repository(from)
            && registry.store.repository(from).is_ok_and(|source| {
                registry.permits(call.principal(), call.source, "ecr:BatchGetImage", &source)
            })
            && registry.store.repo_blob(from, &digest)?.is_some();
        if readable && registry.store.mount_blob(name, &digest)?.is_some() {
            return Ok(blob_created(name, &digest));
        }
    }
    let id = registry.start_upload(name, &owner(&call))?;
    if let Some(digest) = call.param("digest").map(str::to_owned) {
        // A single POST carrying the whole blob.
        let digest = parse_digest(&digest)?;
        let outcome = finish(call, name, &id, &digest).await;
        registry.end_upload(&id);
        return outcome;
    }
    Ok(upload_progress(StatusCode::ACCEPTED, name, &id, 0))
}

/// Streams a request body onto the end of an upload.
async fn append(
    mut upload: tokio::sync::OwnedMutexGuard<crate::store::Upload>,
    body: Body,
) -> Result<tokio::sync::OwnedMutexGuard<crate::store::Upload>, Failure> {
    // A client that stops sending lets go of the upload's lock within the idle bound.
    let mut stream = http_body_util::BodyExt::into_data_stream(nimbus_edge::IdleBody::new(body));
    let mut batch: Vec<u8> = Vec::with_capacity(WRITE_BATCH);
    loop {
        let chunk = stream.next().await;
        let done = chunk.is_none();
        if let Some(chunk) = chunk {
            let chunk = chunk.map_err(|err| RegistryError::UploadInvalid(err.to_string()))?;
            batch.extend_from_slice(&chunk);
        }
        if batch.len() >= WRITE_BATCH || (done && !batch.is_empty()) {
            let bytes = std::mem::take(&mut batch);
            let (returned, written) = tokio::task::spawn_blocking(move || {
                let written = upload.write(&bytes);
                (upload, written)
            })
            .await
            .map_err(|err| RegistryError::Internal(err.to_string()))?;
            upload = returned;
            written?;
        }
        if done {
            return Ok(upload);
        }
    }
}

/// The 416 for a chunk whose `Content-Range` does not start where the upload ends.
fn out_of_order(call: &Call, name: &str, id: &str, offset: u64) -> Option<Response> {
    let range = call
        .headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())?;
    let range = range
        .trim()
        .trim_start_matches("bytes ")
        .trim_start_matches("bytes=");
    let start = range
        .split('-')
        .next()
        .and_then(|s| s.trim().parse::<u64>().ok());
    if start == Some(offset) {
        return None;
    }
    let mut response = failure_response(Failure::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "BLOB_UPLOAD_INVALID",
        format!("chunk {range} does not start at the upload's end ({offset})"),
    ));
    for (header, value) in [
        ("location", format!("/v2/{name}/blobs/uploads/{id}")),
        ("range", format!("0-{}", offset.saturating_sub(1))),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(header, value);
        }
    }
    Some(response)
}

async fn patch_upload(call: Call, name: &str, id: &str) -> Result<Response, Failure> {
    call.authorize(name, "ecr:UploadLayerPart", true)?;
    let upload = call.registry.upload(name, id).await?;
    if let Some(response) = out_of_order(&call, name, id, upload.offset) {
        return Ok(response);
    }
    let upload = append(upload, call.body).await?;
    Ok(upload_progress(
        StatusCode::ACCEPTED,
        name,
        id,
        upload.offset,
    ))
}

async fn put_upload(call: Call, name: &str, id: &str) -> Result<Response, Failure> {
    call.authorize(name, "ecr:CompleteLayerUpload", true)?;
    let digest = call
        .param("digest")
        .ok_or_else(|| {
            RegistryError::DigestInvalid("the digest query parameter is required".into())
        })
        .map_err(Failure::from)
        .and_then(parse_digest)?;
    let registry = call.registry.clone();
    let outcome = finish(call, name, id, &digest).await;
    // Spec: a failed PUT ends the upload too, except for a chunk out of order.
    if !matches!(&outcome, Ok(response) if response.status() == StatusCode::RANGE_NOT_SATISFIABLE) {
        registry.end_upload(id);
    }
    outcome
}

/// Appends a request's (last) bytes and turns the upload into the blob `digest`.
async fn finish(call: Call, name: &str, id: &str, digest: &OciDigest) -> Result<Response, Failure> {
    let registry = call.registry.clone();
    let upload = registry.upload(name, id).await?;
    if let Some(response) = out_of_order(&call, name, id, upload.offset) {
        return Ok(response);
    }
    let mut upload = append(upload, call.body).await?;
    let expected = digest.clone();
    tokio::task::spawn_blocking(move || registry.store.finish_upload(&mut upload, &expected))
        .await
        .map_err(|err| RegistryError::Internal(err.to_string()))??;
    Ok(blob_created(name, digest))
}

fn get_manifest(call: &Call, name: &str, reference: &str, head: bool) -> Result<Response, Failure> {
    call.authorize(name, "ecr:BatchGetImage", false)?;
    let reference = parse_reference(reference)?;
    let store = &call.registry.store;
    let manifest = store
        .resolve(name, &reference)?
        .ok_or_else(|| RegistryError::ManifestUnknown(format!("{reference:?}")))?;
    let headers = vec![
        ("content-type", manifest.media_type.clone()),
        ("docker-content-digest", manifest.digest.clone()),
        ("content-length", manifest.size.to_string()),
    ];
    if head {
        return Ok(respond(StatusCode::OK, headers, Body::empty()));
    }
    let bytes = store.manifest_bytes(&manifest)?;
    if let Err(err) = store.record_pull(name, &manifest) {
        tracing::warn!(error = %err, "recording a pull failed");
    }
    Ok(respond(StatusCode::OK, headers, Body::from(bytes)))
}

async fn put_manifest(call: Call, name: &str, reference: &str) -> Result<Response, Failure> {
    let repo = call.authorize(name, "ecr:PutImage", true)?;
    let reference = parse_reference(reference)?;
    let declared = call
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "SIZE_INVALID",
            format!("manifests are limited to {MAX_MANIFEST} bytes"),
        )
    };
    if declared.is_some_and(|len| len > DRAIN_LIMIT) {
        return Err(too_large());
    }
    // A body a little too large is read to its end before the refusal, so the
    // client gets the 413 rather than a connection reset mid-send.
    let bytes = nimbus_edge::read_whole(call.body, DRAIN_LIMIT as usize)
        .await
        .map_err(|err| match err {
            nimbus_edge::BodyError::Idle(_) => Failure::new(
                StatusCode::REQUEST_TIMEOUT,
                "MANIFEST_INVALID",
                err.to_string(),
            ),
            _ => too_large(),
        })?;
    if bytes.len() > MAX_MANIFEST {
        return Err(too_large());
    }
    let content_type = call
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let pushed =
        call.registry
            .store
            .put_manifest(&repo, &reference, content_type.as_deref(), &bytes)?;
    let mut headers = vec![
        (
            "location",
            format!("/v2/{name}/manifests/{}", pushed.digest),
        ),
        ("docker-content-digest", pushed.digest.to_string()),
        ("content-length", "0".to_owned()),
    ];
    if let Some(subject) = pushed.subject {
        headers.push(("oci-subject", subject.to_string()));
    }
    Ok(respond(StatusCode::CREATED, headers, Body::empty()))
}

/// The page size a client asked for, clamped to what a page may hold.
fn page_size(call: &Call) -> Result<usize, Failure> {
    match call.param("n") {
        None => Ok(MAX_PAGE),
        Some(n) => n.parse::<usize>().map(|n| n.min(MAX_PAGE)).map_err(|_| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                "PAGINATION_NUMBER_INVALID",
                "n must be a number",
            )
        }),
    }
}

fn tags(call: &Call, name: &str) -> Result<Response, Failure> {
    call.authorize(name, "ecr:ListImages", false)?;
    let n = page_size(call)?;
    let last = call.param("last");
    let mut tags = if n == 0 {
        Vec::new()
    } else {
        call.registry.store.tag_page(name, last, n + 1)?
    };
    let mut headers = vec![("content-type", "application/json".to_owned())];
    if tags.len() > n {
        tags.truncate(n);
        let last = tags.last().cloned().unwrap_or_default();
        headers.push((
            "link",
            format!("</v2/{name}/tags/list?n={n}&last={last}>; rel=\"next\""),
        ));
    }
    let body = serde_json::json!({ "name": name, "tags": tags });
    Ok(respond(
        StatusCode::OK,
        headers,
        Body::from(body.to_string()),
    ))
}

fn referrers(call: &Call, name: &str, digest: &str) -> Result<Response, Failure> {
    call.authorize(name, "ecr:BatchGetImage", false)?;
    let digest = parse_digest(digest)?;
    let filter = call.param("artifactType");
    let mut found = call.registry.store.referrers(name, &digest)?;
    if let Some(filter) = filter {
        found.retain(|manifest| manifest.artifact_type.as_deref() == Some(filter));
    }
    found.sort_by(|a, b| a.digest.cmp(&b.digest));
    let after = call.param("last");
    if let Some(after) = after {
        found.retain(|manifest| manifest.digest.as_str() > after);
    }
    let mut headers = vec![("content-type", OCI_INDEX.to_owned())];
    if found.len() > MAX_PAGE {
        found.truncate(MAX_PAGE);
        let last = found.last().map(|m| m.digest.clone()).unwrap_or_default();
        let mut link = format!("</v2/{name}/referrers/{digest}?last={last}");
        if let Some(filter) = filter {
            link.push_str(&format!("&artifactType={filter}"));
        }
        headers.push(("link", format!("{link}>; rel=\"next\"")));
    }
    if filter.is_some() {
        headers.push(("oci-filters-applied", "artifactType".to_owned()));
    }
    let manifests: Vec<serde_json::Value> = found
        .iter()
        .map(|manifest| {
            let mut descriptor = serde_json::json!({
                "mediaType": manifest.media_type,
                "digest": manifest.digest,
                "size": manifest.size,
            });
            if let Some(artifact_type) = &manifest.artifact_type {
                descriptor["artifactType"] = artifact_type.clone().into();
            }
            if let Some(annotations) = &manifest.annotations {
                descriptor["annotations"] = annotations.clone();
            }
            descriptor
        })
        .collect();
    let body =
        serde_json::json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
    Ok(respond(
        StatusCode::OK,
        headers,
        Body::from(body.to_string()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_from_the_end() {
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(route(""), Some(Route::Base));
        assert_eq!(
            route(&format!("a/blobs/b/blobs/{digest}")),
            Some(Route::Blob("a/blobs/b".into(), digest.clone()))
        );
        assert_eq!(
            route("lib/app/blobs/uploads/"),
            Some(Route::Uploads("lib/app".into()))
        );
        assert_eq!(
            route("app/blobs/uploads/123"),
            Some(Route::Upload("app".into(), "123".into()))
        );
        assert_eq!(
            route("a/b/manifests/v1"),
            Some(Route::Manifest("a/b".into(), "v1".into()))
        );
        assert_eq!(route("a/tags/list"), Some(Route::Tags("a".into())));
        assert_eq!(route("manifests/v1"), None);
    }
}
