//! API Gateway HTTP APIs (v2): APIs with their routes, integrations and stages, and
//! the invoke URLs that serve them, at `/_nimbus/execute-api/<api>/<stage>/...` and
//! `<api>.execute-api.<region>.localhost`. A request is matched to a route (`GET
//! /items/{id}`, `ANY /{proxy+}`, `$default`), and its `AWS_PROXY` integration
//! invokes a function with the payload format 1.0 or 2.0 event, as
//! `apigateway.amazonaws.com` for the route's execute-api ARN: the function's policy
//! must allow it, as on AWS.
//!
//! Records: `apigateway.apis/<id>`, each API whole, its routes, integrations and
//! stages kept as the API returns them. `api.rs` is the rest-json management API;
//! `invoke.rs` the invoke URLs.

/// An enum of a service's operations, each named as its variant.
macro_rules! operations {
    ($name:ident { $($op:ident),* $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($op),*
        }

        impl $name {
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$op => stringify!($op)),*
                }
            }
        }
    };
}
pub(crate) use operations;

pub mod api;
pub mod invoke;
pub mod jwt;
pub mod openapi;
pub mod rest;
pub mod rest_api;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::StatusCode;
use nimbus_edge::AwsError;
use nimbus_storage::{Expect, MetadataStore, StoreError, WriteBatch};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use api::ApiGatewayApi;

pub const APIS: &str = "apigateway.apis";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Api {
    /// The API as `GetApi` returns it (without `apiEndpoint`, which names the host
    /// the caller used).
    pub api: Value,
    pub routes: Vec<Value>,
    pub integrations: Vec<Value>,
    pub stages: Vec<Value>,
    #[serde(default)]
    pub authorizers: Vec<Value>,
    /// Deployments, as records: routes and integrations are served as they are now.
    #[serde(default)]
    pub deployments: Vec<Value>,
}

pub fn bad_request(message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::BAD_REQUEST, "BadRequestException", message)
}

pub fn conflict(message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::CONFLICT, "ConflictException", message)
}

pub fn not_found(message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::NOT_FOUND, "NotFoundException", message)
}

fn internal(err: impl std::fmt::Display) -> AwsError {
    tracing::error!(error = %err, "api gateway failed");
    AwsError::internal(nimbus_edge::Protocol::RestJson)
}

/// A random id of `len` lowercase letters and digits, as API Gateway's.
fn id(len: usize) -> String {
    uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .chars()
        .take(len)
        .collect()
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Checks a route key: `$default`, or a method (or `ANY`) and a path of literal,
/// `{name}` and, last, `{name+}` segments.
pub fn check_route_key(key: &str) -> Result<(), AwsError> {
    if key == "$default" {
        return Ok(());
    }
    let bad = || bad_request(format!("Invalid route key: {key}"));
    let (method, path) = key.split_once(' ').ok_or_else(bad)?;
    let methods = [
        "ANY", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS",
    ];
    if !methods.contains(&method) || !path.starts_with('/') {
        return Err(bad());
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    for (n, segment) in segments.iter().enumerate() {
        let greedy = segment.starts_with('{') && segment.ends_with("+}");
        if greedy && n + 1 != segments.len() {
            return Err(bad());
        }
    }
    Ok(())
}

pub struct Apis {
    meta: Arc<dyn MetadataStore>,
    pub region: String,
    pub account: String,
    /// APIs and deployment snapshots as the invoke URLs serve them, kept until this
    /// node writes any API Gateway record or another node does (`forget`).
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    /// Moves on with every `forget`: a load that began before one is not kept.
    generation: u64,
    apis: HashMap<String, Served>,
    snapshots: HashMap<String, Arc<rest::Snapshot>>,
}

/// Entries kept at most before the cache starts over.
const MAX_CACHED: usize = 10_000;

/// An API an invoke URL names: an HTTP API or a REST API.
#[derive(Clone)]
pub enum Served {
    Http(Arc<Api>),
    Rest(Arc<rest::RestApi>),
}

/// The tables whose writes make cached APIs stale.
pub const CACHED: &[&str] = &[APIS, rest::REST_APIS, rest::SNAPSHOTS];

impl Apis {
    pub fn new(meta: Arc<dyn MetadataStore>, region: &str, account: &str) -> Arc<Self> {
        Arc::new(Self {
            meta,
            region: region.to_owned(),
            account: account.to_owned(),
            cache: Mutex::new(Cache::default()),
        })
    }

    /// Drops what is cached: a record changed.
    pub fn forget(&self) {
        let mut cache = self.cache.lock().expect("api cache");
        cache.generation += 1;
        cache.apis.clear();
        cache.snapshots.clear();
    }

    /// The API `id` names, if cached.
    pub fn cached(&self, id: &str) -> Option<Served> {
        self.cache.lock().expect("api cache").apis.get(id).cloned()
    }

    /// The API `id` names, from the cache or the store (then kept); none if there is
    /// no such HTTP or REST API.
    pub fn served(&self, id: &str) -> Result<Option<Served>, AwsError> {
        if let Some(served) = self.cached(id) {
            return Ok(Some(served));
        }
        let generation = self.cache.lock().expect("api cache").generation;
        let served = match self.load(id) {
            Ok((api, _)) => Served::Http(Arc::new(api)),
            Err(err) if err.status == StatusCode::NOT_FOUND => match self.rest_api(id) {
                Ok(api) => Served::Rest(Arc::new(api)),
                Err(err) if err.status == StatusCode::NOT_FOUND => return Ok(None),
                Err(err) => return Err(err),
            },
            Err(err) => return Err(err),
        };
        let mut cache = self.cache.lock().expect("api cache");
        if cache.generation == generation {
            if cache.apis.len() >= MAX_CACHED {
                cache.apis.clear();
            }
            cache.apis.insert(id.to_owned(), served.clone());
        }
        Ok(Some(served))
    }

    /// The resources a REST API's deployment serves, if cached.
    pub fn cached_snapshot(&self, api_id: &str, deployment: &str) -> Option<Arc<rest::Snapshot>> {
        let cache = self.cache.lock().expect("api cache");
        cache
            .snapshots
            .get(&format!("{api_id}/{deployment}"))
            .cloned()
    }

    /// The resources a REST API's deployment serves, from the cache or the store.
    pub fn served_snapshot(
        &self,
        api_id: &str,
        deployment: &str,
    ) -> Result<Arc<rest::Snapshot>, AwsError> {
        let key = format!("{api_id}/{deployment}");
        let generation = {
            let cache = self.cache.lock().expect("api cache");
            if let Some(snapshot) = cache.snapshots.get(&key) {
                return Ok(snapshot.clone());
            }
            cache.generation
        };
        let snapshot = Arc::new(self.snapshot(api_id, deployment)?);
        let mut cache = self.cache.lock().expect("api cache");
        if cache.generation == generation {
            if cache.snapshots.len() >= MAX_CACHED {
                cache.snapshots.clear();
            }
            cache.snapshots.insert(key, snapshot.clone());
        }
        Ok(snapshot)
    }

    fn missing(&self, api_id: &str) -> AwsError {
        not_found(format!(
            "Invalid API identifier specified {}:{api_id}",
            self.account
        ))
    }

    pub fn load(&self, api_id: &str) -> Result<(Api, u64), AwsError> {
        self.record(APIS, api_id, || self.missing(api_id))
    }

    pub fn all(&self) -> Result<Vec<Api>, AwsError> {
        self.records(APIS, "")
    }

    /// The record `key` of `table` and its version, or `missing()`.
    fn record<T: DeserializeOwned>(
        &self,
        table: &str,
        key: &str,
        missing: impl FnOnce() -> AwsError,
    ) -> Result<(T, u64), AwsError> {
        let record = self
            .meta
            .get(table, key)
            .map_err(internal)?
            .ok_or_else(missing)?;
        Ok((
            serde_json::from_slice(&record.value).map_err(internal)?,
            record.version,
        ))
    }

    fn records<T: DeserializeOwned>(&self, table: &str, prefix: &str) -> Result<Vec<T>, AwsError> {
        self.meta
            .scan_all(table, prefix)
            .map_err(internal)?
            .iter()
            .map(|r| serde_json::from_slice(&r.value).map_err(internal))
            .collect()
    }

    /// Every API Gateway write goes through here: what is cached may be stale after.
    fn commit_raw(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let done = self.meta.commit(batch);
        self.forget();
        done
    }

    fn commit(&self, batch: WriteBatch) -> Result<(), AwsError> {
        self.commit_raw(batch).map_err(internal)
    }

    /// Changes the record `key` of `table` by `change`, which may add writes of its
    /// own to the batch; retried on a concurrent write.
    fn change<T: Serialize + DeserializeOwned>(
        &self,
        table: &str,
        key: &str,
        missing: impl Fn() -> AwsError,
        change: impl Fn(&mut T, WriteBatch) -> Result<(Value, WriteBatch), AwsError>,
    ) -> Result<Value, AwsError> {
        loop {
            let (mut record, version) = self.record::<T>(table, key, &missing)?;
            let (out, batch) = change(&mut record, WriteBatch::new())?;
            let value = serde_json::to_vec(&record).expect("records serialize");
            match self.commit_raw(batch.put(table, key, value, Expect::Version(version))) {
                Ok(()) => return Ok(out),
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(internal(err)),
            }
        }
    }

    /// Creates an API; with `target` (quick create) also its integration, a route
    /// (`routeKey`, `$default` unless given) and the `$default` stage, auto-deployed.
    pub fn create(&self, input: &Value) -> Result<Api, AwsError> {
        let name = input["name"]
            .as_str()
            .filter(|n| !n.is_empty() && n.len() <= 128)
            .ok_or_else(|| bad_request("Invalid API name specified"))?;
        let protocol = input["protocolType"].as_str().unwrap_or_default();
        if protocol != "HTTP" {
            return Err(bad_request(format!(
                "Invalid protocol type {protocol}: this nimbus serves HTTP APIs"
            )));
        }
        let api_id = id(10);
        let mut api = json!({
            "apiId": api_id,
            "name": name,
            "protocolType": protocol,
            "routeSelectionExpression": "${request.method} ${request.path}",
            "apiKeySelectionExpression": "$request.header.x-api-key",
            "createdDate": now(),
            "disableExecuteApiEndpoint": false,
            "tags": input["tags"].as_object().cloned().unwrap_or_default(),
        });
        for field in ["description", "corsConfiguration", "version"] {
            if !input[field].is_null() {
                api[field] = input[field].clone();
            }
        }
        let mut record = Api {
            api,
            routes: Vec::new(),
            integrations: Vec::new(),
            stages: Vec::new(),
            authorizers: Vec::new(),
            deployments: Vec::new(),
        };
        if let Some(target) = input["target"].as_str() {
            let key = input["routeKey"].as_str().unwrap_or("$default");
            check_route_key(key)?;
            let integration = integration(&json!({
                "integrationType": "AWS_PROXY", "integrationUri": target, "payloadFormatVersion": "2.0",
            }))?;
            record.routes.push(json!({
                "routeId": id(7), "routeKey": key, "authorizationType": "NONE",
                "apiKeyRequired": false,
                "target": format!("integrations/{}", integration["integrationId"].as_str().unwrap_or_default()),
            }));
            record.integrations.push(integration);
            record.stages.push(stage(
                &json!({ "stageName": "$default", "autoDeploy": true }),
            )?);
        }
        if self.meta.scan_all(APIS, "").map_err(internal)?.len() >= MAX_HTTP_APIS {
            return Err(bad_request(format!(
                "An account has at most {MAX_HTTP_APIS} HTTP APIs: delete some first"
            )));
        }
        let id = api_id.clone();
        let value = serde_json::to_vec(&record).expect("records serialize");
        self.commit(WriteBatch::new().put(APIS, &id, value, Expect::Absent))?;
        Ok(record)
    }

    /// Changes an API by `change`, retried on a concurrent write.
    pub fn update(
        &self,
        api_id: &str,
        change: impl Fn(&mut Api) -> Result<Value, AwsError>,
    ) -> Result<Value, AwsError> {
        self.change(
            APIS,
            api_id,
            || self.missing(api_id),
            |api: &mut Api, batch| {
                let out = change(api)?;
                api.within_quotas()?;
                Ok((out, batch))
            },
        )
    }

    pub fn delete(&self, api_id: &str) -> Result<(), AwsError> {
        let (_, version) = self.load(api_id)?;
        self.commit(WriteBatch::new().delete(APIS, api_id, Expect::Version(version)))
    }
}

/// API Gateway's default quotas for HTTP APIs.
const MAX_HTTP_APIS: usize = 600;
const HTTP_API_QUOTAS: &[(&str, usize)] = &[
    ("routes", 300),
    ("integrations", 300),
    ("stages", 10),
    ("authorizers", 10),
    ("deployments", 100),
];

impl Api {
    /// Refuses an API beyond a quota, naming it.
    fn within_quotas(&self) -> Result<(), AwsError> {
        let counts = [
            self.routes.len(),
            self.integrations.len(),
            self.stages.len(),
            self.authorizers.len(),
            self.deployments.len(),
        ];
        for ((kind, most), count) in HTTP_API_QUOTAS.iter().zip(counts) {
            if count > *most {
                return Err(bad_request(format!(
                    "An HTTP API has at most {most} {kind}: delete some first"
                )));
            }
        }
        Ok(())
    }
}

/// An integration as `CreateIntegration` makes it from `input`.
pub fn integration(input: &Value) -> Result<Value, AwsError> {
    let kind = input["integrationType"].as_str().unwrap_or_default();
    let uri = input["integrationUri"].as_str().unwrap_or_default();
    let method = input["integrationMethod"].as_str().unwrap_or("POST");
    match kind {
        "AWS_PROXY" if invoke::function_of(uri).is_none() => {
            return Err(bad_request(format!(
                "Invalid integration URI specified: {uri} is not a Lambda function ARN"
            )));
        }
        "HTTP_PROXY" if !(uri.starts_with("http://") || uri.starts_with("https://")) => {
            return Err(bad_request(format!(
                "Invalid integration URI specified: {uri} is not an http or https URL"
            )));
        }
        "AWS_PROXY" | "HTTP_PROXY" => {}
        _ => {
            return Err(bad_request(format!(
                "Invalid integration type {kind}: this nimbus serves AWS_PROXY (Lambda) and HTTP_PROXY integrations"
            )));
        }
    }
    let format = input["payloadFormatVersion"].as_str().unwrap_or("1.0");
    if kind == "HTTP_PROXY" && format != "1.0" {
        return Err(bad_request(
            "HTTP_PROXY integrations take payload format version 1.0",
        ));
    }
    if format != "1.0" && format != "2.0" {
        return Err(bad_request(format!(
            "Invalid payload format version {format}"
        )));
    }
    let timeout = input["timeoutInMillis"].as_i64().unwrap_or(30_000);
    if !(50..=30_000).contains(&timeout) {
        return Err(bad_request("TimeoutInMillis must be between 50 and 30000"));
    }
    Ok(json!({
        "integrationId": id(7),
        "integrationType": kind,
        "integrationUri": uri,
        "integrationMethod": method,
        "payloadFormatVersion": format,
        "timeoutInMillis": timeout,
        "connectionType": "INTERNET",
    }))
}

/// A stage as `CreateStage` makes it from `input`.
pub fn stage(input: &Value) -> Result<Value, AwsError> {
    let name = input["stageName"]
        .as_str()
        .filter(|n| {
            *n == "$default"
                || (!n.is_empty()
                    && n.len() <= 128
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)))
        })
        .ok_or_else(|| bad_request("Invalid stage name specified"))?;
    let at = now();
    Ok(json!({
        "stageName": name,
        "autoDeploy": input["autoDeploy"].as_bool().unwrap_or(false),
        "stageVariables": input["stageVariables"].as_object().cloned().unwrap_or_default(),
        "createdDate": at,
        "lastUpdatedDate": at,
        "description": input["description"].as_str().unwrap_or_default(),
        "accessLogSettings": input["accessLogSettings"].as_object().cloned().unwrap_or_default(),
        "defaultRouteSettings": input["defaultRouteSettings"].as_object().cloned().unwrap_or_default(),
        "routeSettings": input["routeSettings"].as_object().cloned().unwrap_or_default(),
        "tags": input["tags"].as_object().cloned().unwrap_or_default(),
    }))
}

/// An authorizer as `CreateAuthorizer` makes it from `input`: JWT, with an issuer and
/// audiences, reading its token from a request header.
pub fn authorizer(input: &Value) -> Result<Value, AwsError> {
    let kind = input["authorizerType"].as_str().unwrap_or_default();
    let name = input["name"]
        .as_str()
        .filter(|n| !n.is_empty() && n.len() <= 128)
        .ok_or_else(|| bad_request("Invalid authorizer name specified"))?;
    match kind {
        "JWT" => {}
        "REQUEST" => return lambda_authorizer(input, name),
        _ => {
            return Err(bad_request(format!(
                "Invalid authorizer type {kind}: this nimbus checks JWT and REQUEST authorizers"
            )));
        }
    }
    let configuration = &input["jwtConfiguration"];
    let issuer = configuration["issuer"].as_str().unwrap_or_default();
    if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
        // http is accepted too, for issuers on a local network.
        return Err(bad_request(
            "JwtConfiguration.Issuer must be an https (or http) URL",
        ));
    }
    if configuration["audience"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        return Err(bad_request(
            "JwtConfiguration.Audience must name at least one audience",
        ));
    }
    let sources = match &input["identitySource"] {
        Value::Array(sources) if !sources.is_empty() => sources.clone(),
        _ => vec![json!("$request.header.Authorization")],
    };
    if sources.len() != 1
        || !sources[0]
            .as_str()
            .is_some_and(|s| s.starts_with("$request.header."))
    {
        return Err(bad_request(
            "IdentitySource of a JWT authorizer must be one $request.header.<name>",
        ));
    }
    Ok(json!({
        "authorizerId": id(6),
        "authorizerType": kind,
        "name": name,
        "identitySource": sources,
        "jwtConfiguration": configuration,
    }))
}

/// A Lambda (`REQUEST`) authorizer as `CreateAuthorizer` makes it: the function that
/// decides, the sources its answers are cached by and for how long, and the answer's
/// shape (simple, or an IAM policy).
fn lambda_authorizer(input: &Value, name: &str) -> Result<Value, AwsError> {
    let uri = input["authorizerUri"].as_str().unwrap_or_default();
    if invoke::function_of(uri).is_none() {
        return Err(bad_request(format!(
            "Invalid authorizer URI specified: {uri} is not a Lambda function"
        )));
    }
    let format = input["authorizerPayloadFormatVersion"]
        .as_str()
        .unwrap_or_default();
    if format != "2.0" {
        return Err(bad_request(
            "AuthorizerPayloadFormatVersion must be 2.0: this nimbus sends the 2.0 authorizer event",
        ));
    }
    let ttl = input["authorizerResultTtlInSeconds"].as_i64().unwrap_or(0);
    if !(0..=3600).contains(&ttl) {
        return Err(bad_request(
            "AuthorizerResultTtlInSeconds must be between 0 and 3600",
        ));
    }
    let sources = input["identitySource"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if ttl > 0 && sources.is_empty() {
        return Err(bad_request(
            "Caching an authorizer's results needs an IdentitySource",
        ));
    }
    if !sources.iter().all(|s| {
        s.as_str()
            .is_some_and(|s| s.starts_with("$request.header."))
    }) {
        return Err(bad_request(
            "IdentitySource entries must be $request.header.<name>",
        ));
    }
    Ok(json!({
        "authorizerId": id(6),
        "authorizerType": "REQUEST",
        "name": name,
        "authorizerUri": uri,
        "authorizerPayloadFormatVersion": format,
        "authorizerResultTtlInSeconds": ttl,
        "enableSimpleResponses": input["enableSimpleResponses"].as_bool().unwrap_or(false),
        "identitySource": sources,
    }))
}
