//! Function URLs: their configurations (Create/Get/Update/Delete/ListFunctionUrlConfigs)
//! and the HTTP endpoint that turns a request into a payload-format-2.0 event and the
//! function's answer into an HTTP response. A URL is served by host name
//! (`<url-id>.lambda-url.<region>.localhost`) and, needing no DNS, at
//! `/_nimbus/lambda-url/<url-id>/...`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::any;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use nimbus_auth::authz::{Access, Authorizer};
use nimbus_auth::{Authenticator, PathStyle, RequestParts};
use nimbus_edge::AwsError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::error::{conflict, invalid_parameter, not_found};
use crate::functions::Functions;
use crate::invoke::{InvokeRequest, Invoker};
use crate::names::FunctionRef;

/// The largest request body a URL accepts (Lambda's synchronous payload bound).
const MAX_BODY: usize = 6 << 20;
const PATH_PREFIX: &str = "/_nimbus/lambda-url/";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UrlRequest {
    pub auth_type: Option<String>,
    pub cors: Option<Value>,
    pub invoke_mode: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UrlConfig {
    pub url_id: String,
    pub auth_type: String,
    pub cors: Option<Value>,
    pub invoke_mode: String,
    pub created: String,
    pub modified: String,
}

fn now_text() -> String {
    OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn no_url() -> AwsError {
    not_found("The resource you requested does not exist.")
}

fn check_auth_type(auth: &str) -> Result<(), AwsError> {
    match auth {
        "NONE" | "AWS_IAM" => Ok(()),
        other => Err(invalid_parameter(format!(
            "AuthType {other} is not NONE or AWS_IAM"
        ))),
    }
}

/// The host names URLs are served under, after `<url-id>.`.
pub fn host_suffix(region: &str) -> String {
    format!(".lambda-url.{region}.localhost")
}

impl Functions {
    fn url_json(&self, function: &FunctionRef, config: &UrlConfig, host: &str) -> Value {
        let port = host
            .rsplit_once(':')
            .map(|(_, port)| format!(":{port}"))
            .unwrap_or_default();
        let qualifier = function.qualifier.as_deref();
        let mut value = json!({
            "FunctionUrl": format!("http://{}{}{port}/", config.url_id, host_suffix(&self.region)),
            "FunctionArn": self.arn(&function.name, qualifier),
            "AuthType": config.auth_type,
            "CreationTime": config.created,
            "LastModifiedTime": config.modified,
            "InvokeMode": config.invoke_mode,
        });
        if let Some(cors) = &config.cors {
            value["Cors"] = cors.clone();
        }
        value
    }

    fn url_key(function: &FunctionRef) -> String {
        function.qualifier.clone().unwrap_or_default()
    }

    pub fn create_url(
        &self,
        function: FunctionRef,
        request: UrlRequest,
        host: &str,
    ) -> Result<Value, AwsError> {
        let auth = request
            .auth_type
            .clone()
            .ok_or_else(|| invalid_parameter("AuthType is required"))?;
        check_auth_type(&auth)?;
        let key = Self::url_key(&function);
        let config = self.update_record(&function.name, |record| {
            if record.urls.contains_key(&key) {
                return Err(conflict(format!(
                    "Failed to create function url config for [functionArn = {}]. Error message:  FunctionUrlConfig exists for this Lambda function",
                    self.arn(&function.name, function.qualifier.as_deref())
                )));
            }
            let at = now_text();
            let config = UrlConfig {
                url_id: uuid::Uuid::new_v4().simple().to_string(),
                auth_type: auth,
                cors: request.cors,
                invoke_mode: request.invoke_mode.unwrap_or_else(|| "BUFFERED".to_owned()),
                created: at.clone(),
                modified: at,
            };
            record.urls.insert(key.clone(), config.clone());
            Ok(config)
        })?;
        Ok(self.url_json(&function, &config, host))
    }

    pub fn update_url(
        &self,
        function: FunctionRef,
        request: UrlRequest,
        host: &str,
    ) -> Result<Value, AwsError> {
        let config = self.update_record(&function.name, |record| {
            let config = record
                .urls
                .get_mut(&Self::url_key(&function))
                .ok_or_else(no_url)?;
            if let Some(auth) = request.auth_type {
                check_auth_type(&auth)?;
                config.auth_type = auth;
            }
            if let Some(cors) = request.cors {
                config.cors = Some(cors);
            }
            if let Some(mode) = request.invoke_mode {
                config.invoke_mode = mode;
            }
            config.modified = now_text();
            Ok(config.clone())
        })?;
        Ok(self.url_json(&function, &config, host))
    }

    pub fn get_url(&self, function: FunctionRef, host: &str) -> Result<Value, AwsError> {
        let record = self.load(&function.name)?.value;
        let config = record
            .urls
            .get(&Self::url_key(&function))
            .ok_or_else(no_url)?;
        Ok(self.url_json(&function, config, host))
    }

    pub fn delete_url(&self, function: FunctionRef) -> Result<(), AwsError> {
        self.update_record(&function.name, |record| {
            record
                .urls
                .remove(&Self::url_key(&function))
                .map(drop)
                .ok_or_else(no_url)
        })
    }

    pub fn list_urls(&self, function: FunctionRef, host: &str) -> Result<Value, AwsError> {
        let function = function.require_unqualified()?;
        let record = self.load(&function.name)?.value;
        let configs: Vec<Value> = record
            .urls
            .iter()
            .map(|(qualifier, config)| {
                let qualified = FunctionRef {
                    name: function.name.clone(),
                    qualifier: (!qualifier.is_empty()).then(|| qualifier.clone()),
                };
                self.url_json(&qualified, config, host)
            })
            .collect();
        Ok(json!({ "FunctionUrlConfigs": configs }))
    }

    /// The function (and qualifier) a URL id belongs to: one index read, then its
    /// function's record, however many functions there are.
    fn url_target(&self, id: &str) -> Option<(FunctionRef, UrlConfig)> {
        let name = self.store.url_owner(id).ok()??;
        let record = self.load(&name).ok()?.value;
        let (qualifier, config) = record.urls.iter().find(|(_, config)| config.url_id == id)?;
        let function = FunctionRef {
            name: record.config.function_name.clone(),
            qualifier: (!qualifier.is_empty()).then(|| qualifier.clone()),
        };
        Some((function, config.clone()))
    }
}

/// Serves function URLs.
pub struct UrlServer {
    functions: Arc<Functions>,
    invoker: Arc<Invoker>,
    authenticator: Arc<Authenticator>,
    authorizer: Arc<dyn Authorizer>,
}

impl UrlServer {
    pub fn new(
        functions: Arc<Functions>,
        invoker: Arc<Invoker>,
        authenticator: Arc<Authenticator>,
        authorizer: Arc<dyn Authorizer>,
    ) -> Arc<Self> {
        match functions.store.index_unindexed_urls() {
            Ok(0) => {}
            Ok(indexed) => tracing::info!(indexed, "indexed function URLs by id"),
            Err(err) => tracing::error!(error = %err, "indexing function URLs failed"),
        }
        Arc::new(Self {
            functions,
            invoker,
            authenticator,
            authorizer,
        })
    }

    /// The path form: `/_nimbus/lambda-url/<url-id>/...`.
    pub fn routes(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/_nimbus/lambda-url/{id}", any(serve))
            .route("/_nimbus/lambda-url/{id}/", any(serve))
            .route("/_nimbus/lambda-url/{id}/{*path}", any(serve))
            .with_state(self.clone())
    }

    /// The host form, for the edge's host routing: every path is the function's.
    pub fn host_router(self: &Arc<Self>) -> Router {
        Router::new().fallback(serve).with_state(self.clone())
    }
}

fn plain(status: StatusCode, message: &str) -> Response {
    let mut response = Response::new(Body::from(json!({ "Message": message }).to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub async fn serve(State(server): State<Arc<UrlServer>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (id, path) = addressed(&parts, &host_suffix(&server.functions.region), PATH_PREFIX);
    let Some((function, config)) = server.functions.url_target(&id) else {
        return plain(StatusCode::NOT_FOUND, "No function URL here");
    };
    let body = match nimbus_edge::read_whole(body, MAX_BODY).await {
        Ok(body) => body,
        Err(nimbus_edge::BodyError::Idle(_)) => {
            return plain(StatusCode::REQUEST_TIMEOUT, "Request timed out");
        }
        Err(_) => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request must be smaller than 6291456 bytes",
            );
        }
    };
    let origin = parts
        .headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_owned);
    // CORS preflights are answered here, without the function.
    if parts.method == http::Method::OPTIONS
        && parts.headers.contains_key("access-control-request-method")
    {
        let mut response = Response::new(Body::empty());
        cors(&mut response, config.cors.as_ref(), origin.as_deref(), true);
        return response;
    }
    if config.auth_type == "AWS_IAM" {
        let request_parts = RequestParts {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or_default(),
            headers: &parts.headers,
        };
        let caller = server
            .authenticator
            .check_headers(&request_parts, OffsetDateTime::now_utc())
            .and_then(|checked| checked.finish(&request_parts, &body, PathStyle::Normalized));
        // Callers need `lambda:InvokeFunctionUrl` from their policies or the function's.
        let allowed = caller.is_ok_and(|(caller, _)| {
            let arn = server
                .functions
                .arn(&function.name, function.qualifier.as_deref());
            let policy = server.functions.policy_document(&function.name);
            let access = Access::new("lambda:InvokeFunctionUrl", &arn)
                .with_policy(policy.as_deref())
                .with_context("lambda:FunctionUrlAuthType", vec!["AWS_IAM".to_owned()]);
            server.authorizer.authorize(&caller, None, &access).is_ok()
        });
        if !allowed {
            return plain(StatusCode::FORBIDDEN, "Forbidden");
        }
    }
    let route = EventRoute {
        api_id: &id,
        route_key: "$default",
        stage: "$default",
        path_parameters: None,
    };
    let event = event(&parts, &path, &route, &body);
    let request_id = uuid::Uuid::new_v4().to_string();
    let result = server
        .invoker
        .invoke(InvokeRequest {
            function,
            request_id: request_id.clone(),
            payload: Bytes::from(event.to_string()),
            client_context: None,
            tail: false,
        })
        .await;
    let mut response = match result {
        Ok(outcome) if outcome.function_error.is_none() => answer(&outcome.payload),
        _ => plain(StatusCode::BAD_GATEWAY, "Internal Server Error"),
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", value);
    }
    cors(
        &mut response,
        config.cors.as_ref(),
        origin.as_deref(),
        false,
    );
    response
}

/// The id a request names and the path under it: by its host
/// (`<id><host_suffix>`), or else by its path (`<path_prefix><id>/...`).
pub fn addressed(
    parts: &http::request::Parts,
    host_suffix: &str,
    path_prefix: &str,
) -> (String, String) {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    match name.strip_suffix(host_suffix) {
        Some(id) => (id.to_owned(), parts.uri.path().to_owned()),
        None => {
            let rest = parts
                .uri
                .path()
                .strip_prefix(path_prefix)
                .unwrap_or_default();
            let (id, path) = rest.split_once('/').unwrap_or((rest, ""));
            (id.to_owned(), format!("/{path}"))
        }
    }
}

/// Where a request came in, as its payload format 2.0 event tells the function: a
/// function URL's id (its routes and stage are `$default`), or an HTTP API's route.
pub struct EventRoute<'a> {
    pub api_id: &'a str,
    pub route_key: &'a str,
    pub stage: &'a str,
    pub path_parameters: Option<&'a BTreeMap<String, String>>,
}

/// The payload format 2.0 event of a request.
pub fn event(parts: &http::request::Parts, path: &str, route: &EventRoute, body: &[u8]) -> Value {
    let id = route.api_id;
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies = Vec::new();
    for (name, value) in &parts.headers {
        let value = value.to_str().unwrap_or_default().to_owned();
        if name == header::COOKIE {
            cookies.extend(
                value
                    .split(';')
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty()),
            );
            continue;
        }
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push(',');
                joined.push_str(&value);
            })
            .or_insert(value);
    }
    let query = parts.uri.query().unwrap_or_default();
    let mut parameters: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        parameters
            .entry(key.into_owned())
            .and_modify(|joined| {
                joined.push(',');
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    let text = std::str::from_utf8(body).ok().filter(|_| {
        headers.get("content-type").is_none_or(|t| {
            t.starts_with("text/")
                || t.contains("json")
                || t.contains("xml")
                || t.contains("x-www-form-urlencoded")
        })
    });
    let now = OffsetDateTime::now_utc();
    let mut event = json!({
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": id,
            "domainName": headers.get("host").cloned().unwrap_or_default(),
            "domainPrefix": id,
            "http": {
                "method": parts.method.as_str(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("user-agent").cloned().unwrap_or_default(),
            },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": route.route_key,
            "stage": route.stage,
            "time": now.format(&time::format_description::well_known::Rfc2822).unwrap_or_default(),
            "timeEpoch": (now.unix_timestamp_nanos() / 1_000_000) as i64,
        },
        "isBase64Encoded": text.is_none() && !body.is_empty(),
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if let Some(parameters) = route.path_parameters.filter(|p| !p.is_empty()) {
        event["pathParameters"] = json!(parameters);
    }
    if !parameters.is_empty() {
        event["queryStringParameters"] = json!(parameters);
    }
    if !body.is_empty() {
        event["body"] = match text {
            Some(text) => text.into(),
            None => STANDARD.encode(body).into(),
        };
    }
    event
}

/// The HTTP response a function's answer stands for: a `statusCode` object is read
/// as status, headers, cookies and body; anything else is a 200 JSON body.
pub fn answer(payload: &[u8]) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(payload).ok();
    let Some(shaped) = parsed.filter(|value| value.get("statusCode").is_some()) else {
        let mut response = Response::new(Body::from(payload.to_vec()));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return response;
    };
    let status = shaped["statusCode"]
        .as_u64()
        .and_then(|code| StatusCode::from_u16(code as u16).ok())
        .unwrap_or(StatusCode::OK);
    let body = match (
        &shaped["body"],
        shaped["isBase64Encoded"].as_bool().unwrap_or(false),
    ) {
        (Value::String(text), true) => STANDARD.decode(text).unwrap_or_default(),
        (Value::String(text), false) => text.clone().into_bytes(),
        (Value::Null, _) => Vec::new(),
        (other, _) => other.to_string().into_bytes(),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    if let Some(headers) = shaped["headers"].as_object() {
        for (name, value) in headers {
            let text = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::try_from(name.as_str()),
                HeaderValue::from_str(&text),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    for cookie in shaped["cookies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    // A response that names no type is JSON, as AWS answers it.
    response
        .headers_mut()
        .entry(header::CONTENT_TYPE)
        .or_insert(HeaderValue::from_static("application/json"));
    response
}

/// Adds CORS headers for a request from `origin`, as a configuration of Lambda's
/// `Cors` shape (`AllowOrigins`, ...) asks.
pub fn cors(
    response: &mut Response,
    config: Option<&Value>,
    origin: Option<&str>,
    preflight: bool,
) {
    let (Some(config), Some(origin)) = (config, origin) else {
        return;
    };
    let list = |name: &str| -> Vec<String> {
        config[name]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let origins = list("AllowOrigins");
    let allowed = if origins.iter().any(|o| o == "*") {
        "*".to_owned()
    } else if origins.iter().any(|o| o == origin) {
        origin.to_owned()
    } else {
        return;
    };
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if !value.is_empty()
            && let Ok(value) = HeaderValue::from_str(&value)
        {
            headers.insert(name, value);
        }
    };
    set("access-control-allow-origin", allowed);
    set(
        "access-control-expose-headers",
        list("ExposeHeaders").join(","),
    );
    if config["AllowCredentials"].as_bool() == Some(true) {
        set("access-control-allow-credentials", "true".to_owned());
    }
    if preflight {
        set(
            "access-control-allow-methods",
            list("AllowMethods").join(","),
        );
        set(
            "access-control-allow-headers",
            list("AllowHeaders").join(","),
        );
        if let Some(age) = config["MaxAge"].as_i64() {
            set("access-control-max-age", age.to_string());
        }
    }
}
