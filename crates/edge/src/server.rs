//! The listener and the path of one request: route to a service, read the bounded
//! body, authenticate, let the service parse and handle, shape errors, count.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use nimbus_auth::authz::{AllowAll, Authorizer};
use nimbus_auth::{AuthError, AuthMode, Authenticator, PayloadCheck, RequestParts};
use nimbus_storage::remote;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::body::TrackedBody;
use crate::forward;
use crate::metrics::Metrics;
use crate::protocol::{AwsError, Protocol};
use crate::service::{
    DynService, DynStreaming, RequestContext, Service, ServiceDescriptor, ServiceRequest,
    StreamBody, StreamingService, catalog,
};

/// A slow client gets this long to send its request head, and this long for its body.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(120);
/// HTTP/2 connections that stop answering pings are closed.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(60);

/// The address a request's connection came from.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::IpAddr);

/// Marks a request that came over TLS (`aws:SecureTransport`).
#[derive(Debug, Clone, Copy)]
pub struct SecureTransport;

/// The edge's TLS: one port takes HTTPS and plain HTTP alike, told apart by a
/// connection's first byte (a TLS handshake record starts with 22).
#[derive(Clone)]
pub struct Tls(Arc<tokio_native_tls::TlsAcceptor>);

impl Tls {
    /// From a PEM certificate chain (the server's first) and its PEM private key.
    pub fn from_pem(chain: &[u8], key: &[u8]) -> Result<Self, String> {
        let identity = native_tls::Identity::from_pkcs8(chain, key)
            .map_err(|err| format!("the certificate or key cannot be read: {err}"))?;
        let acceptor = native_tls::TlsAcceptor::builder(identity)
            .min_protocol_version(Some(native_tls::Protocol::Tlsv12))
            .build()
            .map_err(|err| format!("TLS cannot be set up: {err}"))?;
        Ok(Self(Arc::new(acceptor.into())))
    }
}

/// The AWS-facing front door of one nimbus server.
pub struct Edge {
    services: HashMap<&'static str, Arc<dyn DynService>>,
    streaming: HashMap<&'static str, Arc<dyn DynStreaming>>,
    /// Routers for requests addressed by host name (`*.<suffix>`), ahead of AWS routing.
    hosts: Vec<(String, Router)>,
    authenticator: Arc<Authenticator>,
    authorizer: Arc<dyn Authorizer>,
    metrics: Metrics,
    region: Arc<str>,
    account_id: Arc<str>,
    started: Instant,
    /// The deployment's nodes, for `/_nimbus/health`.
    nodes: Option<NodeList>,
    /// Where requests this node does not serve itself go, and how.
    forwarder: Option<(Forwarder, forward::Peers)>,
}

/// The node (`host:port`) to hand a request to, for requests another node must serve
/// (an invoke reaching a node that runs no code); none to serve it here.
pub type Forwarder = Arc<dyn Fn(&http::request::Parts) -> Option<String> + Send + Sync>;

/// What `/_nimbus/health` lists as the deployment's nodes; cheap (no I/O).
pub type NodeList = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

pub struct EdgeBuilder {
    edge: Edge,
    internal: Router,
}

impl EdgeBuilder {
    /// Mounts a service's own endpoints: under `/_nimbus/` (code downloads and the
    /// like) or a protocol's own paths (the registry's `/v2/`); they authenticate
    /// requests their own way.
    pub fn internal(mut self, routes: Router) -> Self {
        self.internal = self.internal.merge(routes);
        self
    }

    /// Who answers the services' authorization questions (default: allow all).
    pub fn authorizer(mut self, authorizer: Arc<dyn Authorizer>) -> Self {
        self.edge.authorizer = authorizer;
        self
    }

    /// The deployment's nodes, listed by `/_nimbus/health`.
    pub fn nodes(mut self, nodes: NodeList) -> Self {
        self.edge.nodes = Some(nodes);
        self
    }

    /// Hands the AWS requests `forwarder` picks a node for to that node, as they came
    /// (their clients' signatures stay good: the Host header is kept).
    pub fn forwarder(mut self, forwarder: Forwarder, peers: forward::Peers) -> Self {
        self.edge.forwarder = Some((forwarder, peers));
        self
    }

    pub fn service(mut self, service: impl Service) -> Self {
        let name = service.descriptor().signing_name;
        self.edge.services.insert(name, Arc::new(service));
        self
    }

    /// Sends every request whose host name ends with `suffix` (function URLs'
    /// `<id>.lambda-url.<region>.localhost`) to `router`, whatever its path.
    pub fn host_route(mut self, suffix: String, router: Router) -> Self {
        self.edge.hosts.push((suffix, router));
        self
    }

    pub fn streaming_service(mut self, service: impl StreamingService) -> Self {
        let name = service.descriptor().signing_name;
        self.edge.streaming.insert(name, Arc::new(service));
        self
    }

    /// Every route of the edge port: internal endpoints under `/_nimbus/`, AWS APIs
    /// everywhere else.
    pub fn build(self) -> Router {
        let edge = Arc::new(self.edge);
        Router::new()
            .route("/_nimbus/health", get(health))
            .route("/_nimbus/metrics", get(metrics))
            .route("/_nimbus/operations", get(operations))
            .route("/_nimbus/{*rest}", any(internal_not_found))
            .fallback(aws)
            .with_state(edge.clone())
            .merge(self.internal)
            .layer(axum::middleware::from_fn_with_state(edge, signed_first))
    }
}

/// API Gateway's REST paths begin with `/v2/`, as the registry's do: a request signed
/// for an AWS service (the registry's clients never sign) goes to that service.
async fn signed_first(
    State(edge): State<Arc<Edge>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    let signed = (path == "/v2" || path.starts_with("/v2/"))
        && nimbus_auth::sigv4::scope_service(&RequestParts {
            method: request.method().as_str(),
            path,
            query: request.uri().query().unwrap_or_default(),
            headers: request.headers(),
        })
        .is_some_and(|name| catalog::by_signing_name(&name).is_some());
    if signed {
        aws(State(edge), request).await
    } else {
        next.run(request).await
    }
}

/// Where a request goes, decided from its headers alone.
enum Route {
    Service(&'static ServiceDescriptor, Arc<dyn DynService>),
    Streaming(&'static ServiceDescriptor, Arc<dyn DynStreaming>),
    NotRunning(&'static ServiceDescriptor),
    Unknown { signing_name: Option<String> },
}

impl Edge {
    pub fn builder(
        authenticator: Arc<Authenticator>,
        region: &str,
        account_id: &str,
    ) -> EdgeBuilder {
        EdgeBuilder {
            edge: Edge {
                services: HashMap::new(),
                streaming: HashMap::new(),
                hosts: Vec::new(),
                authenticator,
                authorizer: Arc::new(AllowAll),
                metrics: Metrics::default(),
                region: region.into(),
                account_id: account_id.into(),
                started: Instant::now(),
                nodes: None,
                forwarder: None,
            },
            internal: Router::new(),
        }
    }

    fn route(&self, parts: &http::request::Parts) -> Route {
        let signing_name = nimbus_auth::sigv4::scope_service(&request_parts(parts));
        let presigned_v2 = parts.uri.query().is_some_and(|query| {
            query
                .split('&')
                .any(|pair| pair.starts_with("AWSAccessKeyId="))
        });
        let descriptor = match &signing_name {
            Some(name) => catalog::by_signing_name(name),
            // Only S3 has version 2 presigned URLs.
            None if presigned_v2 => Some(&catalog::S3),
            None => parts
                .headers
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .and_then(catalog::by_target),
        };
        match descriptor {
            Some(descriptor) => {
                if let Some(service) = self.services.get(descriptor.signing_name) {
                    Route::Service(descriptor, service.clone())
                } else if let Some(service) = self.streaming.get(descriptor.signing_name) {
                    Route::Streaming(descriptor, service.clone())
                } else {
                    Route::NotRunning(descriptor)
                }
            }
            None => Route::Unknown { signing_name },
        }
    }

    async fn handle(&self, request: Request, request_id: String) -> Response {
        let started = Instant::now();
        let (mut parts, body) = request.into_parts();
        // HTTP/2 carries the host as :authority, but SigV4 signs it as `host`.
        if !parts.headers.contains_key(header::HOST)
            && let Some(authority) = parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(header::HOST, authority);
        }
        let (descriptor, service) = match self.route(&parts) {
            Route::Service(descriptor, service) => (descriptor, service),
            Route::Streaming(descriptor, service) => {
                return self
                    .stream(descriptor, service, parts, body, request_id, started)
                    .await;
            }
            Route::NotRunning(descriptor) => {
                let err = AwsError::service_not_running(descriptor.name);
                return self.finish(
                    descriptor.protocol,
                    descriptor,
                    None,
                    Err(err),
                    &request_id,
                    started,
                );
            }
            Route::Unknown { signing_name } => {
                let protocol = Protocol::guess(&parts);
                let err = match signing_name {
                    Some(name) => AwsError::unknown_service(&name),
                    None => AwsError::from_auth(&AuthError::Missing, protocol),
                };
                let response = protocol.error_response(&err, &request_id, None);
                return self.respond(protocol, "unknown", None, response, &request_id, started);
            }
        };
        let protocol = if descriptor.also_query && Protocol::guess(&parts) == Protocol::Query {
            Protocol::Query
        } else {
            descriptor.protocol
        };
        let checked = self
            .authenticator
            .check_headers(&request_parts(&parts), OffsetDateTime::now_utc());
        let authenticated = match checked {
            Ok(checked) => match read_body(body, &parts.headers, protocol, descriptor.max_body)
                .await
            {
                Ok(body) => checked
                    .finish(&request_parts(&parts), &body, descriptor.path_style())
                    .map(|(caller, decoded)| (caller, decoded.map_or(body, Bytes::from))),
                Err(err) => {
                    return self.finish(protocol, descriptor, None, Err(err), &request_id, started);
                }
            },
            Err(err) => Err(err),
        };
        let (caller, body) = match authenticated {
            Ok(authenticated) => authenticated,
            Err(err) => {
                tracing::info!(error = %err, "request not authenticated");
                let err = AwsError::from_auth(&err, protocol);
                return self.finish(protocol, descriptor, None, Err(err), &request_id, started);
            }
        };
        let ctx = self.context(&parts, caller, &request_id, protocol);
        let (operation, result) = service.call(&ctx, ServiceRequest { parts, body }).await;
        self.finish(
            protocol,
            descriptor,
            operation,
            result,
            &request_id,
            started,
        )
    }

    /// A streaming service's request: authenticated from its headers, its body
    /// checked as the service reads it.
    async fn stream(
        &self,
        descriptor: &'static ServiceDescriptor,
        service: Arc<dyn DynStreaming>,
        parts: http::request::Parts,
        body: Body,
        request_id: String,
        started: Instant,
    ) -> Response {
        let protocol = descriptor.protocol;
        let now = OffsetDateTime::now_utc();
        let streamed = match self
            .authenticator
            .check_presigned_v2(&request_parts(&parts), now)
        {
            Some(checked) => checked.map(|caller| (caller, PayloadCheck::Unchecked)),
            None => self
                .authenticator
                .check_headers(&request_parts(&parts), now)
                .and_then(|checked| {
                    checked.stream(&request_parts(&parts), descriptor.path_style())
                }),
        };
        let (caller, check) = match streamed {
            Ok(streamed) => streamed,
            Err(err) => {
                tracing::info!(error = %err, "request not authenticated");
                let err = AwsError::from_auth(&err, protocol);
                return self.finish(protocol, descriptor, None, Err(err), &request_id, started);
            }
        };
        let ctx = self.context(&parts, caller, &request_id, protocol);
        let (operation, result) = service.call(ctx, parts, StreamBody::new(body, check)).await;
        let response = result.unwrap_or_else(|err| {
            protocol
                .error_response(&err, &request_id, descriptor.xml_namespace)
                .map(Body::from)
        });
        self.respond(
            protocol,
            descriptor.name,
            operation,
            response,
            &request_id,
            started,
        )
    }

    fn context(
        &self,
        parts: &http::request::Parts,
        caller: nimbus_auth::Caller,
        request_id: &str,
        protocol: Protocol,
    ) -> RequestContext {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let secure = parts.extensions.get::<SecureTransport>().is_some();
        RequestContext {
            request_id: request_id.to_owned(),
            caller,
            region: self.region.clone(),
            account_id: self.account_id.clone(),
            endpoint: format!("{}://{host}", if secure { "https" } else { "http" }),
            source_ip: parts.extensions.get::<Peer>().map(|peer| peer.0),
            secure,
            protocol,
            authorizer: self.authorizer.clone(),
        }
    }

    fn finish(
        &self,
        protocol: Protocol,
        descriptor: &'static ServiceDescriptor,
        operation: Option<&'static str>,
        result: Result<http::Response<Bytes>, AwsError>,
        request_id: &str,
        started: Instant,
    ) -> Response {
        let response = result.unwrap_or_else(|err| {
            protocol.error_response(&err, request_id, descriptor.xml_namespace)
        });
        self.respond(
            protocol,
            descriptor.name,
            operation,
            response,
            request_id,
            started,
        )
    }

    fn respond(
        &self,
        protocol: Protocol,
        service: &'static str,
        operation: Option<&'static str>,
        response: http::Response<impl Into<Body>>,
        request_id: &str,
        started: Instant,
    ) -> Response {
        let mut response = response.map(Into::into);
        if let Ok(value) = HeaderValue::from_str(request_id) {
            response
                .headers_mut()
                .insert(protocol.request_id_header(), value);
        }
        let status = response.status();
        let operation = operation.unwrap_or("unknown");
        let elapsed = started.elapsed();
        self.metrics
            .observe(service, operation, status.as_u16(), elapsed);
        tracing::debug!(
            service,
            operation,
            status = status.as_u16(),
            micros = elapsed.as_micros() as u64,
            "request done"
        );
        response
    }
}

fn request_parts(parts: &http::request::Parts) -> RequestParts<'_> {
    RequestParts {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or_default(),
        headers: &parts.headers,
    }
}

/// Reads a body no larger than `limit` within `BODY_READ_TIMEOUT`, refusing a
/// declared oversize length before reading a byte of it.
async fn read_body(
    body: Body,
    headers: &http::HeaderMap,
    protocol: Protocol,
    limit: usize,
) -> Result<Bytes, AwsError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(AwsError::too_large(protocol, limit));
    }
    let collected = tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, limit).collect())
        .await
        .map_err(|_| {
            AwsError::new(
                StatusCode::REQUEST_TIMEOUT,
                "RequestTimeout",
                "The request body was not received within the time allowed",
            )
        })?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
            Err(AwsError::too_large(protocol, limit))
        }
        Err(err) => Err(AwsError::new(
            StatusCode::BAD_REQUEST,
            "IncompleteBody",
            format!("The request body could not be read: {err}"),
        )),
    }
}

/// A request id shaped like AWS's (a UUID): a random prefix drawn once per process and
/// a counter, unique without asking the kernel for randomness on every request.
fn next_request_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&prefix.to_be_bytes());
    bytes[8..].copy_from_slice(&count.to_be_bytes());
    uuid::Builder::from_random_bytes(bytes)
        .with_variant(uuid::Variant::RFC4122)
        .with_version(uuid::Version::Random)
        .into_uuid()
        .to_string()
}

async fn aws(State(edge): State<Arc<Edge>>, request: Request) -> Response {
    let request = match &edge.forwarder {
        Some((forwarder, peers)) if !request.headers().contains_key(forward::FORWARDED) => {
            let (parts, body) = request.into_parts();
            if let Some(address) = forwarder(&parts) {
                return match peers
                    .forward(&address, Request::from_parts(parts, body))
                    .await
                {
                    Ok(response) => response,
                    Err(why) => {
                        tracing::warn!(%why, "forwarding a request to another node failed");
                        let failed = AwsError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "ServiceUnavailable",
                            "No node that runs functions answered. Please try again.",
                        );
                        let response =
                            Protocol::RestJson.error_response(&failed, &next_request_id(), None);
                        response.map(Body::from)
                    }
                };
            }
            Request::from_parts(parts, body)
        }
        _ => request,
    };
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host())
        .unwrap_or_default();
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    if let Some((_, router)) = edge
        .hosts
        .iter()
        .find(|(suffix, _)| name.ends_with(suffix.as_str()))
    {
        use tower::ServiceExt;
        return match router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
    }
    let request_id = next_request_id();
    let span = tracing::info_span!("request", request_id = %request_id);
    edge.handle(request, request_id).instrument(span).await
}

async fn health(State(edge): State<Arc<Edge>>) -> Response {
    let services: serde_json::Map<String, serde_json::Value> = catalog::ALL
        .iter()
        .map(|d| {
            let running = edge.services.contains_key(d.signing_name)
                || edge.streaming.contains_key(d.signing_name);
            let state = if running { "running" } else { "unavailable" };
            (d.name.to_owned(), state.into())
        })
        .collect();
    let degraded = [&*remote::METADATA, &*remote::BLOBS]
        .iter()
        .any(|backend| !backend.is_up());
    let backends = [&*remote::METADATA, &*remote::BLOBS]
        .map(|backend| {
            let state = if backend.is_up() { "ok" } else { "unreachable" };
            (backend.name().to_owned(), state.into())
        })
        .into_iter()
        .collect::<serde_json::Map<String, serde_json::Value>>();
    let body = serde_json::json!({
        "status": if degraded { "degraded" } else { "running" },
        "version": env!("CARGO_PKG_VERSION"),
        "region": &*edge.region,
        "account_id": &*edge.account_id,
        "auth": match edge.authenticator.mode() {
            AuthMode::Strict => "strict",
            AuthMode::Permissive => "permissive",
        },
        "uptime_seconds": edge.started.elapsed().as_secs(),
        "services": services,
        "backends": backends,
        "nodes": edge.nodes.as_ref().map_or(serde_json::json!([]), |nodes| nodes()),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Every running service's operations with their declared authorization, from
/// their routing tables: what `nimbus docs` writes to docs/.
async fn operations(State(edge): State<Arc<Edge>>) -> Response {
    let services: Vec<serde_json::Value> = catalog::ALL
        .iter()
        .filter_map(|d| {
            let operations = match (
                edge.services.get(d.signing_name),
                edge.streaming.get(d.signing_name),
            ) {
                (Some(service), _) => service.operations(),
                (None, Some(service)) => service.operations(),
                (None, None) => return None,
            };
            Some(serde_json::json!({
                "name": d.name,
                "signing_name": d.signing_name,
                "protocol": d.protocol.name(),
                "target_prefix": d.target_prefix,
                "operations": operations,
            }))
        })
        .collect();
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "services": services }).to_string(),
    )
        .into_response()
}

async fn metrics(State(edge): State<Arc<Edge>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        edge.metrics.render(),
    )
        .into_response()
}

async fn internal_not_found(request: Request) -> Response {
    let body = serde_json::json!({
        "error": "NotFound",
        "message": format!("no internal endpoint at {}", request.uri().path()),
    });
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Serves `router` on `listener` (HTTP/1.1 and h2c) until `shutdown` resolves, then
/// stops accepting and gives open requests up to `grace` to finish.
/// Whether a connection opens with a TLS handshake; none when it sends nothing in
/// time.
async fn tls_first(stream: &tokio::net::TcpStream) -> Option<bool> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(HEADER_READ_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1)) => Some(first[0] == 22),
        _ => None,
    }
}

pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Tls>,
    peers: forward::Peers,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEP_ALIVE)
        .keep_alive_timeout(HEADER_READ_TIMEOUT)
        .max_concurrent_streams(256);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (router, builder, watcher) = (router.clone(), builder.clone(), graceful.watcher());
                let (tls, peers) = (tls.clone(), peers.clone());
                tokio::spawn(async move {
                    let secure = match &tls {
                        Some(_) => match tls_first(&stream).await {
                            Some(secure) => secure,
                            None => return,
                        },
                        None => false,
                    };
                    // Each request carries its connection's peer, for `aws:SourceIp`,
                    // and whether it came over TLS, for `aws:SecureTransport`: its
                    // client's, when another node forwarded it.
                    let service = TowerToHyperService::new(tower::service_fn(
                        move |mut request: http::Request<hyper::body::Incoming>| {
                            request.extensions_mut().insert(Peer(peer.ip()));
                            if secure {
                                request.extensions_mut().insert(SecureTransport);
                            }
                            peers.admit(&mut request);
                            let http1 = request.version() < http::Version::HTTP_2;
                            let (parts, (body, ended)) = request.map(TrackedBody::new).into_parts();
                            let call = tower::ServiceExt::oneshot(
                                router.clone(),
                                http::Request::from_parts(parts, body),
                            );
                            async move {
                                let mut response = call.await?;
                                if http1 && !ended.load(std::sync::atomic::Ordering::Acquire) {
                                    response
                                        .headers_mut()
                                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                                }
                                Ok::<_, std::convert::Infallible>(response)
                            }
                        },
                    ));
                    let ended = match (tls, secure) {
                        (Some(Tls(acceptor)), true) => {
                            let accepted =
                                tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await;
                            let Ok(Ok(stream)) = accepted else {
                                tracing::debug!(%peer, "TLS handshake failed or timed out");
                                return;
                            };
                            let connection = builder.serve_connection(TokioIo::new(stream), service);
                            watcher.watch(connection.into_owned()).await
                        }
                        _ => {
                            let connection = builder.serve_connection(TokioIo::new(stream), service);
                            watcher.watch(connection.into_owned()).await
                        }
                    };
                    if let Err(err) = ended {
                        tracing::debug!(%peer, error = %err, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: no new connections, finishing open requests");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "open requests did not finish in time; closing them"
        );
    }
}
