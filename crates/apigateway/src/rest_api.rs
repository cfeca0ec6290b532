//! API Gateway v1's rest-json management API for REST APIs: APIs, resources, methods
//! and their integrations, deployments, stages, API keys and usage plans.

use std::sync::LazyLock;

use http::{Method, StatusCode};
use nimbus_edge::protocol::rest_json::{PathParams, RestRoutes};
use nimbus_edge::{Authorization, AwsError};
use serde_json::{Value, json};

use crate::rest::{self, RestApi, apply_patch, fields, integration, key_json, plan_json};
use crate::{Apis, bad_request, conflict, not_found};

crate::operations!(RestOp {
    CreateRestApi,
    GetRestApis,
    GetRestApi,
    UpdateRestApi,
    DeleteRestApi,
    ImportRestApi,
    PutRestApi,
    GetResources,
    GetResource,
    CreateResource,
    UpdateResource,
    DeleteResource,
    PutMethod,
    GetMethod,
    UpdateMethod,
    DeleteMethod,
    PutMethodResponse,
    GetMethodResponse,
    DeleteMethodResponse,
    PutIntegration,
    GetIntegration,
    UpdateIntegration,
    DeleteIntegration,
    PutIntegrationResponse,
    GetIntegrationResponse,
    DeleteIntegrationResponse,
    CreateDeployment,
    GetDeployments,
    GetDeployment,
    UpdateDeployment,
    DeleteDeployment,
    CreateStage,
    GetStages,
    GetStage,
    UpdateStage,
    DeleteStage,
    CreateApiKey,
    GetApiKeys,
    GetApiKey,
    UpdateApiKey,
    DeleteApiKey,
    CreateUsagePlan,
    GetUsagePlans,
    GetUsagePlan,
    UpdateUsagePlan,
    DeleteUsagePlan,
    CreateUsagePlanKey,
    GetUsagePlanKeys,
    GetUsagePlanKey,
    DeleteUsagePlanKey,
});

/// The resources API Gateway's actions (its HTTP verbs) act on.
const RESTAPIS: &str = "arn:${Partition}:apigateway:${Region}::/restapis";
const RESTAPI: &str = "arn:${Partition}:apigateway:${Region}::/restapis/${RestApiId}";
const RESOURCES: &str = "arn:${Partition}:apigateway:${Region}::/restapis/${RestApiId}/resources";
const RESOURCE: &str =
    "arn:${Partition}:apigateway:${Region}::/restapis/${RestApiId}/resources/${ResourceId}";
const METHOD: &str = "arn:${Partition}:apigateway:${Region}::/restapis/${RestApiId}/resources/${ResourceId}/methods/${HttpMethod}";
const METHOD_RESPONSE: &str = "arn:${Partition}:apigateway:${Region}::/restapis/${RestApiId}/resources/${ResourceId}/methods/${HttpMethod}/responses/${StatusCode}";
const INTEGRATION: &str = "arn:${Partition}:apigateway:${Region}::/restapis/${RestApiId}/resources/${ResourceId}/methods/${HttpMethod}/integration";
const INTEGRATION_RESPONSE: &str = "arn:${Partition}:apigateway:${Region}::/restapis/${RestApiId}/resources/${ResourceId}/methods/${HttpMethod}/integration/responses/${StatusCode}";
const DEPLOYMENTS: &str =
    "arn:${Partition}:apigateway:${Region}::/restapis/${RestApiId}/deployments";
const DEPLOYMENT: &str =
    "arn:${Partition}:apigateway:${Region}::/restapis/${RestApiId}/deployments/${DeploymentId}";
const STAGES: &str = "arn:${Partition}:apigateway:${Region}::/restapis/${RestApiId}/stages";
const STAGE: &str =
    "arn:${Partition}:apigateway:${Region}::/restapis/${RestApiId}/stages/${StageName}";
const APIKEYS: &str = "arn:${Partition}:apigateway:${Region}::/apikeys";
const APIKEY: &str = "arn:${Partition}:apigateway:${Region}::/apikeys/${ApiKey}";
const USAGEPLANS: &str = "arn:${Partition}:apigateway:${Region}::/usageplans";
const USAGEPLAN: &str = "arn:${Partition}:apigateway:${Region}::/usageplans/${UsagePlanId}";
const USAGEPLANKEYS: &str =
    "arn:${Partition}:apigateway:${Region}::/usageplans/${UsagePlanId}/keys";
const USAGEPLANKEY: &str =
    "arn:${Partition}:apigateway:${Region}::/usageplans/${UsagePlanId}/keys/${KeyId}";

/// Whether a path is one of v1's (the REST APIs, API keys and usage plans).
pub fn claims(path: &str) -> bool {
    ["/restapis", "/apikeys", "/usageplans"]
        .iter()
        .any(|root| path == *root || path.starts_with(&format!("{root}/")))
}

pub static TABLE: LazyLock<RestRoutes<RestOp>> = LazyLock::new(|| {
    use RestOp::*;
    const R: &str = "/restapis/{restApiId}";
    const RES: &str = "/restapis/{restApiId}/resources/{resourceId}";
    const M: &str = "/restapis/{restApiId}/resources/{resourceId}/methods/{httpMethod}";
    const MR: &str =
        "/restapis/{restApiId}/resources/{resourceId}/methods/{httpMethod}/responses/{statusCode}";
    const I: &str = "/restapis/{restApiId}/resources/{resourceId}/methods/{httpMethod}/integration";
    const IR: &str = "/restapis/{restApiId}/resources/{resourceId}/methods/{httpMethod}/integration/responses/{statusCode}";
    let routes = [
        (Method::POST, "/restapis", CreateRestApi, RESTAPIS),
        (Method::GET, "/restapis", GetRestApis, RESTAPIS),
        (Method::GET, R, GetRestApi, RESTAPI),
        (Method::PATCH, R, UpdateRestApi, RESTAPI),
        (Method::DELETE, R, DeleteRestApi, RESTAPI),
        (Method::PUT, R, PutRestApi, RESTAPI),
        (
            Method::GET,
            "/restapis/{restApiId}/resources",
            GetResources,
            RESOURCES,
        ),
        (Method::GET, RES, GetResource, RESOURCE),
        // The path names the parent: the new resource's ARN is not known yet.
        (Method::POST, RES, CreateResource, RESOURCE),
        (Method::PATCH, RES, UpdateResource, RESOURCE),
        (Method::DELETE, RES, DeleteResource, RESOURCE),
        (Method::PUT, M, PutMethod, METHOD),
        (Method::GET, M, GetMethod, METHOD),
        (Method::PATCH, M, UpdateMethod, METHOD),
        (Method::DELETE, M, DeleteMethod, METHOD),
        (Method::PUT, MR, PutMethodResponse, METHOD_RESPONSE),
        (Method::GET, MR, GetMethodResponse, METHOD_RESPONSE),
        (Method::DELETE, MR, DeleteMethodResponse, METHOD_RESPONSE),
        (Method::PUT, I, PutIntegration, INTEGRATION),
        (Method::GET, I, GetIntegration, INTEGRATION),
        (Method::PATCH, I, UpdateIntegration, INTEGRATION),
        (Method::DELETE, I, DeleteIntegration, INTEGRATION),
        (
            Method::PUT,
            IR,
            PutIntegrationResponse,
            INTEGRATION_RESPONSE,
        ),
        (
            Method::GET,
            IR,
            GetIntegrationResponse,
            INTEGRATION_RESPONSE,
        ),
        (
            Method::DELETE,
            IR,
            DeleteIntegrationResponse,
            INTEGRATION_RESPONSE,
        ),
        (
            Method::POST,
            "/restapis/{restApiId}/deployments",
            CreateDeployment,
            DEPLOYMENTS,
        ),
        (
            Method::GET,
            "/restapis/{restApiId}/deployments",
            GetDeployments,
            DEPLOYMENTS,
        ),
        (
            Method::GET,
            "/restapis/{restApiId}/deployments/{deploymentId}",
            GetDeployment,
            DEPLOYMENT,
        ),
        (
            Method::PATCH,
            "/restapis/{restApiId}/deployments/{deploymentId}",
            UpdateDeployment,
            DEPLOYMENT,
        ),
        (
            Method::DELETE,
            "/restapis/{restApiId}/deployments/{deploymentId}",
            DeleteDeployment,
            DEPLOYMENT,
        ),
        (
            Method::POST,
            "/restapis/{restApiId}/stages",
            CreateStage,
            STAGES,
        ),
        (
            Method::GET,
            "/restapis/{restApiId}/stages",
            GetStages,
            STAGES,
        ),
        (
            Method::GET,
            "/restapis/{restApiId}/stages/{stageName}",
            GetStage,
            STAGE,
        ),
        (
            Method::PATCH,
            "/restapis/{restApiId}/stages/{stageName}",
            UpdateStage,
            STAGE,
        ),
        (
            Method::DELETE,
            "/restapis/{restApiId}/stages/{stageName}",
            DeleteStage,
            STAGE,
        ),
        (Method::POST, "/apikeys", CreateApiKey, APIKEYS),
        (Method::GET, "/apikeys", GetApiKeys, APIKEYS),
        (Method::GET, "/apikeys/{apiKey}", GetApiKey, APIKEY),
        (Method::PATCH, "/apikeys/{apiKey}", UpdateApiKey, APIKEY),
        (Method::DELETE, "/apikeys/{apiKey}", DeleteApiKey, APIKEY),
        (Method::POST, "/usageplans", CreateUsagePlan, USAGEPLANS),
        (Method::GET, "/usageplans", GetUsagePlans, USAGEPLANS),
        (
            Method::GET,
            "/usageplans/{usagePlanId}",
            GetUsagePlan,
            USAGEPLAN,
        ),
        (
            Method::PATCH,
            "/usageplans/{usagePlanId}",
            UpdateUsagePlan,
            USAGEPLAN,
        ),
        (
            Method::DELETE,
            "/usageplans/{usagePlanId}",
            DeleteUsagePlan,
            USAGEPLAN,
        ),
        (
            Method::POST,
            "/usageplans/{usagePlanId}/keys",
            CreateUsagePlanKey,
            USAGEPLANKEYS,
        ),
        (
            Method::GET,
            "/usageplans/{usagePlanId}/keys",
            GetUsagePlanKeys,
            USAGEPLANKEYS,
        ),
        (
            Method::GET,
            "/usageplans/{usagePlanId}/keys/{keyId}",
            GetUsagePlanKey,
            USAGEPLANKEY,
        ),
        (
            Method::DELETE,
            "/usageplans/{usagePlanId}/keys/{keyId}",
            DeleteUsagePlanKey,
            USAGEPLANKEY,
        ),
    ];
    let table: Vec<_> = routes
        .into_iter()
        .map(|(method, path, op, resource)| {
            let authorization = Authorization::new(crate::api::verb(&method), resource);
            (method, path, op, authorization)
        })
        .collect();
    RestRoutes::new(&table)
});

/// One page of `items` as v1 lists them (`item`, and `position` for the next page).
fn page(items: Vec<Value>, query: &[(String, String)]) -> Value {
    let get = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.parse::<usize>().ok())
    };
    let limit = get("limit").unwrap_or(25).clamp(1, 500);
    let start = get("position").unwrap_or(0).min(items.len());
    let end = (start + limit).min(items.len());
    let mut out = json!({ "item": items[start..end] });
    if end < items.len() {
        out["position"] = end.to_string().into();
    }
    out
}

/// A resource as `GetResource` returns it: its methods whole when `embed=methods`,
/// else named.
fn resource_json(resource: &Value, embed: bool) -> Value {
    let mut out = resource.clone();
    if !embed && let Some(methods) = out["resourceMethods"].as_object_mut() {
        for method in methods.values_mut() {
            *method = json!({});
        }
    }
    out
}

/// A REST API request, parsed.
pub struct RestCall {
    pub op: RestOp,
    pub params: PathParams,
    pub query: Vec<(String, String)>,
    pub input: Value,
    /// The body as sent: an imported definition.
    pub body: bytes::Bytes,
}

/// `ImportRestApi` is `POST /restapis?mode=import`: routed as `CreateRestApi`, it is
/// told apart here, with the same authorization.
pub fn import_mode(op: RestOp, query: &[(String, String)]) -> RestOp {
    let import = query.iter().any(|(k, v)| k == "mode" && v == "import");
    if op == RestOp::CreateRestApi && import {
        RestOp::ImportRestApi
    } else {
        op
    }
}

/// `ImportRestApi`'s entry for the docs and the authorization walk, which the table
/// cannot hold beside `CreateRestApi`.
pub fn import_doc() -> nimbus_edge::OperationDoc {
    nimbus_edge::OperationDoc {
        name: "ImportRestApi".to_owned(),
        route: Some("POST /restapis?mode=import".to_owned()),
        authorization: Authorization::new("apigateway:POST", RESTAPIS),
    }
}

pub fn call(apis: &Apis, call: RestCall) -> Result<(StatusCode, Value), AwsError> {
    use RestOp::*;
    let input = &call.input;
    let param = |name: &str| call.params.get(name).unwrap_or_default().to_owned();
    let query = |name: &str| {
        call.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let api_id = param("restApiId");
    let (resource, method, status) = (
        param("resourceId"),
        param("httpMethod"),
        param("statusCode"),
    );
    let created = |value: Value| Ok((StatusCode::CREATED, value));
    let ok = |value: Value| Ok((StatusCode::OK, value));
    let accepted = || Ok((StatusCode::ACCEPTED, Value::Null));
    let gone = || Ok((StatusCode::NO_CONTENT, Value::Null));
    let change = |change: &dyn Fn(&mut RestApi) -> Result<Value, AwsError>| {
        apis.change_rest_api(&api_id, |api, batch| Ok((change(api)?, batch)))
    };
    let load = || apis.rest_api(&api_id);
    match call.op {
        CreateRestApi => created(apis.create_rest_api(input, None)?),
        ImportRestApi => {
            let definition = crate::openapi::definition(&call.body)?;
            let input = definition.api.clone();
            created(apis.create_rest_api(&input, Some(&definition))?)
        }
        PutRestApi => {
            let definition = crate::openapi::definition(&call.body)?;
            let overwrite = query("mode") != Some("merge");
            ok(change(&|api| {
                api.apply(&definition, overwrite)?;
                if overwrite {
                    for (field, value) in definition.api.as_object().into_iter().flatten() {
                        api.api[field] = value.clone();
                    }
                }
                Ok(api.api.clone())
            })?)
        }
        GetRestApis => ok(page(
            apis.rest_apis()?.into_iter().map(|a| a.api).collect(),
            &call.query,
        )),
        GetRestApi => ok(load()?.api),
        UpdateRestApi => ok(change(&|api| {
            apply_patch(
                &mut api.api,
                input,
                fields(&[
                    "name",
                    "description",
                    "version",
                    "apiKeySource",
                    "binaryMediaTypes/*",
                    "minimumCompressionSize",
                    "disableExecuteApiEndpoint",
                    "policy",
                ]),
            )?;
            Ok(api.api.clone())
        })?),
        DeleteRestApi => {
            apis.delete_rest_api(&api_id)?;
            accepted()
        }
        GetResources => {
            let embed = query("embed").is_some_and(|e| e.contains("methods"));
            let items = load()?
                .resources
                .iter()
                .map(|r| resource_json(r, embed))
                .collect();
            ok(page(items, &call.query))
        }
        GetResource => {
            let embed = query("embed").is_some_and(|e| e.contains("methods"));
            ok(resource_json(load()?.resource(&resource)?, embed))
        }
        CreateResource => created(change(&|api| {
            let part = input["pathPart"]
                .as_str()
                .ok_or_else(|| bad_request("PathPart is required"))?;
            api.create_resource(&resource, part)
        })?),
        UpdateResource => ok(change(&|api| api.update_resource(&resource, input))?),
        DeleteResource => {
            change(&|api| api.delete_resource(&resource).map(|()| Value::Null))?;
            accepted()
        }
        PutMethod => created(change(&|api| api.put_method(&resource, &method, input))?),
        GetMethod => ok(load()?.method(&resource, &method)?.clone()),
        UpdateMethod => ok(change(&|api| {
            let current = api.method(&resource, &method)?;
            apply_patch(
                current,
                input,
                fields(&[
                    "authorizationType",
                    "apiKeyRequired",
                    "operationName",
                    "requestParameters/*",
                    "requestModels/*",
                ]),
            )?;
            rest::check_authorization(current["authorizationType"].as_str().unwrap_or_default())?;
            Ok(current.clone())
        })?),
        DeleteMethod => {
            change(&|api| {
                api.method(&resource, &method)?;
                let target = api.resource(&resource)?;
                if let Some(methods) = target["resourceMethods"].as_object_mut() {
                    methods.remove(&method);
                }
                Ok(Value::Null)
            })?;
            gone()
        }
        PutMethodResponse => created(change(&|api| {
            let made = json!({
                "statusCode": status,
                "responseParameters": input["responseParameters"].as_object().cloned().unwrap_or_default(),
                "responseModels": input["responseModels"].as_object().cloned().unwrap_or_default(),
            });
            put_response(
                api.method(&resource, &method)?,
                METHOD_RESPONSES,
                &status,
                made,
            )
        })?),
        GetMethodResponse => ok(response(
            load()?.method(&resource, &method)?,
            METHOD_RESPONSES,
            &status,
        )?),
        DeleteMethodResponse => {
            change(&|api| {
                delete_response(api.method(&resource, &method)?, METHOD_RESPONSES, &status)
            })?;
            gone()
        }
        PutIntegration => created(change(&|api| {
            let made = integration(&resource, input)?;
            api.method(&resource, &method)?["methodIntegration"] = made.clone();
            Ok(made)
        })?),
        GetIntegration => ok(load()?.integration(&resource, &method)?.clone()),
        UpdateIntegration => ok(change(&|api| {
            let current = api.integration(&resource, &method)?;
            let mut merged = current.clone();
            apply_patch(
                &mut merged,
                input,
                fields(&[
                    "uri",
                    "httpMethod",
                    "timeoutInMillis",
                    "passthroughBehavior",
                    "contentHandling",
                    "requestTemplates/*",
                    "requestParameters/*",
                ]),
            )?;
            // Checked as a new one would be.
            *current = integration(&resource, &merged)?;
            Ok(current.clone())
        })?),
        DeleteIntegration => {
            change(&|api| {
                api.integration(&resource, &method)?;
                if let Some(fields) = api.method(&resource, &method)?.as_object_mut() {
                    fields.remove("methodIntegration");
                }
                Ok(Value::Null)
            })?;
            gone()
        }
        PutIntegrationResponse => created(change(&|api| {
            let mut made = json!({
                "statusCode": status,
                "responseParameters": input["responseParameters"].as_object().cloned().unwrap_or_default(),
                "responseTemplates": input["responseTemplates"].as_object().cloned().unwrap_or_default(),
            });
            for field in ["selectionPattern", "contentHandling"] {
                if !input[field].is_null() {
                    made[field] = input[field].clone();
                }
            }
            let integration = api.integration(&resource, &method)?;
            put_response(integration, INTEGRATION_RESPONSES, &status, made)
        })?),
        GetIntegrationResponse => ok(response(
            load()?.integration(&resource, &method)?,
            INTEGRATION_RESPONSES,
            &status,
        )?),
        DeleteIntegrationResponse => {
            change(&|api| {
                let integration = api.integration(&resource, &method)?;
                delete_response(integration, INTEGRATION_RESPONSES, &status)
            })?;
            gone()
        }
        CreateDeployment => created(apis.change_rest_api(&api_id, |api, batch| {
            let (deployment, snapshot) = api.deploy(input)?;
            let key = format!("{api_id}/{}", deployment["id"].as_str().unwrap_or_default());
            let value = serde_json::to_vec(&snapshot).expect("snapshots serialize");
            let batch = batch.put(rest::SNAPSHOTS, &key, value, nimbus_storage::Expect::Absent);
            Ok((deployment, batch))
        })?),
        GetDeployments => ok(page(load()?.deployments, &call.query)),
        GetDeployment => {
            let mut deployment = load()?.deployment(&param("deploymentId"))?.clone();
            if query("embed").is_some_and(|e| e.contains("apisummary")) {
                let snapshot = apis.snapshot(&api_id, &param("deploymentId"))?;
                deployment["apiSummary"] = rest::api_summary(&snapshot);
            }
            ok(deployment)
        }
        UpdateDeployment => ok(change(&|api| {
            let deployment = api.deployment(&param("deploymentId"))?;
            apply_patch(deployment, input, fields(&["description"]))?;
            Ok(deployment.clone())
        })?),
        DeleteDeployment => {
            let id = param("deploymentId");
            apis.change_rest_api(&api_id, |api, batch| {
                api.delete_deployment(&id)?;
                let key = format!("{api_id}/{id}");
                let batch = batch.delete(rest::SNAPSHOTS, &key, nimbus_storage::Expect::Anything);
                Ok((Value::Null, batch))
            })?;
            accepted()
        }
        CreateStage => created(change(&|api| api.create_stage(input))?),
        GetStages => {
            let deployment = query("deploymentId");
            let stages: Vec<Value> = load()?
                .stages
                .into_iter()
                .filter(|s| deployment.is_none_or(|d| s["deploymentId"] == d))
                .collect();
            ok(json!({ "item": stages }))
        }
        GetStage => ok(load()?.stage(&param("stageName"))?.clone()),
        UpdateStage => ok(change(&|api| {
            let mut stage = api.stage(&param("stageName"))?.clone();
            apply_patch(&mut stage, input, rest::stage_place)?;
            api.deployment(stage["deploymentId"].as_str().unwrap_or_default())?;
            stage["lastUpdatedDate"] = time::OffsetDateTime::now_utc().unix_timestamp().into();
            *api.stage(&param("stageName"))? = stage.clone();
            Ok(stage)
        })?),
        DeleteStage => {
            change(&|api| {
                let name = param("stageName");
                api.stage(&name)?;
                api.stages.retain(|s| s["stageName"] != name.as_str());
                Ok(Value::Null)
            })?;
            accepted()
        }
        CreateApiKey => created(apis.create_api_key(input)?),
        GetApiKeys => {
            let with_values = query("includeValues") == Some("true");
            let name = query("name");
            let customer = query("customerId");
            let keys = apis
                .api_keys()?
                .iter()
                .filter(|k| {
                    name.is_none_or(|n| k["name"].as_str().is_some_and(|k| k.starts_with(n)))
                })
                .filter(|k| customer.is_none_or(|c| k["customerId"] == c))
                .map(|k| key_json(k, with_values))
                .collect();
            ok(page(keys, &call.query))
        }
        GetApiKey => ok(key_json(
            &apis.api_key(&param("apiKey"))?,
            query("includeValue") == Some("true"),
        )),
        UpdateApiKey => ok(key_json(
            &apis.change_api_key(&param("apiKey"), |key| {
                apply_patch(
                    key,
                    input,
                    fields(&["name", "description", "enabled", "customerId"]),
                )
            })?,
            false,
        )),
        DeleteApiKey => {
            apis.delete_api_key(&param("apiKey"))?;
            accepted()
        }
        CreateUsagePlan => created(apis.create_usage_plan(input)?),
        GetUsagePlans => {
            let key = query("keyId");
            let plans = apis
                .usage_plans()?
                .iter()
                .filter(|p| {
                    key.is_none_or(|k| {
                        p["keys"]
                            .as_array()
                            .is_some_and(|ks| ks.iter().any(|x| x == k))
                    })
                })
                .map(plan_json)
                .collect();
            ok(page(plans, &call.query))
        }
        GetUsagePlan => ok(plan_json(&apis.usage_plan(&param("usagePlanId"))?)),
        UpdateUsagePlan => {
            let plan = apis.change_usage_plan(&param("usagePlanId"), |plan| {
                patch_plan(plan, input)?;
                apis.check_api_stages(plan)?;
                Ok(plan.clone())
            })?;
            ok(plan_json(&plan))
        }
        DeleteUsagePlan => {
            apis.delete_usage_plan(&param("usagePlanId"))?;
            accepted()
        }
        CreateUsagePlanKey => {
            let key_id = input["keyId"].as_str().unwrap_or_default().to_owned();
            if input["keyType"] != "API_KEY" {
                return Err(bad_request("KeyType must be API_KEY"));
            }
            let key = apis.api_key(&key_id)?;
            apis.change_usage_plan(&param("usagePlanId"), |plan| {
                let keys = plan["keys"]
                    .as_array_mut()
                    .ok_or_else(|| bad_request("broken plan"))?;
                if keys.iter().any(|k| k == key_id.as_str()) {
                    return Err(conflict(format!(
                        "API Key {key_id} is already in the usage plan"
                    )));
                }
                keys.push(key_id.clone().into());
                Ok(Value::Null)
            })?;
            created(plan_key_json(&key))
        }
        GetUsagePlanKeys => {
            let plan = apis.usage_plan(&param("usagePlanId"))?;
            let keys = plan["keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|id| apis.api_key(id.as_str().unwrap_or_default()).ok())
                .map(|key| plan_key_json(&key))
                .collect();
            ok(page(keys, &call.query))
        }
        GetUsagePlanKey => {
            let plan = apis.usage_plan(&param("usagePlanId"))?;
            let key_id = param("keyId");
            if !plan["keys"]
                .as_array()
                .is_some_and(|ks| ks.iter().any(|k| k == key_id.as_str()))
            {
                return Err(not_found("Invalid Usage Plan Key identifier specified"));
            }
            ok(plan_key_json(&apis.api_key(&key_id)?))
        }
        DeleteUsagePlanKey => {
            let key_id = param("keyId");
            apis.change_usage_plan(&param("usagePlanId"), |plan| {
                let keys = plan["keys"]
                    .as_array_mut()
                    .ok_or_else(|| bad_request("broken plan"))?;
                let before = keys.len();
                keys.retain(|k| k != key_id.as_str());
                if keys.len() == before {
                    return Err(not_found("Invalid Usage Plan Key identifier specified"));
                }
                Ok(Value::Null)
            })?;
            accepted()
        }
    }
}

/// Where a method keeps its responses, and an integration its.
const METHOD_RESPONSES: &str = "methodResponses";
const INTEGRATION_RESPONSES: &str = "integrationResponses";

/// Sets `item`'s response for `status` (in its `field` map) to `made`.
fn put_response(
    item: &mut Value,
    field: &str,
    status: &str,
    made: Value,
) -> Result<Value, AwsError> {
    if !item[field].is_object() {
        item[field] = json!({});
    }
    item[field][status] = made.clone();
    Ok(made)
}

/// `item`'s response for `status`.
fn response(item: &Value, field: &str, status: &str) -> Result<Value, AwsError> {
    match &item[field][status] {
        Value::Null => Err(not_found("Invalid Response status code specified")),
        found => Ok(found.clone()),
    }
}

fn delete_response(item: &mut Value, field: &str, status: &str) -> Result<Value, AwsError> {
    item[field]
        .as_object_mut()
        .and_then(|responses| responses.remove(status))
        .ok_or_else(|| not_found("Invalid Response status code specified"))?;
    Ok(Value::Null)
}

/// A usage plan's key as the API returns it.
fn plan_key_json(key: &Value) -> Value {
    json!({ "id": key["id"], "type": "API_KEY", "value": key["value"], "name": key["name"] })
}

/// Applies a usage plan's patch: `/apiStages` adds or removes `<api>:<stage>`, the
/// rest as members.
fn patch_plan(plan: &mut Value, input: &Value) -> Result<(), AwsError> {
    let mut rest = Vec::new();
    for operation in input["patchOperations"].as_array().into_iter().flatten() {
        if operation["path"] != "/apiStages" {
            rest.push(operation.clone());
            continue;
        }
        let value = operation["value"].as_str().unwrap_or_default();
        let (api, stage) = value
            .split_once(':')
            .ok_or_else(|| bad_request(format!("Invalid API stage {value}: <api id>:<stage>")))?;
        let stages = plan["apiStages"]
            .as_array_mut()
            .ok_or_else(|| bad_request("broken plan"))?;
        let same = |s: &Value| s["apiId"] == api && s["stage"] == stage;
        match operation["op"].as_str() {
            Some("add") if !stages.iter().any(same) => {
                stages.push(json!({ "apiId": api, "stage": stage }));
            }
            Some("add") => {}
            Some("remove") => stages.retain(|s| !same(s)),
            _ => return Err(bad_request("apiStages take add and remove")),
        }
    }
    apply_patch(
        plan,
        &json!({ "patchOperations": rest }),
        fields(&["name", "description", "throttle/*", "quota/*"]),
    )
}
