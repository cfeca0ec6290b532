//! Lambda's rest-json API: each request becomes a typed operation, which the control
//! plane carries out on a blocking thread.

use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use nimbus_edge::protocol::rest_json::{self, PathParams, RestRoutes};
use nimbus_edge::{
    Authorization, AwsError, Check, OperationDoc, RequestContext, Routed, Service,
    ServiceDescriptor, ServiceRequest, catalog,
};

use crate::async_queue::AsyncQueue;
use crate::code::CodeRef;
use crate::code_links::CodeLinks;
use crate::error::{invalid_content, invalid_parameter, service, too_large, validation};
use crate::event_sources::EventSources;
use crate::functions::Functions;
use crate::invoke::{InvokeRequest, Invoker};
use crate::layers::layer_name;
use crate::model::*;
use crate::names::FunctionRef;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    CreateFunction,
    ListFunctions,
    GetFunction,
    DeleteFunction,
    GetFunctionConfiguration,
    UpdateFunctionConfiguration,
    UpdateFunctionCode,
    PublishVersion,
    ListVersionsByFunction,
    CreateAlias,
    ListAliases,
    GetAlias,
    UpdateAlias,
    DeleteAlias,
    PutFunctionConcurrency,
    GetFunctionConcurrency,
    DeleteFunctionConcurrency,
    TagResource,
    UntagResource,
    ListTags,
    GetAccountSettings,
    AddPermission,
    GetPolicy,
    RemovePermission,
    PutFunctionEventInvokeConfig,
    UpdateFunctionEventInvokeConfig,
    GetFunctionEventInvokeConfig,
    DeleteFunctionEventInvokeConfig,
    ListFunctionEventInvokeConfigs,
    CreateFunctionUrlConfig,
    GetFunctionUrlConfig,
    UpdateFunctionUrlConfig,
    DeleteFunctionUrlConfig,
    ListFunctionUrlConfigs,
    CreateEventSourceMapping,
    GetEventSourceMapping,
    UpdateEventSourceMapping,
    DeleteEventSourceMapping,
    ListEventSourceMappings,
    Invoke,
    PublishLayerVersion,
    ListLayers,
    ListLayerVersions,
    GetLayerVersion,
    DeleteLayerVersion,
}

/// The ARNs the operations act on, as AWS's authorization reference writes them.
const FUNCTION: &str = "arn:${Partition}:lambda:${Region}:${Account}:function:${FunctionName}";
const LAYER: &str = "arn:${Partition}:lambda:${Region}:${Account}:layer:${LayerName}";
const LAYER_VERSION: &str =
    "arn:${Partition}:lambda:${Region}:${Account}:layer:${LayerName}:${LayerVersion}";

const MAPPING: &str = "arn:${Partition}:lambda:${Region}:${Account}:event-source-mapping:${UUID}";

const fn fun(action: &'static str) -> Authorization {
    Authorization::new(action, FUNCTION)
}
const fn any(action: &'static str) -> Authorization {
    Authorization::new(action, "*")
}
const fn layer(action: &'static str) -> Authorization {
    Authorization::new(action, LAYER)
}
const fn layer_version(action: &'static str) -> Authorization {
    Authorization::new(action, LAYER_VERSION)
}

/// A function runs as the execution role it names, which the caller hands over.
const PASSES_ROLE: &[&str] = &["iam:PassRole"];
/// Code read from a bucket or an image is read as the caller, by the operation as it
/// reads it (`Functions::pin_image`, the zip from `Code.S3Bucket`).
const READS_CODE: &[&str] = &[
    "s3:GetObject",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
];
const READS_LAYER: &[&str] = &["s3:GetObject"];
const CREATES_FUNCTION: &[&str] = &[
    "iam:PassRole",
    "s3:GetObject",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
];

static ROUTES: LazyLock<RestRoutes<Route>> = LazyLock::new(|| {
    use Route::*;
    RestRoutes::new(&[
        (
            Method::POST,
            "/2015-03-31/functions",
            CreateFunction,
            fun("lambda:CreateFunction").dependent(CREATES_FUNCTION),
        ),
        (
            Method::GET,
            "/2015-03-31/functions",
            ListFunctions,
            any("lambda:ListFunctions"),
        ),
        (
            Method::GET,
            "/2015-03-31/functions/{FunctionName}",
            GetFunction,
            fun("lambda:GetFunction"),
        ),
        (
            Method::DELETE,
            "/2015-03-31/functions/{FunctionName}",
            DeleteFunction,
            fun("lambda:DeleteFunction"),
        ),
        (
            Method::GET,
            "/2015-03-31/functions/{FunctionName}/configuration",
            GetFunctionConfiguration,
            fun("lambda:GetFunctionConfiguration"),
        ),
        (
            Method::PUT,
            "/2015-03-31/functions/{FunctionName}/configuration",
            UpdateFunctionConfiguration,
            fun("lambda:UpdateFunctionConfiguration").dependent(PASSES_ROLE),
        ),
        (
            Method::PUT,
            "/2015-03-31/functions/{FunctionName}/code",
            UpdateFunctionCode,
            fun("lambda:UpdateFunctionCode").dependent(READS_CODE),
        ),
        (
            Method::POST,
            "/2015-03-31/functions/{FunctionName}/versions",
            PublishVersion,
            fun("lambda:PublishVersion"),
        ),
        (
            Method::GET,
            "/2015-03-31/functions/{FunctionName}/versions",
            ListVersionsByFunction,
            fun("lambda:ListVersionsByFunction"),
        ),
        (
            Method::POST,
            "/2015-03-31/functions/{FunctionName}/aliases",
            CreateAlias,
            fun("lambda:CreateAlias"),
        ),
        (
            Method::GET,
            "/2015-03-31/functions/{FunctionName}/aliases",
            ListAliases,
            fun("lambda:ListAliases"),
        ),
        (
            Method::GET,
            "/2015-03-31/functions/{FunctionName}/aliases/{Name}",
            GetAlias,
            fun("lambda:GetAlias"),
        ),
        (
            Method::PUT,
            "/2015-03-31/functions/{FunctionName}/aliases/{Name}",
            UpdateAlias,
            fun("lambda:UpdateAlias"),
        ),
        (
            Method::DELETE,
            "/2015-03-31/functions/{FunctionName}/aliases/{Name}",
            DeleteAlias,
            fun("lambda:DeleteAlias"),
        ),
        (
            Method::PUT,
            "/2017-10-31/functions/{FunctionName}/concurrency",
            PutFunctionConcurrency,
            fun("lambda:PutFunctionConcurrency"),
        ),
        (
            Method::GET,
            "/2019-09-30/functions/{FunctionName}/concurrency",
            GetFunctionConcurrency,
            fun("lambda:GetFunctionConcurrency"),
        ),
        (
            Method::DELETE,
            "/2017-10-31/functions/{FunctionName}/concurrency",
            DeleteFunctionConcurrency,
            fun("lambda:DeleteFunctionConcurrency"),
        ),
        (
            Method::POST,
            "/2017-03-31/tags/{Resource}",
            TagResource,
            fun("lambda:TagResource"),
        ),
        (
            Method::DELETE,
            "/2017-03-31/tags/{Resource}",
            UntagResource,
            fun("lambda:UntagResource"),
        ),
        (
            Method::GET,
            "/2017-03-31/tags/{Resource}",
            ListTags,
            fun("lambda:ListTags"),
        ),
        (
            Method::GET,
            "/2016-08-19/account-settings",
            GetAccountSettings,
            any("lambda:GetAccountSettings"),
        ),
        (
            Method::POST,
            "/2015-03-31/functions/{FunctionName}/policy",
            AddPermission,
            fun("lambda:AddPermission"),
        ),
        (
            Method::GET,
            "/2015-03-31/functions/{FunctionName}/policy",
            GetPolicy,
            fun("lambda:GetPolicy"),
        ),
        (
            Method::DELETE,
            "/2015-03-31/functions/{FunctionName}/policy/{StatementId}",
            RemovePermission,
            fun("lambda:RemovePermission"),
        ),
        (
            Method::PUT,
            "/2019-09-25/functions/{FunctionName}/event-invoke-config",
            PutFunctionEventInvokeConfig,
            fun("lambda:PutFunctionEventInvokeConfig"),
        ),
        (
            Method::POST,
            "/2019-09-25/functions/{FunctionName}/event-invoke-config",
            UpdateFunctionEventInvokeConfig,
            fun("lambda:UpdateFunctionEventInvokeConfig"),
        ),
        (
            Method::GET,
            "/2019-09-25/functions/{FunctionName}/event-invoke-config",
            GetFunctionEventInvokeConfig,
            fun("lambda:GetFunctionEventInvokeConfig"),
        ),
        (
            Method::DELETE,
            "/2019-09-25/functions/{FunctionName}/event-invoke-config",
            DeleteFunctionEventInvokeConfig,
            fun("lambda:DeleteFunctionEventInvokeConfig"),
        ),
        (
            Method::GET,
            "/2019-09-25/functions/{FunctionName}/event-invoke-config/list",
            ListFunctionEventInvokeConfigs,
            fun("lambda:ListFunctionEventInvokeConfigs"),
        ),
        (
            Method::POST,
            "/2021-10-31/functions/{FunctionName}/url",
            CreateFunctionUrlConfig,
            fun("lambda:CreateFunctionUrlConfig"),
        ),
        (
            Method::GET,
            "/2021-10-31/functions/{FunctionName}/url",
            GetFunctionUrlConfig,
            fun("lambda:GetFunctionUrlConfig"),
        ),
        (
            Method::PUT,
            "/2021-10-31/functions/{FunctionName}/url",
            UpdateFunctionUrlConfig,
            fun("lambda:UpdateFunctionUrlConfig"),
        ),
        (
            Method::DELETE,
            "/2021-10-31/functions/{FunctionName}/url",
            DeleteFunctionUrlConfig,
            fun("lambda:DeleteFunctionUrlConfig"),
        ),
        (
            Method::GET,
            "/2021-10-31/functions/{FunctionName}/urls",
            ListFunctionUrlConfigs,
            fun("lambda:ListFunctionUrlConfigs"),
        ),
        (
            Method::POST,
            "/2015-03-31/event-source-mappings",
            CreateEventSourceMapping,
            // The function the mapping invokes is checked too.
            any("lambda:CreateEventSourceMapping").keys(&["lambda:FunctionArn"]),
        ),
        (
            Method::GET,
            "/2015-03-31/event-source-mappings",
            ListEventSourceMappings,
            any("lambda:ListEventSourceMappings"),
        ),
        (
            Method::GET,
            "/2015-03-31/event-source-mappings/{UUID}",
            GetEventSourceMapping,
            Authorization::new("lambda:GetEventSourceMapping", MAPPING),
        ),
        (
            Method::PUT,
            "/2015-03-31/event-source-mappings/{UUID}",
            UpdateEventSourceMapping,
            Authorization::new("lambda:UpdateEventSourceMapping", MAPPING)
                .keys(&["lambda:FunctionArn"]),
        ),
        (
            Method::DELETE,
            "/2015-03-31/event-source-mappings/{UUID}",
            DeleteEventSourceMapping,
            Authorization::new("lambda:DeleteEventSourceMapping", MAPPING),
        ),
        (
            Method::POST,
            "/2015-03-31/functions/{FunctionName}/invocations",
            Invoke,
            fun("lambda:InvokeFunction"),
        ),
        (
            Method::POST,
            "/2018-10-31/layers/{LayerName}/versions",
            PublishLayerVersion,
            layer("lambda:PublishLayerVersion").dependent(READS_LAYER),
        ),
        (
            Method::GET,
            "/2018-10-31/layers",
            ListLayers,
            any("lambda:ListLayers"),
        ),
        (
            Method::GET,
            "/2018-10-31/layers/{LayerName}/versions",
            ListLayerVersions,
            layer("lambda:ListLayerVersions"),
        ),
        (
            Method::GET,
            "/2018-10-31/layers/{LayerName}/versions/{VersionNumber}",
            GetLayerVersion,
            layer_version("lambda:GetLayerVersion"),
        ),
        (
            Method::DELETE,
            "/2018-10-31/layers/{LayerName}/versions/{VersionNumber}",
            DeleteLayerVersion,
            layer_version("lambda:DeleteLayerVersion"),
        ),
    ])
});

/// Marker and MaxItems of a list operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub marker: Option<String>,
    pub max_items: usize,
}

#[derive(Debug)]
pub enum LambdaOperation {
    CreateFunction(Box<CreateFunctionRequest>, FunctionRef),
    ListFunctions(Page),
    GetFunction(FunctionRef),
    GetFunctionConfiguration(FunctionRef),
    DeleteFunction(FunctionRef),
    UpdateFunctionConfiguration(FunctionRef, UpdateFunctionConfigurationRequest),
    UpdateFunctionCode(FunctionRef, UpdateFunctionCodeRequest),
    PublishVersion(FunctionRef, PublishVersionRequest),
    ListVersionsByFunction(FunctionRef, Page),
    CreateAlias(FunctionRef, CreateAliasRequest),
    ListAliases(FunctionRef, Option<String>, Page),
    GetAlias(FunctionRef, String),
    UpdateAlias(FunctionRef, String, UpdateAliasRequest),
    DeleteAlias(FunctionRef, String),
    PutFunctionConcurrency(FunctionRef, i64),
    GetFunctionConcurrency(FunctionRef),
    DeleteFunctionConcurrency(FunctionRef),
    TagResource(String, TagResourceRequest),
    UntagResource(String, Vec<String>),
    ListTags(String),
    GetAccountSettings,
    AddPermission(FunctionRef, Box<crate::permissions::AddPermissionRequest>),
    GetPolicy(FunctionRef),
    RemovePermission(FunctionRef, String),
    PutEventInvokeConfig(
        FunctionRef,
        Box<crate::event_invoke::EventInvokeConfig>,
        bool,
    ),
    GetEventInvokeConfig(FunctionRef),
    DeleteEventInvokeConfig(FunctionRef),
    ListEventInvokeConfigs(FunctionRef),
    CreateUrl(FunctionRef, crate::function_urls::UrlRequest),
    GetUrl(FunctionRef),
    UpdateUrl(FunctionRef, crate::function_urls::UrlRequest),
    DeleteUrl(FunctionRef),
    ListUrls(FunctionRef),
    CreateMapping(serde_json::Value),
    GetMapping(String),
    UpdateMapping(String, serde_json::Value),
    DeleteMapping(String),
    ListMappings(Option<String>, Option<String>, Page),
    Invoke(Box<Invocation>),
    PublishLayerVersion(String, Box<PublishLayerVersionRequest>),
    ListLayers(Option<String>, Page),
    ListLayerVersions(String, Option<String>, Page),
    GetLayerVersion(String, u64),
    DeleteLayerVersion(String, u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationType {
    RequestResponse,
    Event,
    DryRun,
}

/// An Invoke request, its limits checked.
#[derive(Debug)]
pub struct Invocation {
    pub function: FunctionRef,
    pub kind: InvocationType,
    pub payload: Bytes,
    pub tail: bool,
    /// The decoded `X-Amz-Client-Context` JSON.
    pub client_context: Option<String>,
}

/// Payload limits: synchronous and asynchronous invocations.
const MAX_SYNC_PAYLOAD: usize = 6 * 1024 * 1024;
const MAX_ASYNC_PAYLOAD: usize = 1024 * 1024;
/// The largest `X-Amz-Client-Context`, base64.
const MAX_CLIENT_CONTEXT: usize = 3583;

impl LambdaOperation {
    fn name(&self) -> &'static str {
        use LambdaOperation::*;
        match self {
            CreateFunction(..) => "CreateFunction",
            ListFunctions(..) => "ListFunctions",
            GetFunction(..) => "GetFunction",
            GetFunctionConfiguration(..) => "GetFunctionConfiguration",
            DeleteFunction(..) => "DeleteFunction",
            UpdateFunctionConfiguration(..) => "UpdateFunctionConfiguration",
            UpdateFunctionCode(..) => "UpdateFunctionCode",
            PublishVersion(..) => "PublishVersion",
            ListVersionsByFunction(..) => "ListVersionsByFunction",
            CreateAlias(..) => "CreateAlias",
            ListAliases(..) => "ListAliases",
            GetAlias(..) => "GetAlias",
            UpdateAlias(..) => "UpdateAlias",
            DeleteAlias(..) => "DeleteAlias",
            PutFunctionConcurrency(..) => "PutFunctionConcurrency",
            GetFunctionConcurrency(..) => "GetFunctionConcurrency",
            DeleteFunctionConcurrency(..) => "DeleteFunctionConcurrency",
            TagResource(..) => "TagResource",
            UntagResource(..) => "UntagResource",
            ListTags(..) => "ListTags",
            GetAccountSettings => "GetAccountSettings",
            AddPermission(..) => "AddPermission",
            GetPolicy(_) => "GetPolicy",
            RemovePermission(..) => "RemovePermission",
            PutEventInvokeConfig(_, _, false) => "PutFunctionEventInvokeConfig",
            PutEventInvokeConfig(_, _, true) => "UpdateFunctionEventInvokeConfig",
            GetEventInvokeConfig(_) => "GetFunctionEventInvokeConfig",
            DeleteEventInvokeConfig(_) => "DeleteFunctionEventInvokeConfig",
            ListEventInvokeConfigs(_) => "ListFunctionEventInvokeConfigs",
            CreateUrl(..) => "CreateFunctionUrlConfig",
            GetUrl(_) => "GetFunctionUrlConfig",
            UpdateUrl(..) => "UpdateFunctionUrlConfig",
            DeleteUrl(_) => "DeleteFunctionUrlConfig",
            ListUrls(_) => "ListFunctionUrlConfigs",
            CreateMapping(_) => "CreateEventSourceMapping",
            GetMapping(_) => "GetEventSourceMapping",
            UpdateMapping(..) => "UpdateEventSourceMapping",
            DeleteMapping(_) => "DeleteEventSourceMapping",
            ListMappings(..) => "ListEventSourceMappings",
            Invoke(..) => "Invoke",
            PublishLayerVersion(..) => "PublishLayerVersion",
            ListLayers(..) => "ListLayers",
            ListLayerVersions(..) => "ListLayerVersions",
            GetLayerVersion(..) => "GetLayerVersion",
            DeleteLayerVersion(..) => "DeleteLayerVersion",
        }
    }
}

pub struct LambdaApi {
    functions: Arc<Functions>,
    invoker: Arc<Invoker>,
    queue: Arc<AsyncQueue>,
    links: Arc<CodeLinks>,
    sources: Arc<EventSources>,
    region: String,
    account: String,
}

impl LambdaApi {
    pub fn new(
        functions: Arc<Functions>,
        invoker: Arc<Invoker>,
        queue: Arc<AsyncQueue>,
        links: Arc<CodeLinks>,
        sources: Arc<EventSources>,
        region: &str,
        account: &str,
    ) -> Self {
        Self {
            functions,
            invoker,
            queue,
            links,
            sources,
            region: region.to_owned(),
            account: account.to_owned(),
        }
    }
}

struct Inputs<'a> {
    req: &'a ServiceRequest,
    params: PathParams,
    query: Vec<(String, String)>,
    region: &'a str,
    account: &'a str,
}

impl Inputs<'_> {
    fn query(&self, name: &str) -> Option<String> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    fn function(&self) -> Result<FunctionRef, AwsError> {
        let name = self.params.get("FunctionName").unwrap_or_default();
        FunctionRef::parse(name, self.region, self.account)?.with_qualifier(self.query("Qualifier"))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.req
            .parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
    }

    fn invocation(&self) -> Result<Invocation, AwsError> {
        use base64::Engine as _;
        let kind = match self.header("x-amz-invocation-type") {
            None | Some("RequestResponse") => InvocationType::RequestResponse,
            Some("Event") => InvocationType::Event,
            Some("DryRun") => InvocationType::DryRun,
            Some(other) => {
                return Err(validation(
                    "invocationType",
                    other,
                    "Member must satisfy enum value set: [Event, RequestResponse, DryRun]",
                ));
            }
        };
        let tail = match self.header("x-amz-log-type") {
            None | Some("None") => false,
            Some("Tail") => true,
            Some(other) => {
                return Err(validation(
                    "logType",
                    other,
                    "Member must satisfy enum value set: [None, Tail]",
                ));
            }
        };
        let limit = if kind == InvocationType::Event {
            MAX_ASYNC_PAYLOAD
        } else {
            MAX_SYNC_PAYLOAD
        };
        if self.req.body.len() > limit {
            return Err(too_large(format!(
                "{} byte payload is too large for the {} invocation type (limit {limit} bytes)",
                self.req.body.len(),
                if kind == InvocationType::Event {
                    "Event"
                } else {
                    "RequestResponse"
                }
            )));
        }
        let payload = if self.req.body.is_empty() {
            Bytes::from_static(b"{}")
        } else {
            self.req.body.clone()
        };
        serde_json::from_slice::<serde::de::IgnoredAny>(&payload).map_err(|err| {
            invalid_content(format!("Could not parse request body into json: {err}"))
        })?;
        let client_context = match self.header("x-amz-client-context") {
            None => None,
            Some(encoded) => {
                if encoded.len() > MAX_CLIENT_CONTEXT {
                    return Err(invalid_parameter(
                        "Client context must be 3583 bytes or less (base64)",
                    ));
                }
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .filter(|text| serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok())
                    .ok_or_else(|| {
                        invalid_parameter("Client context must be a base64-encoded JSON object")
                    })?;
                Some(decoded)
            }
        };
        Ok(Invocation {
            function: self.function()?,
            kind,
            payload,
            tail,
            client_context,
        })
    }

    fn layer(&self) -> Result<String, AwsError> {
        layer_name(
            self.params.get("LayerName").unwrap_or_default(),
            self.region,
            self.account,
        )
    }

    fn layer_version(&self) -> Result<u64, AwsError> {
        let text = self.path("VersionNumber");
        text.parse::<u64>()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| validation("versionNumber", &text, "Member must be a positive number"))
    }

    fn path(&self, name: &str) -> String {
        self.params.get(name).unwrap_or_default().to_owned()
    }

    fn body<T: serde::de::DeserializeOwned>(&self) -> Result<T, AwsError> {
        rest_json::json_body(self.req).map_err(invalid_content)
    }

    fn page(&self, max: usize) -> Result<Page, AwsError> {
        let max_items = match self.query("MaxItems") {
            None => max,
            Some(text) => {
                let value: i64 = text
                    .parse()
                    .map_err(|_| validation("maxItems", &text, "Member must be a number"))?;
                if !(1..=10_000).contains(&value) {
                    return Err(validation(
                        "maxItems",
                        &text,
                        "Member must have value between 1 and 10000",
                    ));
                }
                (value as usize).min(max)
            }
        };
        Ok(Page {
            marker: self.query("Marker"),
            max_items,
        })
    }
}

fn parse(route: Route, inputs: &Inputs) -> Result<LambdaOperation, AwsError> {
    use LambdaOperation as Op;
    Ok(match route {
        Route::CreateFunction => {
            let request: CreateFunctionRequest = inputs.body()?;
            let name = FunctionRef::parse(&request.function_name, inputs.region, inputs.account)?;
            Op::CreateFunction(Box::new(request), name)
        }
        Route::ListFunctions => Op::ListFunctions(inputs.page(50)?),
        Route::GetFunction => Op::GetFunction(inputs.function()?),
        Route::GetFunctionConfiguration => Op::GetFunctionConfiguration(inputs.function()?),
        Route::DeleteFunction => Op::DeleteFunction(inputs.function()?),
        Route::UpdateFunctionConfiguration => {
            Op::UpdateFunctionConfiguration(inputs.function()?, inputs.body()?)
        }
        Route::UpdateFunctionCode => Op::UpdateFunctionCode(inputs.function()?, inputs.body()?),
        Route::PublishVersion => Op::PublishVersion(inputs.function()?, inputs.body()?),
        Route::ListVersionsByFunction => {
            Op::ListVersionsByFunction(inputs.function()?, inputs.page(50)?)
        }
        Route::CreateAlias => Op::CreateAlias(inputs.function()?, inputs.body()?),
        Route::ListAliases => Op::ListAliases(
            inputs.function()?,
            inputs.query("FunctionVersion"),
            inputs.page(50)?,
        ),
        Route::GetAlias => Op::GetAlias(inputs.function()?, inputs.path("Name")),
        Route::UpdateAlias => {
            Op::UpdateAlias(inputs.function()?, inputs.path("Name"), inputs.body()?)
        }
        Route::DeleteAlias => Op::DeleteAlias(inputs.function()?, inputs.path("Name")),
        Route::PutFunctionConcurrency => {
            let request: PutFunctionConcurrencyRequest = inputs.body()?;
            Op::PutFunctionConcurrency(inputs.function()?, request.reserved_concurrent_executions)
        }
        Route::GetFunctionConcurrency => Op::GetFunctionConcurrency(inputs.function()?),
        Route::DeleteFunctionConcurrency => Op::DeleteFunctionConcurrency(inputs.function()?),
        Route::TagResource => Op::TagResource(inputs.path("Resource"), inputs.body()?),
        Route::UntagResource => Op::UntagResource(
            inputs.path("Resource"),
            inputs
                .query
                .iter()
                .filter(|(k, _)| k == "tagKeys")
                .map(|(_, v)| v.clone())
                .collect(),
        ),
        Route::ListTags => Op::ListTags(inputs.path("Resource")),
        Route::GetAccountSettings => Op::GetAccountSettings,
        Route::AddPermission => Op::AddPermission(inputs.function()?, Box::new(inputs.body()?)),
        Route::GetPolicy => Op::GetPolicy(inputs.function()?),
        Route::RemovePermission => {
            Op::RemovePermission(inputs.function()?, inputs.path("StatementId"))
        }
        Route::PutFunctionEventInvokeConfig => {
            Op::PutEventInvokeConfig(inputs.function()?, Box::new(inputs.body()?), false)
        }
        Route::UpdateFunctionEventInvokeConfig => {
            Op::PutEventInvokeConfig(inputs.function()?, Box::new(inputs.body()?), true)
        }
        Route::GetFunctionEventInvokeConfig => Op::GetEventInvokeConfig(inputs.function()?),
        Route::DeleteFunctionEventInvokeConfig => Op::DeleteEventInvokeConfig(inputs.function()?),
        Route::ListFunctionEventInvokeConfigs => Op::ListEventInvokeConfigs(inputs.function()?),
        Route::CreateFunctionUrlConfig => Op::CreateUrl(inputs.function()?, inputs.body()?),
        Route::GetFunctionUrlConfig => Op::GetUrl(inputs.function()?),
        Route::UpdateFunctionUrlConfig => Op::UpdateUrl(inputs.function()?, inputs.body()?),
        Route::DeleteFunctionUrlConfig => Op::DeleteUrl(inputs.function()?),
        Route::ListFunctionUrlConfigs => Op::ListUrls(inputs.function()?),
        Route::CreateEventSourceMapping => Op::CreateMapping(inputs.body()?),
        Route::GetEventSourceMapping => Op::GetMapping(inputs.path("UUID")),
        Route::UpdateEventSourceMapping => Op::UpdateMapping(inputs.path("UUID"), inputs.body()?),
        Route::DeleteEventSourceMapping => Op::DeleteMapping(inputs.path("UUID")),
        Route::ListEventSourceMappings => Op::ListMappings(
            inputs.query("FunctionName"),
            inputs.query("EventSourceArn"),
            inputs.page(100)?,
        ),
        Route::Invoke => Op::Invoke(Box::new(inputs.invocation()?)),
        Route::PublishLayerVersion => {
            Op::PublishLayerVersion(inputs.layer()?, Box::new(inputs.body()?))
        }
        Route::ListLayers => Op::ListLayers(inputs.query("CompatibleRuntime"), inputs.page(50)?),
        Route::ListLayerVersions => Op::ListLayerVersions(
            inputs.layer()?,
            inputs.query("CompatibleRuntime"),
            inputs.page(50)?,
        ),
        Route::GetLayerVersion => Op::GetLayerVersion(inputs.layer()?, inputs.layer_version()?),
        Route::DeleteLayerVersion => {
            Op::DeleteLayerVersion(inputs.layer()?, inputs.layer_version()?)
        }
    })
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Bytes> {
    rest_json::json_response(status, value)
}

fn listing<T: serde::Serialize>(
    key: &str,
    items: Vec<T>,
    next: Option<String>,
) -> serde_json::Value {
    let mut value = serde_json::json!({ key: items });
    if let Some(next) = next {
        value["NextMarker"] = next.into();
    }
    value
}

/// Runs a control-plane call on a blocking thread.
/// The edge's `host:port` as the client addressed it.
fn host_of(ctx: &RequestContext) -> String {
    ctx.endpoint.trim_start_matches("http://").to_owned()
}

async fn blocking<T: Send + 'static>(
    functions: &Arc<Functions>,
    call: impl FnOnce(&Functions) -> Result<T, AwsError> + Send + 'static,
) -> Result<T, AwsError> {
    let functions = functions.clone();
    tokio::task::spawn_blocking(move || call(&functions))
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "lambda control-plane task failed");
            service("An internal error occurred.")
        })?
}

impl LambdaApi {
    /// The resource of an operation: the function (as qualified in the request) with
    /// its own policy, the layer, or `*`; and the role a request gives a function,
    /// handed over with `iam:PassRole`.
    async fn checks(
        &self,
        ctx: &RequestContext,
        operation: &LambdaOperation,
    ) -> Result<Vec<Check>, AwsError> {
        use LambdaOperation as Op;
        let f = &self.functions;
        let layer = |name: &str, version: Option<u64>| {
            let arn = ctx.arn("lambda", &format!("layer:{name}"));
            version.map_or(arn.clone(), |v| format!("{arn}:{v}"))
        };
        let function: Option<&FunctionRef> = match operation {
            Op::CreateFunction(_, name) => Some(name),
            Op::GetFunction(r)
            | Op::GetFunctionConfiguration(r)
            | Op::DeleteFunction(r)
            | Op::UpdateFunctionConfiguration(r, _)
            | Op::UpdateFunctionCode(r, _)
            | Op::PublishVersion(r, _)
            | Op::ListVersionsByFunction(r, _)
            | Op::CreateAlias(r, _)
            | Op::ListAliases(r, _, _)
            | Op::GetAlias(r, _)
            | Op::UpdateAlias(r, _, _)
            | Op::DeleteAlias(r, _)
            | Op::PutFunctionConcurrency(r, _)
            | Op::GetFunctionConcurrency(r)
            | Op::DeleteFunctionConcurrency(r)
            | Op::AddPermission(r, _)
            | Op::GetPolicy(r)
            | Op::RemovePermission(r, _)
            | Op::PutEventInvokeConfig(r, _, _)
            | Op::GetEventInvokeConfig(r)
            | Op::DeleteEventInvokeConfig(r)
            | Op::ListEventInvokeConfigs(r)
            | Op::CreateUrl(r, _)
            | Op::GetUrl(r)
            | Op::UpdateUrl(r, _)
            | Op::DeleteUrl(r)
            | Op::ListUrls(r) => Some(r),
            Op::Invoke(invocation) => Some(&invocation.function),
            _ => None,
        };
        let resource = match (operation, function) {
            (_, Some(r)) => f.arn(&r.name, r.qualifier.as_deref()),
            (Op::TagResource(arn, _) | Op::UntagResource(arn, _) | Op::ListTags(arn), _) => {
                arn.clone()
            }
            (Op::PublishLayerVersion(name, _) | Op::ListLayerVersions(name, _, _), _) => {
                layer(name, None)
            }
            (Op::GetLayerVersion(name, v) | Op::DeleteLayerVersion(name, v), _) => {
                layer(name, Some(*v))
            }
            (Op::GetMapping(uuid) | Op::UpdateMapping(uuid, _) | Op::DeleteMapping(uuid), _) => {
                ctx.arn("lambda", &format!("event-source-mapping:{uuid}"))
            }
            _ => "*".to_owned(),
        };
        let policy = match function {
            Some(r) => {
                let name = r.name.clone();
                blocking(f, move |f| Ok(f.policy_document(&name))).await?
            }
            None => None,
        };
        let mut check = Check::on(resource).with_policy(policy);
        if let Op::CreateMapping(input) | Op::UpdateMapping(_, input) = operation
            && let Some(name) = input["FunctionName"].as_str()
        {
            let target = FunctionRef::parse(name, &self.region, &self.account)?;
            check = check.with_context(
                "lambda:FunctionArn",
                vec![f.arn(&target.name, target.qualifier.as_deref())],
            );
        }
        let mut checks = vec![check];
        let passed = match operation {
            Op::CreateFunction(request, _) => request.settings.role.as_deref(),
            Op::UpdateFunctionConfiguration(_, request) => request.settings.role.as_deref(),
            _ => None,
        };
        if let Some(role) = passed {
            checks.push(Check::dependent("iam:PassRole", role).with_context(
                "iam:PassedToService",
                vec!["lambda.amazonaws.com".to_owned()],
            ));
        }
        Ok(checks)
    }

    /// Finishes a create or update in the background, as Lambda does: the caller sees
    /// `Pending`/`InProgress` and polls (or waits) for `Active`/`Successful`.
    fn settle_later(&self, name: String) {
        let functions = self.functions.clone();
        tokio::spawn(async move {
            if let Err(err) = blocking(&functions, move |f| f.settle(&name)).await {
                tracing::error!(error = %err.message, "settling a function failed");
            }
        });
    }

    /// Settles every function a restart left half-created or half-updated.
    pub async fn resume(&self) -> Result<(), AwsError> {
        // Loads the reservations now, not on the first invoke.
        blocking(&self.functions, |f| f.reserved_total()).await?;
        for name in blocking(&self.functions, |f| f.unsettled()).await? {
            self.settle_later(name);
        }
        Ok(())
    }

    fn layer_with_content(
        &self,
        ctx: &RequestContext,
        layer: LayerVersion,
        code: &CodeRef,
    ) -> serde_json::Value {
        let mut value = serde_json::to_value(layer).expect("layers serialize");
        value["Content"] = serde_json::json!({
            "Location": self.links.link(&ctx.endpoint, &code.digest),
            "CodeSha256": code.code_sha256(),
            "CodeSize": code.size,
        });
        value
    }

    async fn get_function(
        &self,
        ctx: &RequestContext,
        function: FunctionRef,
    ) -> Result<serde_json::Value, AwsError> {
        let mut resolved = blocking(&self.functions, move |f| f.resolve(&function)).await?;
        // Say which of the machine's interpreters runs the function: the nearest one
        // when the exact version is not installed.
        if let Some(runtime) = resolved.config.runtime.clone() {
            let invoker = self.invoker.clone();
            let interpreter = tokio::task::spawn_blocking(move || invoker.interpreter(&runtime))
                .await
                .ok()
                .flatten();
            if let Some(interpreter) = interpreter {
                let version = interpreter
                    .version
                    .rsplit(' ')
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches('v');
                resolved.config.runtime_version_config = Some(RuntimeVersionConfig {
                    runtime_version_arn: format!(
                        "arn:aws:lambda:{}::runtime:nimbus:{}:{version}",
                        self.region, interpreter.runtime
                    ),
                });
            }
        }
        let code = match &resolved.image {
            Some(image) => serde_json::json!({
                "RepositoryType": "ECR",
                "ImageUri": image.uri,
                "ResolvedImageUri": image.resolved_uri,
            }),
            None => serde_json::json!({
                "RepositoryType": "S3",
                "Location": self.links.link(&ctx.endpoint, &resolved.code.digest),
            }),
        };
        let mut value = serde_json::json!({
            "Configuration": resolved.config,
            "Code": code,
            "Tags": resolved.record.tags,
        });
        if let Some(reserved) = resolved.record.reserved_concurrency {
            value["Concurrency"] = serde_json::json!({ "ReservedConcurrentExecutions": reserved });
        }
        Ok(value)
    }
}

impl LambdaApi {
    /// An event source mapping call, on a blocking thread.
    async fn mapping(
        &self,
        status: StatusCode,
        call: impl FnOnce(&EventSources) -> Result<serde_json::Value, AwsError> + Send + 'static,
    ) -> Result<Response<Bytes>, AwsError> {
        let sources = self.sources.clone();
        let value = tokio::task::spawn_blocking(move || call(&sources))
            .await
            .map_err(|_| service("An internal error occurred."))??;
        Ok(json(status, &value))
    }

    async fn invoke(
        &self,
        ctx: &RequestContext,
        invocation: Invocation,
    ) -> Result<Response<Bytes>, AwsError> {
        match invocation.kind {
            InvocationType::DryRun => {
                let function = invocation.function;
                blocking(&self.functions, move |f| f.resolve(&function).map(|_| ())).await?;
                Ok(rest_json::empty_response(StatusCode::NO_CONTENT))
            }
            InvocationType::Event => {
                let function = invocation.function.clone();
                blocking(&self.functions, move |f| {
                    f.resolve_active(&function).map(drop)
                })
                .await?;
                self.queue
                    .enqueue(invocation.function, &ctx.request_id, invocation.payload)
                    .await?;
                Ok(rest_json::empty_response(StatusCode::ACCEPTED))
            }
            InvocationType::RequestResponse => {
                let request = InvokeRequest {
                    function: invocation.function,
                    request_id: ctx.request_id.clone(),
                    payload: invocation.payload,
                    client_context: invocation.client_context,
                    tail: invocation.tail,
                };
                // On a task of its own: a client that hangs up does not cut the
                // invocation short, as on AWS.
                let invoker = self.invoker.clone();
                let result = tokio::spawn(async move { invoker.invoke(request).await })
                    .await
                    .map_err(|err| {
                        tracing::error!(error = %err, "an invocation task failed");
                        service("An internal error occurred.")
                    })??;
                let mut response = Response::new(result.payload);
                let headers = response.headers_mut();
                headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                if let Ok(version) = http::HeaderValue::from_str(&result.executed_version) {
                    headers.insert("x-amz-executed-version", version);
                }
                if let Some(error) = result.function_error {
                    headers.insert(
                        "x-amz-function-error",
                        http::HeaderValue::from_static(error),
                    );
                }
                if let Some(tail) = result
                    .log_tail
                    .and_then(|t| http::HeaderValue::from_str(&t).ok())
                {
                    headers.insert("x-amz-log-result", tail);
                }
                Ok(response)
            }
        }
    }
}

impl Service for LambdaApi {
    type Operation = Routed<LambdaOperation>;

    fn descriptor(&self) -> &'static ServiceDescriptor {
        &catalog::LAMBDA
    }

    fn operations(&self) -> Vec<OperationDoc> {
        ROUTES.operations()
    }

    fn parse(&self, req: &ServiceRequest) -> Result<Routed<LambdaOperation>, AwsError> {
        let (route, authorization, params) =
            ROUTES.find(&req.parts.method, req.parts.uri.path())?;
        let inputs = Inputs {
            req,
            params,
            query: rest_json::query_params(req),
            region: &self.region,
            account: &self.account,
        };
        let operation = parse(route, &inputs)?;
        Ok(Routed {
            name: operation.name(),
            operation,
            authorization,
        })
    }

    async fn access(
        &self,
        ctx: &RequestContext,
        operation: &Routed<LambdaOperation>,
    ) -> Result<Vec<Check>, AwsError> {
        self.checks(ctx, &operation.operation).await
    }

    async fn handle(
        &self,
        ctx: &RequestContext,
        operation: Routed<LambdaOperation>,
    ) -> Result<Response<Bytes>, AwsError> {
        use LambdaOperation as Op;
        let operation = operation.operation;
        let f = &self.functions;
        match operation {
            Op::CreateFunction(request, name) => {
                let caller = ctx.caller.clone();
                let config = blocking(f, move |f| f.create(&caller, *request, name)).await?;
                if config.state == "Pending" {
                    self.settle_later(config.function_name.clone());
                }
                Ok(json(StatusCode::CREATED, &config))
            }
            Op::ListFunctions(page) => {
                let (items, next) =
                    blocking(f, move |f| f.list(page.marker.as_deref(), page.max_items)).await?;
                Ok(json(StatusCode::OK, &listing("Functions", items, next)))
            }
            Op::GetFunction(function) => Ok(json(
                StatusCode::OK,
                &self.get_function(ctx, function).await?,
            )),
            Op::GetFunctionConfiguration(function) => {
                let resolved = blocking(f, move |f| f.resolve(&function)).await?;
                Ok(json(StatusCode::OK, &resolved.config))
            }
            Op::DeleteFunction(function) => {
                let name = function.name.clone();
                blocking(f, move |f| f.delete(function)).await?;
                self.invoker.retire(&name);
                Ok(rest_json::empty_response(StatusCode::NO_CONTENT))
            }
            Op::UpdateFunctionConfiguration(function, request) => {
                let config = blocking(f, move |f| f.update_config(function, request)).await?;
                self.invoker.retire(&config.function_name);
                self.settle_later(config.function_name.clone());
                Ok(json(StatusCode::OK, &config))
            }
            Op::UpdateFunctionCode(function, request) => {
                let caller = ctx.caller.clone();
                let config =
                    blocking(f, move |f| f.update_code(&caller, function, request)).await?;
                self.invoker.retire(&config.function_name);
                self.settle_later(config.function_name.clone());
                Ok(json(StatusCode::OK, &config))
            }
            Op::PublishVersion(function, request) => {
                let config = blocking(f, move |f| f.publish_version(function, request)).await?;
                Ok(json(StatusCode::CREATED, &config))
            }
            Op::ListVersionsByFunction(function, page) => {
                let (items, next) = blocking(f, move |f| {
                    f.list_versions(function, page.marker.as_deref(), page.max_items)
                })
                .await?;
                Ok(json(StatusCode::OK, &listing("Versions", items, next)))
            }
            Op::CreateAlias(function, request) => {
                let alias = blocking(f, move |f| f.create_alias(function, request)).await?;
                Ok(json(StatusCode::CREATED, &alias))
            }
            Op::ListAliases(function, version, page) => {
                let (items, next) = blocking(f, move |f| {
                    f.list_aliases(
                        function,
                        version.as_deref(),
                        page.marker.as_deref(),
                        page.max_items,
                    )
                })
                .await?;
                Ok(json(StatusCode::OK, &listing("Aliases", items, next)))
            }
            Op::GetAlias(function, alias) => {
                let alias = blocking(f, move |f| f.get_alias(function, &alias)).await?;
                Ok(json(StatusCode::OK, &alias))
            }
            Op::UpdateAlias(function, alias, request) => {
                let alias = blocking(f, move |f| f.update_alias(function, &alias, request)).await?;
                Ok(json(StatusCode::OK, &alias))
            }
            Op::DeleteAlias(function, alias) => {
                blocking(f, move |f| f.delete_alias(function, &alias)).await?;
                Ok(rest_json::empty_response(StatusCode::NO_CONTENT))
            }
            Op::PutFunctionConcurrency(function, reserved) => {
                let reserved = blocking(f, move |f| f.put_concurrency(function, reserved)).await?;
                Ok(json(
                    StatusCode::OK,
                    &serde_json::json!({ "ReservedConcurrentExecutions": reserved }),
                ))
            }
            Op::GetFunctionConcurrency(function) => {
                let reserved = blocking(f, move |f| f.get_concurrency(function)).await?;
                let body = match reserved {
                    Some(reserved) => {
                        serde_json::json!({ "ReservedConcurrentExecutions": reserved })
                    }
                    None => serde_json::json!({}),
                };
                Ok(json(StatusCode::OK, &body))
            }
            Op::DeleteFunctionConcurrency(function) => {
                blocking(f, move |f| f.delete_concurrency(function)).await?;
                Ok(rest_json::empty_response(StatusCode::NO_CONTENT))
            }
            Op::TagResource(arn, request) => {
                blocking(f, move |f| f.tag(&arn, request.tags)).await?;
                Ok(rest_json::empty_response(StatusCode::NO_CONTENT))
            }
            Op::UntagResource(arn, keys) => {
                blocking(f, move |f| f.untag(&arn, &keys)).await?;
                Ok(rest_json::empty_response(StatusCode::NO_CONTENT))
            }
            Op::ListTags(arn) => {
                let tags = blocking(f, move |f| f.tags(&arn)).await?;
                Ok(json(StatusCode::OK, &serde_json::json!({ "Tags": tags })))
            }
            Op::GetAccountSettings => Ok(json(
                StatusCode::OK,
                &blocking(f, |f| f.account_settings()).await?,
            )),
            Op::AddPermission(function, request) => Ok(json(
                StatusCode::CREATED,
                &blocking(f, move |f| f.add_permission(function, *request)).await?,
            )),
            Op::GetPolicy(function) => Ok(json(
                StatusCode::OK,
                &blocking(f, move |f| f.get_policy(function)).await?,
            )),
            Op::RemovePermission(function, statement) => {
                blocking(f, move |f| f.remove_permission(function, &statement)).await?;
                Ok(rest_json::empty_response(StatusCode::NO_CONTENT))
            }
            Op::PutEventInvokeConfig(function, config, merge) => Ok(json(
                StatusCode::OK,
                &blocking(f, move |f| f.put_event_invoke(function, *config, merge)).await?,
            )),
            Op::GetEventInvokeConfig(function) => Ok(json(
                StatusCode::OK,
                &blocking(f, move |f| f.get_event_invoke(function)).await?,
            )),
            Op::DeleteEventInvokeConfig(function) => {
                blocking(f, move |f| f.delete_event_invoke(function)).await?;
                Ok(rest_json::empty_response(StatusCode::NO_CONTENT))
            }
            Op::ListEventInvokeConfigs(function) => Ok(json(
                StatusCode::OK,
                &blocking(f, move |f| f.list_event_invoke(function)).await?,
            )),
            Op::CreateUrl(function, request) => {
                let host = host_of(ctx);
                Ok(json(
                    StatusCode::CREATED,
                    &blocking(f, move |f| f.create_url(function, request, &host)).await?,
                ))
            }
            Op::GetUrl(function) => {
                let host = host_of(ctx);
                Ok(json(
                    StatusCode::OK,
                    &blocking(f, move |f| f.get_url(function, &host)).await?,
                ))
            }
            Op::UpdateUrl(function, request) => {
                let host = host_of(ctx);
                Ok(json(
                    StatusCode::OK,
                    &blocking(f, move |f| f.update_url(function, request, &host)).await?,
                ))
            }
            Op::DeleteUrl(function) => {
                blocking(f, move |f| f.delete_url(function)).await?;
                Ok(rest_json::empty_response(StatusCode::NO_CONTENT))
            }
            Op::ListUrls(function) => {
                let host = host_of(ctx);
                Ok(json(
                    StatusCode::OK,
                    &blocking(f, move |f| f.list_urls(function, &host)).await?,
                ))
            }
            Op::Invoke(invocation) => self.invoke(ctx, *invocation).await,
            Op::CreateMapping(input) => {
                self.mapping(StatusCode::ACCEPTED, move |s| s.create(&input))
                    .await
            }
            Op::GetMapping(uuid) => self.mapping(StatusCode::OK, move |s| s.get(&uuid)).await,
            Op::UpdateMapping(uuid, input) => {
                self.mapping(StatusCode::ACCEPTED, move |s| s.update(&uuid, &input))
                    .await
            }
            Op::DeleteMapping(uuid) => {
                self.mapping(StatusCode::ACCEPTED, move |s| s.delete(&uuid))
                    .await
            }
            Op::ListMappings(function, source, page) => {
                self.mapping(StatusCode::OK, move |s| {
                    s.list(
                        function.as_deref(),
                        source.as_deref(),
                        page.marker.as_deref(),
                        page.max_items,
                    )
                })
                .await
            }
            Op::PublishLayerVersion(name, request) => {
                let caller = ctx.caller.clone();
                let (layer, code) =
                    blocking(f, move |f| f.publish_layer_version(&caller, name, *request)).await?;
                Ok(json(
                    StatusCode::CREATED,
                    &self.layer_with_content(ctx, layer, &code),
                ))
            }
            Op::GetLayerVersion(name, version) => {
                let (layer, code) =
                    blocking(f, move |f| f.get_layer_version(&name, version)).await?;
                Ok(json(
                    StatusCode::OK,
                    &self.layer_with_content(ctx, layer, &code),
                ))
            }
            Op::DeleteLayerVersion(name, version) => {
                blocking(f, move |f| f.delete_layer_version(&name, version)).await?;
                Ok(rest_json::empty_response(StatusCode::NO_CONTENT))
            }
            Op::ListLayerVersions(name, runtime, page) => {
                let (items, next) = blocking(f, move |f| {
                    f.list_layer_versions(
                        &name,
                        runtime.as_deref(),
                        page.marker.as_deref(),
                        page.max_items,
                    )
                })
                .await?;
                Ok(json(StatusCode::OK, &listing("LayerVersions", items, next)))
            }
            Op::ListLayers(runtime, page) => {
                let (items, next) = blocking(f, move |f| {
                    f.list_layers(runtime.as_deref(), page.marker.as_deref(), page.max_items)
                })
                .await?;
                let layers: Vec<serde_json::Value> = items
                    .into_iter()
                    .map(|(name, latest)| {
                        serde_json::json!({
                            "LayerName": name,
                            "LayerArn": latest.layer_arn,
                            "LatestMatchingVersion": latest,
                        })
                    })
                    .collect();
                Ok(json(StatusCode::OK, &listing("Layers", layers, next)))
            }
        }
    }
}
