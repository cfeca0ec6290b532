//! The invoke URLs: a request matched to a route of an API's stage and handed to the
//! route's integration, a Lambda function invoked with API Gateway's proxy event.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::any;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use nimbus_auth::authz::{Access, Authorizer};
use nimbus_auth::{Authenticator, PathStyle, RequestParts};
use nimbus_lambda::Functions;
use nimbus_lambda::function_urls::{EventRoute, addressed, answer, event};
use nimbus_lambda::invoke::{InvokeRequest, Invoker};
use nimbus_lambda::names::FunctionRef;
use nimbus_logs::{LogEvent, LogSink};
use serde_json::{Value, json};

use crate::jwt::Refusal;
use crate::{Api, Apis, Served};

mod rest;

const PATH_PREFIX: &str = "/_nimbus/execute-api/";
/// API Gateway's payload limit.
const MAX_BODY: usize = 10 << 20;
const PRINCIPAL: &str = "apigateway.amazonaws.com";
/// How long an `HTTP_PROXY` integration may take, as API Gateway's limit.
const PROXY_TIMEOUT: Duration = Duration::from_secs(30);
/// Headers of one connection, not passed on by a proxy.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// The host name suffix of invoke URLs: `<api>.execute-api.<region>.localhost`.
pub fn host_suffix(region: &str) -> String {
    format!(".execute-api.{region}.localhost")
}

/// The function an integration URI names: a function ARN, or API Gateway's
/// `arn:aws:apigateway:<region>:lambda:path/2015-03-31/functions/<arn>/invocations`.
pub fn function_of(uri: &str) -> Option<&str> {
    let arn = match uri.split_once(":lambda:path/2015-03-31/functions/") {
        Some((_, rest)) => rest.strip_suffix("/invocations")?,
        None => uri,
    };
    arn.starts_with("arn:aws:lambda:").then_some(arn)
}

pub struct InvokeServer {
    apis: Arc<Apis>,
    functions: Arc<Functions>,
    invoker: Arc<Invoker>,
    authorizer: Arc<dyn Authorizer>,
    authenticator: Arc<Authenticator>,
    tokens: crate::jwt::Verifier,
    /// Lambda authorizers' cached answers by authorizer and identity.
    verdicts: std::sync::Mutex<HashMap<String, (std::time::Instant, Value)>>,
    /// Each throttled route's token bucket: tokens left, and when it was last filled.
    buckets: std::sync::Mutex<HashMap<String, (f64, std::time::Instant)>>,
    logs: LogSink,
    /// The egress policy, for `HTTP_PROXY` integrations.
    permits: Arc<dyn Fn(std::net::IpAddr) -> bool + Send + Sync>,
}

impl InvokeServer {
    pub fn new(
        apis: Arc<Apis>,
        functions: Arc<Functions>,
        invoker: Arc<Invoker>,
        (authenticator, authorizer): (Arc<Authenticator>, Arc<dyn Authorizer>),
        permits: Arc<dyn Fn(std::net::IpAddr) -> bool + Send + Sync>,
        logs: LogSink,
    ) -> Arc<Self> {
        Arc::new(Self {
            apis,
            functions,
            invoker,
            authorizer,
            authenticator,
            tokens: crate::jwt::Verifier::new(permits.clone()),
            verdicts: std::sync::Mutex::new(HashMap::new()),
            buckets: std::sync::Mutex::new(HashMap::new()),
            logs,
            permits,
        })
    }

    /// The path form: `/_nimbus/execute-api/<api>/<stage>/...`.
    pub fn routes(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/_nimbus/execute-api/{api}", any(serve))
            .route("/_nimbus/execute-api/{api}/{*path}", any(serve))
            .with_state(self.clone())
    }

    /// The host form, for the edge's host routing.
    pub fn host_router(self: &Arc<Self>) -> Router {
        Router::new().fallback(serve).with_state(self.clone())
    }
}

fn message(status: StatusCode, text: &str) -> Response {
    let mut response = Response::new(Body::from(json!({ "message": text }).to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A route and the path parameters a request gives it.
type Matched<'a> = (&'a Value, BTreeMap<String, String>);

/// The route a request takes and its path parameters: of the routes whose method
/// (or `ANY`) and path match, one without a greedy `{name+}`, then with the most
/// literal segments, then of the request's own method; else `$default`.
fn route_for<'a>(routes: &'a [Value], method: &str, path: &str) -> Option<Matched<'a>> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut best: Option<((bool, usize, bool), Matched<'a>)> = None;
    for route in routes {
        let key = route["routeKey"].as_str().unwrap_or_default();
        let Some((route_method, template)) = key.split_once(' ') else {
            continue;
        };
        if route_method != "ANY" && route_method != method {
            continue;
        }
        let pattern: Vec<&str> = template.trim_start_matches('/').split('/').collect();
        let mut parameters = BTreeMap::new();
        let mut literals = 0;
        let mut greedy = false;
        let mut matched = true;
        for (n, part) in pattern.iter().enumerate() {
            if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix("+}")) {
                let rest = segments.get(n..).map(|s| s.join("/")).unwrap_or_default();
                matched &= !rest.is_empty();
                parameters.insert(name.to_owned(), rest);
                greedy = true;
                break;
            }
            let Some(segment) = segments.get(n) else {
                matched = false;
                break;
            };
            match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) => {
                    matched &= !segment.is_empty();
                    parameters.insert(name.to_owned(), (*segment).to_owned());
                }
                None if part == segment => literals += 1,
                None => matched = false,
            }
        }
        if !greedy && pattern.len() != segments.len() {
            matched = false;
        }
        // A full match beats a greedy one, then more literal segments, then the
        // request's own method over `ANY`.
        let rank = (!greedy, literals, route_method != "ANY");
        if matched && best.as_ref().is_none_or(|(r, _)| rank > *r) {
            best = Some((rank, (route, parameters)));
        }
    }
    best.map(|(_, matched)| matched).or_else(|| {
        routes
            .iter()
            .find(|r| r["routeKey"] == "$default")
            .map(|r| (r, BTreeMap::new()))
    })
}

/// The payload format 1.0 event of a request.
fn event_v1(
    parts: &http::request::Parts,
    path: &str,
    resource: &str,
    stage: &str,
    parameters: &BTreeMap<String, String>,
    body: &[u8],
    api_id: &str,
) -> Value {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut multi_headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = value.to_str().unwrap_or_default().to_owned();
        multi_headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(value.clone());
        headers.insert(name.as_str().to_owned(), value);
    }
    let mut query: BTreeMap<String, String> = BTreeMap::new();
    let mut multi_query: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, value) in form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes()) {
        multi_query
            .entry(key.to_string())
            .or_default()
            .push(value.to_string());
        query.insert(key.into_owned(), value.into_owned());
    }
    let text = std::str::from_utf8(body).ok();
    let null_if_empty = |value: Value| {
        if value.as_object().is_some_and(|o| o.is_empty()) {
            Value::Null
        } else {
            value
        }
    };
    let now = time::OffsetDateTime::now_utc();
    json!({
        "version": "1.0",
        "resource": resource,
        "path": path,
        "httpMethod": parts.method.as_str(),
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": null_if_empty(json!(query)),
        "multiValueQueryStringParameters": null_if_empty(json!(multi_query)),
        "pathParameters": null_if_empty(json!(parameters)),
        "stageVariables": Value::Null,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": api_id,
            "domainName": headers.get("host").cloned().unwrap_or_default(),
            "httpMethod": parts.method.as_str(),
            "path": path,
            "protocol": "HTTP/1.1",
            "requestId": uuid::Uuid::new_v4().to_string(),
            "resourcePath": resource,
            "stage": stage,
            "identity": { "sourceIp": "127.0.0.1", "userAgent": headers.get("user-agent").cloned().unwrap_or_default() },
            "requestTimeEpoch": (now.unix_timestamp_nanos() / 1_000_000) as i64,
        },
        "body": if body.is_empty() { Value::Null } else { text.map_or_else(|| STANDARD.encode(body).into(), Value::from) },
        "isBase64Encoded": text.is_none() && !body.is_empty(),
    })
}

/// The stage a path goes to and the path within it: the `$default` stage takes every
/// path; otherwise the path's first segment names the stage.
fn staged<'a>(api: &'a Api, path: &str) -> Option<(&'a Value, String)> {
    if let Some(stage) = api.stages.iter().find(|s| s["stageName"] == "$default") {
        return Some((stage, path.to_owned()));
    }
    let rest = path.trim_start_matches('/');
    let (name, within) = rest.split_once('/').unwrap_or((rest, ""));
    let stage = api.stages.iter().find(|s| s["stageName"] == name)?;
    Some((stage, format!("/{within}")))
}

/// What a route's authorization makes of a request: nothing to check (`NONE`), a
/// caller whose SigV4 signature verifies and who may `execute-api:Invoke` the
/// request's ARN (`AWS_IAM`), or the verified token's claims and scopes (`JWT`) for
/// the event.
async fn authorize(
    server: &InvokeServer,
    api: &Api,
    route: &Value,
    request: (&http::request::Parts, &[u8]),
    at: &At<'_>,
) -> Result<Option<Value>, Refusal> {
    let (parts, body) = request;
    match route["authorizationType"].as_str() {
        Some("JWT") => {}
        Some("CUSTOM") => {
            let authorizer = api
                .authorizers
                .iter()
                .find(|a| a["authorizerId"] == route["authorizerId"])
                .ok_or_else(|| Refusal::Broken("the route's authorizer is gone".into()))?;
            return server.ask(api, authorizer, request, at).await.map(Some);
        }
        Some("AWS_IAM") => return iam_allows(server, parts, body, at.arn).map(|()| None),
        _ => return Ok(None),
    }
    let authorizer = api
        .authorizers
        .iter()
        .find(|a| a["authorizerId"] == route["authorizerId"])
        .ok_or_else(|| Refusal::Unauthorized("the route's authorizer is gone".into()))?;
    let header = authorizer["identitySource"][0]
        .as_str()
        .and_then(|source| source.strip_prefix("$request.header."))
        .unwrap_or("Authorization");
    let token = parts
        .headers
        .get(header)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| Refusal::Unauthorized(format!("no {header} header")))?;
    let scopes: Vec<String> = route["authorizationScopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    server
        .tokens
        .verify(token, &authorizer["jwtConfiguration"], &scopes)
        .await
        .map(Some)
}

/// Whether a request's SigV4 signature verifies and its caller may
/// `execute-api:Invoke` `arn`.
fn iam_allows(
    server: &InvokeServer,
    parts: &http::request::Parts,
    body: &[u8],
    arn: &str,
) -> Result<(), Refusal> {
    let signed = RequestParts {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or_default(),
        headers: &parts.headers,
    };
    let (caller, _) = server
        .authenticator
        .check_headers(&signed, time::OffsetDateTime::now_utc())
        .and_then(|checked| checked.finish(&signed, body, PathStyle::Normalized))
        .map_err(|_| Refusal::Forbidden)?;
    let access = Access::new("execute-api:Invoke", arn);
    server
        .authorizer
        .authorize(&caller, None, &access)
        .map_err(|_| Refusal::Forbidden)?;
    Ok(())
}

/// A proxy answer's `multiValueHeaders` (format 1.0) added to its response.
fn with_multi_value_headers(mut response: Response, payload: &[u8]) -> Response {
    let Ok(shaped) = serde_json::from_slice::<Value>(payload) else {
        return response;
    };
    for (name, values) in shaped["multiValueHeaders"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let Ok(name) = http::HeaderName::try_from(name.as_str()) else {
            continue;
        };
        for value in values.as_array().into_iter().flatten() {
            let text = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            if let Ok(value) = HeaderValue::from_str(&text) {
                response.headers_mut().append(name.clone(), value);
            }
        }
    }
    response
}

pub async fn serve(State(server): State<Arc<InvokeServer>>, request: Request) -> Response {
    let started = std::time::Instant::now();
    let (parts, body) = request.into_parts();
    let (api_id, path) = addressed(&parts, &host_suffix(&server.apis.region), PATH_PREFIX);
    // A `.` or `..` segment could step out of an integration's base path.
    let dotted = path.split('/').any(|segment| {
        let segment = segment.to_ascii_lowercase().replace("%2e", ".");
        segment == "." || segment == ".."
    });
    if dotted {
        return message(StatusCode::NOT_FOUND, "Not Found");
    }
    let served = match server.apis.cached(&api_id) {
        Some(served) => Some(served),
        None => {
            let (apis, api_id) = (server.apis.clone(), api_id.clone());
            tokio::task::spawn_blocking(move || apis.served(&api_id))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
        }
    };
    let api = match served {
        Some(Served::Http(api)) => api,
        Some(Served::Rest(rest)) => return server.serve_rest(&rest, parts, &path, body).await,
        None => return message(StatusCode::NOT_FOUND, "Not Found"),
    };
    let Some((stage, path)) = staged(&api, &path) else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    let mut trace = Trace {
        request_id: uuid::Uuid::new_v4().to_string(),
        route_key: "-".to_owned(),
    };
    let response = server
        .respond(&api, stage, &parts, &path, body, &mut trace)
        .await;
    let facts = Facts {
        api_id: &api_id,
        stage: stage["stageName"].as_str().unwrap_or_default(),
        parts: &parts,
        path: &path,
        route_key: &trace.route_key,
        request_id: &trace.request_id,
        started,
    };
    logged(&server.logs, stage, response, "apigw-requestid", &facts).await
}

/// `response`, carrying its request's id in `id_header`, once the stage's access
/// log line is written.
async fn logged(
    logs: &LogSink,
    stage: &Value,
    mut response: Response,
    id_header: &'static str,
    facts: &Facts<'_>,
) -> Response {
    if let Ok(value) = HeaderValue::from_str(facts.request_id) {
        response.headers_mut().insert(id_header, value);
    }
    let length = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let answered = (response.status().as_u16(), length);
    access_log(logs, &stage["accessLogSettings"], facts, answered).await;
    response
}

/// What an access log line may say of a request.
struct Facts<'a> {
    api_id: &'a str,
    stage: &'a str,
    parts: &'a http::request::Parts,
    path: &'a str,
    route_key: &'a str,
    request_id: &'a str,
    started: std::time::Instant,
}

/// Writes a stage's access log line, in its `format`, to its `destinationArn` log
/// group (stream `<api>_<stage>`), if the stage keeps one; `answered` is the
/// response's status and length.
async fn access_log(
    logs: &LogSink,
    settings: &Value,
    facts: &Facts<'_>,
    (status, length): (u16, &str),
) {
    let (Some(destination), Some(format)) = (
        settings["destinationArn"].as_str(),
        settings["format"].as_str(),
    ) else {
        return;
    };
    let Some(group) = destination
        .split_once(":log-group:")
        .map(|(_, group)| group.trim_end_matches(":*"))
    else {
        return;
    };
    let now = time::OffsetDateTime::now_utc();
    let header = |name: header::HeaderName| {
        facts
            .parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    // Longest names first, so `$context.requestTimeEpoch` is not read as
    // `$context.requestTime` and more.
    let variables = [
        (
            "$context.requestTimeEpoch",
            (now.unix_timestamp_nanos() / 1_000_000).to_string(),
        ),
        ("$context.identity.userAgent", header(header::USER_AGENT)),
        ("$context.identity.sourceIp", "127.0.0.1".to_owned()),
        (
            "$context.responseLatency",
            facts.started.elapsed().as_millis().to_string(),
        ),
        ("$context.responseLength", length.to_owned()),
        (
            "$context.requestTime",
            now.format(&time::format_description::well_known::Rfc2822)
                .unwrap_or_default(),
        ),
        (
            "$context.httpMethod",
            facts.parts.method.as_str().to_owned(),
        ),
        ("$context.requestId", facts.request_id.to_owned()),
        ("$context.routeKey", facts.route_key.to_owned()),
        ("$context.protocol", "HTTP/1.1".to_owned()),
        ("$context.status", status.to_string()),
        ("$context.apiId", facts.api_id.to_owned()),
        ("$context.stage", facts.stage.to_owned()),
        ("$context.path", facts.path.to_owned()),
    ];
    let line = variables
        .iter()
        .fold(format.to_owned(), |line, (name, value)| {
            line.replace(name, value)
        });
    let stream = format!("{}_{}", facts.api_id, facts.stage.trim_start_matches('$'));
    let event = LogEvent {
        timestamp: (now.unix_timestamp_nanos() / 1_000_000) as i64,
        message: line,
    };
    logs.append(group, &stream, vec![event]).await;
}

/// Whether an authorizer's IAM policy allows `execute-api:Invoke` on `arn`: an Allow
/// statement naming it, and no Deny.
fn policy_allows(policy: &Value, arn: &str) -> bool {
    let names = |value: &Value| -> Vec<String> {
        match value {
            Value::String(one) => vec![one.clone()],
            Value::Array(many) => many
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut allowed = false;
    for statement in policy["Statement"].as_array().into_iter().flatten() {
        let acts = names(&statement["Action"])
            .iter()
            .any(|a| nimbus_patterns::wildcard(a, "execute-api:Invoke"));
        let on = names(&statement["Resource"])
            .iter()
            .any(|r| nimbus_patterns::wildcard(r, arn));
        match statement["Effect"].as_str() {
            Some("Deny") if acts && on => return false,
            Some("Allow") if acts && on => allowed = true,
            _ => {}
        }
    }
    allowed
}

/// A response's body, refused beyond `limit` bytes before it is all read.
pub(crate) async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(format!("the answer is over {limit} bytes"));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|err| err.to_string())? {
        if bytes.len() + chunk.len() > limit {
            return Err(format!("the answer is over {limit} bytes"));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Where a request is going, for its authorizer.
struct At<'a> {
    /// Its execute-api ARN: `<api>/<stage>/<METHOD>/<path>`.
    arn: &'a str,
    stage: &'a str,
    path: &'a str,
    route_key: &'a str,
    parameters: &'a BTreeMap<String, String>,
}

/// How long a Lambda authorizer may take, as API Gateway allows.
const AUTHORIZER_TIMEOUT: Duration = Duration::from_secs(10);
/// Cached authorizer answers kept at most, and the longest any is good for.
const MAX_VERDICTS: usize = 10_000;
const MAX_VERDICT_AGE: Duration = Duration::from_secs(3600);

/// A request's id, and the key of the route that took it, for its access log line.
struct Trace {
    request_id: String,
    route_key: String,
}

impl InvokeServer {
    /// Answers a request to one of an API's stages: a CORS preflight, else its route's
    /// authorization and integration.
    async fn respond(
        &self,
        api: &Api,
        stage: &Value,
        parts: &http::request::Parts,
        path: &str,
        body: Body,
        trace: &mut Trace,
    ) -> Response {
        let api_id = api.api["apiId"].as_str().unwrap_or_default();
        // The API's CORS configuration (camelCase) in Lambda's `Cors` shape.
        let cors = api.api["corsConfiguration"].as_object().map(|config| {
            config
                .iter()
                .map(|(key, value)| {
                    let mut chars = key.chars();
                    let first = chars.next().map(|c| c.to_ascii_uppercase());
                    (
                        first.into_iter().chain(chars).collect::<String>(),
                        value.clone(),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        });
        let origin = parts
            .headers
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .map(str::to_owned);
        // Preflights are answered here when the API has a CORS configuration.
        if cors.is_some()
            && parts.method == http::Method::OPTIONS
            && parts.headers.contains_key("access-control-request-method")
        {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            nimbus_lambda::function_urls::cors(
                &mut response,
                cors.as_ref(),
                origin.as_deref(),
                true,
            );
            return response;
        }
        let stage_name = stage["stageName"].as_str().unwrap_or_default().to_owned();
        let Some((route, parameters)) = route_for(&api.routes, parts.method.as_str(), path) else {
            return message(StatusCode::NOT_FOUND, "Not Found");
        };
        let route_key = route["routeKey"].as_str().unwrap_or_default().to_owned();
        trace.route_key = route_key.clone();
        let settings = match &stage["routeSettings"][&route_key] {
            Value::Object(_) => &stage["routeSettings"][&route_key],
            _ => &stage["defaultRouteSettings"],
        };
        let bucket = format!("{api_id}/{stage_name}/{route_key}");
        let body = match self.admitted(bucket, settings, body).await {
            Ok(body) => body,
            Err(refused) => return refused,
        };
        let invoked = self.execute_arn(api_id, &stage_name, parts.method.as_str(), path);
        let at = At {
            arn: &invoked,
            stage: &stage_name,
            path,
            route_key: &route_key,
            parameters: &parameters,
        };
        let identity = match authorize(self, api, route, (parts, &body), &at).await {
            Ok(identity) => identity,
            Err(Refusal::Forbidden) => return message(StatusCode::FORBIDDEN, "Forbidden"),
            Err(Refusal::Broken(reason)) => {
                tracing::info!(api = %api_id, %reason, "an authorizer could not decide");
                return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
            }
            Err(Refusal::Unauthorized(reason)) => {
                tracing::debug!(api = %api_id, %reason, "a token was refused");
                return message(StatusCode::UNAUTHORIZED, "Unauthorized");
            }
        };
        let integration_id = route["target"]
            .as_str()
            .and_then(|t| t.strip_prefix("integrations/"))
            .unwrap_or_default();
        let Some(integration) = api
            .integrations
            .iter()
            .find(|i| i["integrationId"] == integration_id)
        else {
            return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
        };
        let uri = integration["integrationUri"].as_str().unwrap_or_default();
        if integration["integrationType"] == "HTTP_PROXY" {
            let method = integration["integrationMethod"].as_str().unwrap_or("ANY");
            return self
                .forward(uri, method, parts, path, &parameters, body)
                .await;
        }
        // API Gateway invokes as itself for the route's execute-api ARN, which the
        // function's policy must allow.
        let (method_part, path_part) = match route_key.split_once(' ') {
            Some((method, template)) => (method.replace("ANY", "*"), template.to_owned()),
            None => ("*".to_owned(), "/*".to_owned()),
        };
        // The `$default` route's ARN ends in `$default`, as AWS writes it.
        let source = if route_key == "$default" {
            format!("{api_id}/{stage_name}/$default")
        } else {
            format!("{api_id}/{stage_name}/{method_part}{path_part}")
        };
        let function = match self.invokable(uri, &source) {
            Ok(function) => function,
            Err(reason) => {
                tracing::info!(api = %api_id, %reason, "an API may not invoke its function");
                return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
            }
        };
        let v1 = integration["payloadFormatVersion"] == "1.0";
        let mut payload = if v1 {
            let resource = path_part.clone();
            event_v1(
                parts,
                path,
                &resource,
                &stage_name,
                &parameters,
                &body,
                api_id,
            )
        } else {
            let mut payload = event(
                parts,
                path,
                &EventRoute {
                    api_id,
                    route_key: &route_key,
                    stage: &stage_name,
                    path_parameters: Some(&parameters),
                },
                &body,
            );
            if let Some(variables) = stage["stageVariables"]
                .as_object()
                .filter(|v| !v.is_empty())
            {
                payload["stageVariables"] = Value::Object(variables.clone());
            }
            payload
        };
        if let Some(identity) = identity {
            // Format 1.0 carries the claims and scopes themselves.
            payload["requestContext"]["authorizer"] = if v1 {
                match identity.get("jwt") {
                    Some(jwt) => jwt.clone(),
                    None => identity["lambda"].clone(),
                }
            } else {
                identity
            };
        }
        let timeout =
            Duration::from_millis(integration["timeoutInMillis"].as_u64().unwrap_or(30_000));
        let invoked = tokio::time::timeout(
            timeout,
            self.invoker.invoke(InvokeRequest {
                function,
                request_id: trace.request_id.clone(),
                payload: Bytes::from(payload.to_string()),
                client_context: None,
                tail: false,
            }),
        )
        .await;
        let mut response = match invoked {
            Err(_) => message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
            Ok(Ok(outcome)) if outcome.function_error.is_none() => {
                let shaped = serde_json::from_slice::<Value>(&outcome.payload)
                    .is_ok_and(|v| v.get("statusCode").is_some());
                // Format 1.0 needs the proxy response's shape; 2.0 takes any JSON.
                if v1 && !shaped {
                    message(StatusCode::BAD_GATEWAY, "Internal Server Error")
                } else if v1 {
                    with_multi_value_headers(answer(&outcome.payload), &outcome.payload)
                } else {
                    answer(&outcome.payload)
                }
            }
            Ok(Ok(outcome)) => {
                tracing::info!(api = %api_id, error = %String::from_utf8_lossy(&outcome.payload), "an API's function failed");
                message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
            Ok(Err(err)) => {
                tracing::info!(api = %api_id, error = %err.message, "an API's function was not invoked");
                message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        };
        nimbus_lambda::function_urls::cors(&mut response, cors.as_ref(), origin.as_deref(), false);
        response
    }

    /// A request's body, once its stage's throttle (`settings`' rate and burst, in
    /// `bucket`) admits it and it is read within API Gateway's limit; else the answer.
    async fn admitted(
        &self,
        bucket: String,
        settings: &Value,
        body: Body,
    ) -> Result<Bytes, Response> {
        if !self.admits(
            bucket,
            settings["throttlingRateLimit"].as_f64(),
            settings["throttlingBurstLimit"].as_f64(),
        ) {
            return Err(message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"));
        }
        nimbus_edge::read_whole(body, MAX_BODY)
            .await
            .map_err(|err| match err {
                nimbus_edge::BodyError::Idle(_) => {
                    message(StatusCode::REQUEST_TIMEOUT, "Request Timeout")
                }
                _ => message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
            })
    }

    /// The execute-api ARN of a request: `<api>/<stage>/<METHOD><path>`.
    fn execute_arn(&self, api_id: &str, stage: &str, method: &str, path: &str) -> String {
        format!(
            "arn:aws:execute-api:{}:{}:{api_id}/{stage}/{method}{path}",
            self.apis.region, self.apis.account
        )
    }

    /// Whether a token bucket (a route's, a method's, a usage plan key's) admits one
    /// more request now: `burst` tokens (`rate` if not given) refilled at `rate` a
    /// second; no rate, no throttling.
    fn admits(&self, bucket: String, rate: Option<f64>, burst: Option<f64>) -> bool {
        let Some(rate) = rate else {
            return true;
        };
        let burst = burst.unwrap_or(rate);
        if burst < 1.0 {
            return false;
        }
        let now = std::time::Instant::now();
        let mut buckets = self.buckets.lock().expect("buckets");
        let (tokens, last) = buckets.entry(bucket).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens < 1.0 {
            return false;
        }
        *tokens -= 1.0;
        true
    }

    /// The function an integration or authorizer URI names, if the function's policy
    /// lets API Gateway invoke it for `source` (`<api>/<stage>/<METHOD>/<path>`,
    /// `<api>/authorizers/<id>`).
    fn invokable(&self, uri: &str, source: &str) -> Result<FunctionRef, String> {
        let function = function_of(uri)
            .and_then(|arn| FunctionRef::parse(arn, &self.apis.region, &self.apis.account).ok())
            .ok_or_else(|| format!("{uri} is not a function"))?;
        let source = format!(
            "arn:aws:execute-api:{}:{}:{source}",
            self.apis.region, self.apis.account
        );
        let arn = self
            .functions
            .arn(&function.name, function.qualifier.as_deref());
        let policy = self.functions.policy_document(&function.name);
        let access = Access::new("lambda:InvokeFunction", &arn)
            .with_policy(policy.as_deref())
            .for_source(&source, &self.apis.account);
        self.authorizer.authorize_service(PRINCIPAL, &access)?;
        Ok(function)
    }

    /// A Lambda authorizer's verdict on a request, from its cache (by the identity
    /// sources' values, for `authorizerResultTtlInSeconds`) or from invoking its
    /// function as API Gateway for the authorizer's ARN: the answer's `context` when
    /// it lets the request in, by a simple `isAuthorized` or an IAM policy allowing
    /// `execute-api:Invoke` on the request's ARN.
    async fn ask(
        &self,
        api: &Api,
        authorizer: &Value,
        (parts, body): (&http::request::Parts, &[u8]),
        at: &At<'_>,
    ) -> Result<Value, Refusal> {
        let api_id = api.api["apiId"].as_str().unwrap_or_default();
        let authorizer_id = authorizer["authorizerId"].as_str().unwrap_or_default();
        let mut identity = Vec::new();
        for source in authorizer["identitySource"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = source
                .as_str()
                .unwrap_or_default()
                .trim_start_matches("$request.header.");
            let value = parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| Refusal::Unauthorized(format!("no {name} header")))?;
            identity.push(value.to_owned());
        }
        let ttl = Duration::from_secs(
            authorizer["authorizerResultTtlInSeconds"]
                .as_u64()
                .unwrap_or(0),
        );
        let key = format!("{api_id}/{authorizer_id}/{}", identity.join("\n"));
        // An answer is judged for each request: its policy may allow some routes only.
        let verdict = |answer: &Value| {
            let allowed = if authorizer["enableSimpleResponses"] == true {
                answer["isAuthorized"] == true
            } else {
                policy_allows(&answer["policyDocument"], at.arn)
            };
            match &answer["context"] {
                _ if !allowed => Err(Refusal::Forbidden),
                Value::Null => Ok(json!({ "lambda": {} })),
                context => Ok(json!({ "lambda": context })),
            }
        };
        if let Some((at, answer)) = self.verdicts.lock().expect("verdicts").get(&key)
            && at.elapsed() < ttl
        {
            return verdict(answer);
        }
        let uri = authorizer["authorizerUri"].as_str().unwrap_or_default();
        let function = self
            .invokable(uri, &format!("{api_id}/authorizers/{authorizer_id}"))
            .map_err(Refusal::Broken)?;
        let route = EventRoute {
            api_id,
            route_key: at.route_key,
            stage: at.stage,
            path_parameters: Some(at.parameters),
        };
        let mut question = event(parts, at.path, &route, body);
        question["type"] = "REQUEST".into();
        question["routeArn"] = at.arn.into();
        question["identitySource"] = json!(identity);
        let answered = tokio::time::timeout(
            AUTHORIZER_TIMEOUT,
            self.invoker.invoke(InvokeRequest {
                function,
                request_id: uuid::Uuid::new_v4().to_string(),
                payload: Bytes::from(question.to_string()),
                client_context: None,
                tail: false,
            }),
        )
        .await
        .map_err(|_| Refusal::Broken("the authorizer timed out".into()))?
        .map_err(|err| Refusal::Broken(err.message))?;
        if answered.function_error.is_some() {
            return Err(Refusal::Broken("the authorizer failed".into()));
        }
        let answer: Value = serde_json::from_slice(&answered.payload)
            .map_err(|_| Refusal::Broken("the authorizer's answer is not JSON".into()))?;
        if !ttl.is_zero() {
            let mut verdicts = self.verdicts.lock().expect("verdicts");
            // Identities are the caller's to choose: the cache must not grow with them.
            if verdicts.len() >= MAX_VERDICTS {
                verdicts.retain(|_, (at, _)| at.elapsed() < MAX_VERDICT_AGE);
                if verdicts.len() >= MAX_VERDICTS {
                    verdicts.clear();
                }
            }
            verdicts.insert(key, (std::time::Instant::now(), answer.clone()));
        }
        verdict(&answer)
    }

    /// Passes a request on to an `HTTP_PROXY` integration's URL (its `{name}`
    /// placeholders filled from the path parameters, else the request's path added to
    /// it) with its query, headers and body, and its answer back, as nimbus connects
    /// on someone's behalf: under the egress policy.
    async fn forward(
        &self,
        uri: &str,
        method: &str,
        parts: &http::request::Parts,
        path: &str,
        parameters: &BTreeMap<String, String>,
        body: Bytes,
    ) -> Response {
        let mut target = parameters
            .iter()
            .fold(uri.to_owned(), |target, (name, value)| {
                target.replace(&format!("{{{name}}}"), value)
            });
        if target == uri {
            target = format!("{}{path}", uri.trim_end_matches('/'));
        }
        if let Some(query) = parts.uri.query() {
            target.push(if target.contains('?') { '&' } else { '?' });
            target.push_str(query);
        }
        let (client, url) =
            match nimbus_engine::pinned_client(&target, self.permits.as_ref(), PROXY_TIMEOUT).await
            {
                Ok(pinned) => pinned,
                Err(reason) => {
                    tracing::info!(%target, %reason, "an HTTP integration is not reachable");
                    return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
                }
            };
        let method = if method == "ANY" {
            parts.method.clone()
        } else {
            http::Method::from_bytes(method.as_bytes()).unwrap_or(http::Method::POST)
        };
        let mut request = client.request(method, url).body(body.to_vec());
        for (name, value) in &parts.headers {
            if !HOP_BY_HOP.contains(&name.as_str()) && name != header::HOST {
                request = request.header(name.as_str(), value.as_bytes());
            }
        }
        let answered = match request.send().await {
            Ok(answered) => answered,
            Err(err) => {
                tracing::info!(%target, error = %err, "an HTTP integration failed");
                return message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
            }
        };
        let status =
            StatusCode::from_u16(answered.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let headers: Vec<(String, Vec<u8>)> = answered
            .headers()
            .iter()
            .filter(|(name, _)| !HOP_BY_HOP.contains(&name.as_str()))
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect();
        let bytes = match read_bounded(answered, MAX_BODY).await {
            Ok(bytes) => bytes,
            Err(reason) => {
                tracing::info!(%target, %reason, "an HTTP integration's answer was not read");
                return message(StatusCode::BAD_GATEWAY, "Bad Gateway");
            }
        };
        let mut response = Response::new(Body::from(bytes));
        *response.status_mut() = status;
        for (name, value) in headers {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::try_from(name),
                HeaderValue::from_bytes(&value),
            ) {
                response.headers_mut().append(name, value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_route_wins() {
        let routes: Vec<Value> = [
            "GET /items/{id}",
            "GET /items/special",
            "ANY /{proxy+}",
            "$default",
            "POST /items/{id}",
        ]
        .iter()
        .map(|key| json!({ "routeKey": key }))
        .collect();
        let key = |method: &str, path: &str| {
            route_for(&routes, method, path).map(|(route, parameters)| {
                (route["routeKey"].as_str().unwrap().to_owned(), parameters)
            })
        };
        let (route, parameters) = key("GET", "/items/7").unwrap();
        assert_eq!(
            (route.as_str(), parameters["id"].as_str()),
            ("GET /items/{id}", "7")
        );
        assert_eq!(
            key("GET", "/items/special").unwrap().0,
            "GET /items/special"
        );
        assert_eq!(key("POST", "/items/7").unwrap().0, "POST /items/{id}");
        let (route, parameters) = key("DELETE", "/a/b/c").unwrap();
        assert_eq!(
            (route.as_str(), parameters["proxy"].as_str()),
            ("ANY /{proxy+}", "a/b/c")
        );
        assert_eq!(key("GET", "/").unwrap().0, "$default");
        // A full match beats a greedy route with more literal segments.
        let routes: Vec<Value> = ["GET /{a}/{b}/{c}", "GET /x/{proxy+}"]
            .iter()
            .map(|key| json!({ "routeKey": key }))
            .collect();
        assert_eq!(
            route_for(&routes, "GET", "/x/y/z").unwrap().0["routeKey"],
            "GET /{a}/{b}/{c}"
        );
        assert_eq!(
            function_of(
                "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:000000000000:function:f/invocations"
            ),
            Some("arn:aws:lambda:us-east-1:000000000000:function:f")
        );
    }
}
