//! API Gateway v2's rest-json management API for HTTP APIs: APIs (with quick
//! create), routes, integrations and stages.

use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use nimbus_edge::protocol::rest_json::{self, PathParams, RestRoutes};
use nimbus_edge::{
    Authorization, AwsError, Check, OperationDoc, RequestContext, Routed, Service,
    ServiceDescriptor, ServiceRequest, catalog,
};
use serde_json::{Value, json};

use crate::rest_api::{RestCall, RestOp, TABLE as REST_TABLE};
use crate::{
    Api, Apis, authorizer, bad_request, check_route_key, conflict, integration, internal,
    not_found, stage,
};

crate::operations!(Op {
    CreateApi,
    GetApis,
    GetApi,
    UpdateApi,
    DeleteApi,
    CreateRoute,
    GetRoutes,
    GetRoute,
    UpdateRoute,
    DeleteRoute,
    CreateIntegration,
    GetIntegrations,
    GetIntegration,
    UpdateIntegration,
    DeleteIntegration,
    CreateStage,
    GetStages,
    GetStage,
    UpdateStage,
    DeleteStage,
    CreateAuthorizer,
    GetAuthorizers,
    GetAuthorizer,
    UpdateAuthorizer,
    DeleteAuthorizer,
    CreateDeployment,
    GetDeployments,
    GetDeployment,
    UpdateDeployment,
    DeleteDeployment,
});

/// The resources API Gateway's actions (its HTTP verbs) act on.
const APIS: &str = "arn:${Partition}:apigateway:${Region}::/apis";
const API: &str = "arn:${Partition}:apigateway:${Region}::/apis/${ApiId}";
const ROUTES: &str = "arn:${Partition}:apigateway:${Region}::/apis/${ApiId}/routes";
const ROUTE: &str = "arn:${Partition}:apigateway:${Region}::/apis/${ApiId}/routes/${RouteId}";
const INTEGRATIONS: &str = "arn:${Partition}:apigateway:${Region}::/apis/${ApiId}/integrations";
const INTEGRATION: &str =
    "arn:${Partition}:apigateway:${Region}::/apis/${ApiId}/integrations/${IntegrationId}";
const STAGES: &str = "arn:${Partition}:apigateway:${Region}::/apis/${ApiId}/stages";
const STAGE: &str = "arn:${Partition}:apigateway:${Region}::/apis/${ApiId}/stages/${StageName}";
const AUTHORIZERS: &str = "arn:${Partition}:apigateway:${Region}::/apis/${ApiId}/authorizers";
const AUTHORIZER: &str =
    "arn:${Partition}:apigateway:${Region}::/apis/${ApiId}/authorizers/${AuthorizerId}";
const DEPLOYMENTS: &str = "arn:${Partition}:apigateway:${Region}::/apis/${ApiId}/deployments";
const DEPLOYMENT: &str =
    "arn:${Partition}:apigateway:${Region}::/apis/${ApiId}/deployments/${DeploymentId}";

/// The IAM action of an API Gateway request: its HTTP verb.
pub(crate) fn verb(method: &Method) -> &'static str {
    match *method {
        Method::POST => "apigateway:POST",
        Method::GET => "apigateway:GET",
        Method::PATCH => "apigateway:PATCH",
        Method::PUT => "apigateway:PUT",
        _ => "apigateway:DELETE",
    }
}

static TABLE: LazyLock<RestRoutes<Op>> = LazyLock::new(|| {
    use Op::*;
    let routes = [
        (Method::POST, "/v2/apis", CreateApi, APIS),
        (Method::GET, "/v2/apis", GetApis, APIS),
        (Method::GET, "/v2/apis/{apiId}", GetApi, API),
        (Method::PATCH, "/v2/apis/{apiId}", UpdateApi, API),
        (Method::DELETE, "/v2/apis/{apiId}", DeleteApi, API),
        (Method::POST, "/v2/apis/{apiId}/routes", CreateRoute, ROUTES),
        (Method::GET, "/v2/apis/{apiId}/routes", GetRoutes, ROUTES),
        (
            Method::GET,
            "/v2/apis/{apiId}/routes/{routeId}",
            GetRoute,
            ROUTE,
        ),
        (
            Method::PATCH,
            "/v2/apis/{apiId}/routes/{routeId}",
            UpdateRoute,
            ROUTE,
        ),
        (
            Method::DELETE,
            "/v2/apis/{apiId}/routes/{routeId}",
            DeleteRoute,
            ROUTE,
        ),
        (
            Method::POST,
            "/v2/apis/{apiId}/integrations",
            CreateIntegration,
            INTEGRATIONS,
        ),
        (
            Method::GET,
            "/v2/apis/{apiId}/integrations",
            GetIntegrations,
            INTEGRATIONS,
        ),
        (
            Method::GET,
            "/v2/apis/{apiId}/integrations/{integrationId}",
            GetIntegration,
            INTEGRATION,
        ),
        (
            Method::PATCH,
            "/v2/apis/{apiId}/integrations/{integrationId}",
            UpdateIntegration,
            INTEGRATION,
        ),
        (
            Method::DELETE,
            "/v2/apis/{apiId}/integrations/{integrationId}",
            DeleteIntegration,
            INTEGRATION,
        ),
        (Method::POST, "/v2/apis/{apiId}/stages", CreateStage, STAGES),
        (Method::GET, "/v2/apis/{apiId}/stages", GetStages, STAGES),
        (
            Method::GET,
            "/v2/apis/{apiId}/stages/{stageName}",
            GetStage,
            STAGE,
        ),
        (
            Method::PATCH,
            "/v2/apis/{apiId}/stages/{stageName}",
            UpdateStage,
            STAGE,
        ),
        (
            Method::DELETE,
            "/v2/apis/{apiId}/stages/{stageName}",
            DeleteStage,
            STAGE,
        ),
        (
            Method::POST,
            "/v2/apis/{apiId}/authorizers",
            CreateAuthorizer,
            AUTHORIZERS,
        ),
        (
            Method::GET,
            "/v2/apis/{apiId}/authorizers",
            GetAuthorizers,
            AUTHORIZERS,
        ),
        (
            Method::GET,
            "/v2/apis/{apiId}/authorizers/{authorizerId}",
            GetAuthorizer,
            AUTHORIZER,
        ),
        (
            Method::PATCH,
            "/v2/apis/{apiId}/authorizers/{authorizerId}",
            UpdateAuthorizer,
            AUTHORIZER,
        ),
        (
            Method::DELETE,
            "/v2/apis/{apiId}/authorizers/{authorizerId}",
            DeleteAuthorizer,
            AUTHORIZER,
        ),
        (
            Method::POST,
            "/v2/apis/{apiId}/deployments",
            CreateDeployment,
            DEPLOYMENTS,
        ),
        (
            Method::GET,
            "/v2/apis/{apiId}/deployments",
            GetDeployments,
            DEPLOYMENTS,
        ),
        (
            Method::GET,
            "/v2/apis/{apiId}/deployments/{deploymentId}",
            GetDeployment,
            DEPLOYMENT,
        ),
        (
            Method::PATCH,
            "/v2/apis/{apiId}/deployments/{deploymentId}",
            UpdateDeployment,
            DEPLOYMENT,
        ),
        (
            Method::DELETE,
            "/v2/apis/{apiId}/deployments/{deploymentId}",
            DeleteDeployment,
            DEPLOYMENT,
        ),
    ];
    let table: Vec<_> = routes
        .into_iter()
        .map(|(method, path, op, resource)| {
            let authorization = Authorization::new(verb(&method), resource);
            (method, path, op, authorization)
        })
        .collect();
    RestRoutes::new(&table)
});

/// A parsed request: an HTTP API's (v2) or a REST API's (v1).
pub enum Call {
    Http {
        route: Op,
        params: PathParams,
        input: Value,
    },
    Rest(RestCall),
}

pub struct ApiGatewayApi {
    apis: Arc<Apis>,
}

impl ApiGatewayApi {
    pub fn new(apis: Arc<Apis>) -> Self {
        Self { apis }
    }
}

/// An API as `GetApi` returns it, its endpoint on the host the caller used.
fn api_json(api: &Api, ctx: &RequestContext) -> Value {
    let mut out = api.api.clone();
    out["apiEndpoint"] = format!(
        "{}/_nimbus/execute-api/{}",
        ctx.endpoint,
        api.api["apiId"].as_str().unwrap_or_default()
    )
    .into();
    out
}

/// The item of `items` whose `field` is `id`.
fn find<'a>(
    items: &'a mut [Value],
    field: &str,
    id: &str,
    kind: &str,
) -> Result<&'a mut Value, AwsError> {
    items
        .iter_mut()
        .find(|item| item[field] == id)
        .ok_or_else(|| not_found(format!("Invalid {kind} identifier specified {id}")))
}

/// Copies the members of `input` named in `fields` onto `item`.
fn patch(item: &mut Value, input: &Value, fields: &[&str]) {
    for field in fields {
        if !input[*field].is_null() {
            item[*field] = input[*field].clone();
        }
    }
}

const ROUTE_FIELDS: &[&str] = &[
    "routeKey",
    "target",
    "authorizationType",
    "authorizerId",
    "authorizationScopes",
    "operationName",
];
const INTEGRATION_FIELDS: &[&str] = &[
    "integrationUri",
    "payloadFormatVersion",
    "timeoutInMillis",
    "description",
];
const STAGE_FIELDS: &[&str] = &[
    "autoDeploy",
    "stageVariables",
    "description",
    "accessLogSettings",
    "defaultRouteSettings",
    "routeSettings",
];

impl ApiGatewayApi {
    fn call(&self, ctx: &RequestContext, call: Call) -> Result<(StatusCode, Value), AwsError> {
        use Op::*;
        let apis = &self.apis;
        let (route, params, input) = match call {
            Call::Http {
                route,
                params,
                input,
            } => (route, params, input),
            Call::Rest(call) => return crate::rest_api::call(apis, call),
        };
        let input = &input;
        let param = |name: &str| params.get(name).unwrap_or_default().to_owned();
        let api_id = param("apiId");
        let created = |value: Value| Ok((StatusCode::CREATED, value));
        let ok = |value: Value| Ok((StatusCode::OK, value));
        let gone = || Ok((StatusCode::NO_CONTENT, Value::Null));
        match route {
            CreateApi => created(api_json(&apis.create(input)?, ctx)),
            GetApis => ok(json!({
                "items": apis.all()?.iter().map(|api| api_json(api, ctx)).collect::<Vec<_>>(),
            })),
            GetApi => ok(api_json(&apis.load(&api_id)?.0, ctx)),
            UpdateApi => {
                apis.update(&api_id, |api| {
                    patch(&mut api.api, input, &["name", "description", "corsConfiguration", "version"]);
                    Ok(Value::Null)
                })?;
                ok(api_json(&apis.load(&api_id)?.0, ctx))
            }
            DeleteApi => {
                apis.delete(&api_id)?;
                gone()
            }
            CreateRoute => created(apis.update(&api_id, |api| {
                let key = input["routeKey"]
                    .as_str()
                    .ok_or_else(|| bad_request("RouteKey is required"))?;
                check_route_key(key)?;
                if api.routes.iter().any(|r| r["routeKey"] == key) {
                    return Err(conflict(format!("Route with key {key} already exists for this API")));
                }
                let mut route = json!({
                    "routeId": crate::id(7), "routeKey": key, "authorizationType": "NONE", "apiKeyRequired": false,
                });
                patch(&mut route, input, ROUTE_FIELDS);
                check_target(api, &route)?;
                api.routes.push(route.clone());
                Ok(route)
            })?),
            GetRoutes => ok(json!({ "items": apis.load(&api_id)?.0.routes })),
            GetRoute => {
                let (mut api, _) = apis.load(&api_id)?;
                ok(find(&mut api.routes, "routeId", &param("routeId"), "Route")?.clone())
            }
            UpdateRoute => ok(apis.update(&api_id, |api| {
                if let Some(key) = input["routeKey"].as_str() {
                    check_route_key(key)?;
                }
                let mut route = find(&mut api.routes, "routeId", &param("routeId"), "Route")?.clone();
                patch(&mut route, input, ROUTE_FIELDS);
                check_target(api, &route)?;
                *find(&mut api.routes, "routeId", &param("routeId"), "Route")? = route.clone();
                Ok(route)
            })?),
            DeleteRoute => {
                apis.update(&api_id, |api| {
                    find(&mut api.routes, "routeId", &param("routeId"), "Route")?;
                    api.routes.retain(|r| r["routeId"] != param("routeId").as_str());
                    Ok(Value::Null)
                })?;
                gone()
            }
            CreateIntegration => created(apis.update(&api_id, |api| {
                let made = integration(input)?;
                api.integrations.push(made.clone());
                Ok(made)
            })?),
            GetIntegrations => ok(json!({ "items": apis.load(&api_id)?.0.integrations })),
            GetIntegration => {
                let (mut api, _) = apis.load(&api_id)?;
                ok(find(&mut api.integrations, "integrationId", &param("integrationId"), "Integration")?.clone())
            }
            UpdateIntegration => ok(apis.update(&api_id, |api| {
                let id = param("integrationId");
                let current = find(&mut api.integrations, "integrationId", &id, "Integration")?;
                let mut merged = current.clone();
                patch(&mut merged, input, INTEGRATION_FIELDS);
                // Checked as a new one would be, keeping its id.
                let mut checked = integration(&merged)?;
                checked["integrationId"] = id.into();
                *current = checked.clone();
                Ok(checked)
            })?),
            DeleteIntegration => {
                apis.update(&api_id, |api| {
                    let id = param("integrationId");
                    find(&mut api.integrations, "integrationId", &id, "Integration")?;
                    let target = format!("integrations/{id}");
                    if api.routes.iter().any(|r| r["target"] == target.as_str()) {
                        return Err(AwsError::new(
                            StatusCode::CONFLICT,
                            "ConflictException",
                            "Cannot delete an integration that a route targets",
                        ));
                    }
                    api.integrations.retain(|i| i["integrationId"] != id.as_str());
                    Ok(Value::Null)
                })?;
                gone()
            }
            CreateStage => created(apis.update(&api_id, |api| {
                let made = stage(input)?;
                if api.stages.iter().any(|s| s["stageName"] == made["stageName"]) {
                    return Err(AwsError::new(
                        StatusCode::CONFLICT,
                        "ConflictException",
                        format!("Stage {} already exists", made["stageName"].as_str().unwrap_or_default()),
                    ));
                }
                api.stages.push(made.clone());
                Ok(made)
            })?),
            GetStages => ok(json!({ "items": apis.load(&api_id)?.0.stages })),
            GetStage => {
                let (mut api, _) = apis.load(&api_id)?;
                ok(find(&mut api.stages, "stageName", &param("stageName"), "Stage")?.clone())
            }
            UpdateStage => ok(apis.update(&api_id, |api| {
                let stage = find(&mut api.stages, "stageName", &param("stageName"), "Stage")?;
                patch(stage, input, STAGE_FIELDS);
                stage["lastUpdatedDate"] = crate::now().into();
                Ok(stage.clone())
            })?),
            CreateAuthorizer => created(apis.update(&api_id, |api| {
                let made = authorizer(input)?;
                api.authorizers.push(made.clone());
                Ok(made)
            })?),
            GetAuthorizers => ok(json!({ "items": apis.load(&api_id)?.0.authorizers })),
            GetAuthorizer => {
                let (mut api, _) = apis.load(&api_id)?;
                let id = param("authorizerId");
                ok(find(&mut api.authorizers, "authorizerId", &id, "Authorizer")?.clone())
            }
            UpdateAuthorizer => ok(apis.update(&api_id, |api| {
                let id = param("authorizerId");
                let current = find(&mut api.authorizers, "authorizerId", &id, "Authorizer")?;
                let mut merged = current.clone();
                patch(
                    &mut merged,
                    input,
                    &[
                        "name",
                        "identitySource",
                        "jwtConfiguration",
                        "authorizerUri",
                        "authorizerPayloadFormatVersion",
                        "authorizerResultTtlInSeconds",
                        "enableSimpleResponses",
                    ],
                );
                // Checked as a new one would be, keeping its id.
                let mut checked = authorizer(&merged)?;
                checked["authorizerId"] = id.into();
                *current = checked.clone();
                Ok(checked)
            })?),
            DeleteAuthorizer => {
                apis.update(&api_id, |api| {
                    let id = param("authorizerId");
                    find(&mut api.authorizers, "authorizerId", &id, "Authorizer")?;
                    if api.routes.iter().any(|r| r["authorizerId"] == id.as_str()) {
                        return Err(AwsError::new(
                            StatusCode::CONFLICT,
                            "ConflictException",
                            "Cannot delete an authorizer that a route uses",
                        ));
                    }
                    api.authorizers.retain(|a| a["authorizerId"] != id.as_str());
                    Ok(Value::Null)
                })?;
                gone()
            }
            CreateDeployment => created(apis.update(&api_id, |api| {
                let deployment = json!({
                    "deploymentId": crate::id(6),
                    "deploymentStatus": "DEPLOYED",
                    "createdDate": crate::now(),
                    "description": input["description"].as_str().unwrap_or_default(),
                    "autoDeployed": false,
                });
                if let Some(name) = input["stageName"].as_str() {
                    let stage = find(&mut api.stages, "stageName", name, "Stage")?;
                    stage["deploymentId"] = deployment["deploymentId"].clone();
                    stage["lastUpdatedDate"] = crate::now().into();
                }
                api.deployments.push(deployment.clone());
                Ok(deployment)
            })?),
            GetDeployments => ok(json!({ "items": apis.load(&api_id)?.0.deployments })),
            GetDeployment => {
                let (mut api, _) = apis.load(&api_id)?;
                let id = param("deploymentId");
                ok(find(&mut api.deployments, "deploymentId", &id, "Deployment")?.clone())
            }
            UpdateDeployment => ok(apis.update(&api_id, |api| {
                let id = param("deploymentId");
                let deployment = find(&mut api.deployments, "deploymentId", &id, "Deployment")?;
                patch(deployment, input, &["description"]);
                Ok(deployment.clone())
            })?),
            DeleteDeployment => {
                apis.update(&api_id, |api| {
                    let id = param("deploymentId");
                    find(&mut api.deployments, "deploymentId", &id, "Deployment")?;
                    api.deployments.retain(|d| d["deploymentId"] != id.as_str());
                    Ok(Value::Null)
                })?;
                gone()
            }
            DeleteStage => {
                apis.update(&api_id, |api| {
                    find(&mut api.stages, "stageName", &param("stageName"), "Stage")?;
                    api.stages.retain(|s| s["stageName"] != param("stageName").as_str());
                    Ok(Value::Null)
                })?;
                gone()
            }
        }
    }
}

/// Refuses a route whose `target` names no integration of the API, or whose JWT
/// authorization names no authorizer of it.
fn check_target(api: &Api, route: &Value) -> Result<(), AwsError> {
    match route["authorizationType"].as_str() {
        Some("NONE" | "AWS_IAM") | None => {}
        Some("JWT" | "CUSTOM") => {
            let id = route["authorizerId"].as_str().unwrap_or_default();
            if !api.authorizers.iter().any(|a| a["authorizerId"] == id) {
                return Err(bad_request(format!("Invalid authorizer id {id}")));
            }
        }
        Some(other) => {
            return Err(bad_request(format!(
                "Invalid authorization type {other}: this nimbus checks NONE, AWS_IAM, JWT and CUSTOM"
            )));
        }
    }
    let Some(target) = route["target"].as_str() else {
        return Ok(());
    };
    let id = target.strip_prefix("integrations/").unwrap_or_default();
    if api.integrations.iter().any(|i| i["integrationId"] == id) {
        Ok(())
    } else {
        Err(bad_request(format!(
            "Invalid target {target}: no such integration"
        )))
    }
}

/// A JSON request body; an empty one reads as `{}`.
fn json_input(body: &[u8]) -> Result<Value, AwsError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|err| bad_request(format!("Invalid request body: {err}")))
}

/// The resource a call acts on: its template's `${Name}` placeholders filled from
/// the path's `{name}` parameters.
fn resource(ctx: &RequestContext, call: &Routed<Call>) -> String {
    let mut arn = call.authorization.resource.replace("${Partition}", "aws");
    arn = arn.replace("${Region}", &ctx.region);
    let params = match &call.operation {
        Call::Http { params, .. } => params,
        Call::Rest(call) => &call.params,
    };
    for (name, value) in params.iter() {
        let mut chars = name.chars();
        let first = chars.next().map(|c| c.to_ascii_uppercase());
        let placeholder: String = first.into_iter().chain(chars).collect();
        arn = arn.replace(&format!("${{{placeholder}}}"), value);
    }
    arn
}

impl Service for ApiGatewayApi {
    type Operation = Routed<Call>;

    fn descriptor(&self) -> &'static ServiceDescriptor {
        &catalog::APIGATEWAY
    }

    fn operations(&self) -> Vec<OperationDoc> {
        let mut operations = TABLE.operations();
        operations.extend(REST_TABLE.operations());
        operations.push(crate::rest_api::import_doc());
        operations
    }

    fn parse(&self, req: &ServiceRequest) -> Result<Routed<Call>, AwsError> {
        let path = req.parts.uri.path();
        if crate::rest_api::claims(path) {
            let (op, authorization, params) = REST_TABLE.find(&req.parts.method, path)?;
            let query = rest_json::query_params(req);
            let op = crate::rest_api::import_mode(op, &query);
            // A definition is read once allowed: it may be anything.
            let input = match op {
                RestOp::ImportRestApi | RestOp::PutRestApi => Value::Null,
                _ => json_input(&req.body)?,
            };
            return Ok(Routed {
                name: op.name(),
                operation: Call::Rest(RestCall {
                    op,
                    params,
                    query,
                    input,
                    body: req.body.clone(),
                }),
                authorization,
            });
        }
        let input = json_input(&req.body)?;
        let (route, authorization, params) = TABLE.find(&req.parts.method, path)?;
        Ok(Routed {
            name: route.name(),
            operation: Call::Http {
                route,
                params,
                input,
            },
            authorization,
        })
    }

    async fn access(
        &self,
        ctx: &RequestContext,
        call: &Routed<Call>,
    ) -> Result<Vec<Check>, AwsError> {
        Ok(vec![Check::on(resource(ctx, call))])
    }

    async fn handle(
        &self,
        ctx: &RequestContext,
        call: Routed<Call>,
    ) -> Result<Response<Bytes>, AwsError> {
        let api = ApiGatewayApi {
            apis: self.apis.clone(),
        };
        let ctx = ctx.clone();
        let (status, out) = tokio::task::spawn_blocking(move || api.call(&ctx, call.operation))
            .await
            .map_err(internal)??;
        Ok(if out.is_null() {
            rest_json::empty_response(status)
        } else {
            rest_json::json_response(status, &out)
        })
    }
}
