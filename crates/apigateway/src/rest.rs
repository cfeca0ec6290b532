//! API Gateway REST APIs (v1), as SAM and the Serverless Framework make them: a tree
//! of resources with methods and their integrations, deployments that snapshot the
//! tree, stages that serve a deployment, API keys and usage plans.
//!
//! Records: `apigateway.restapis/<id>` (the API, its resources, stages and
//! deployments), `apigateway.snapshots/<api>/<deployment>` (the resources a
//! deployment serves), `apigateway.apikeys/<id>` with `apigateway.apikey-values/<value>`
//! (the key's id, for requests that carry the value) and `apigateway.usageplans/<id>`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use nimbus_edge::AwsError;
use nimbus_storage::{Expect, WriteBatch};

use crate::{Apis, bad_request, conflict, internal, not_found};

pub const REST_APIS: &str = "apigateway.restapis";
pub const SNAPSHOTS: &str = "apigateway.snapshots";
pub const API_KEYS: &str = "apigateway.apikeys";
pub const KEY_VALUES: &str = "apigateway.apikey-values";
pub const USAGE_PLANS: &str = "apigateway.usageplans";

/// API Gateway's default quotas.
const MAX_REST_APIS: usize = 600;
const MAX_RESOURCES: usize = 300;
const MAX_STAGES: usize = 10;
const MAX_DEPLOYMENTS: usize = 500;
const MAX_API_KEYS: usize = 10_000;
const MAX_USAGE_PLANS: usize = 300;

pub const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestApi {
    /// The API as `GetRestApi` returns it.
    pub api: Value,
    /// Each resource as `GetResource` returns it with its methods embedded, each
    /// method with its integration.
    pub resources: Vec<Value>,
    pub stages: Vec<Value>,
    /// Deployments as `GetDeployment` returns them without their summary; what each
    /// serves is its snapshot record.
    pub deployments: Vec<Value>,
}

/// The resources one deployment serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub resources: Vec<Value>,
}

/// Seconds since the epoch: API Gateway v1 sends timestamps as numbers.
fn epoch() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn snapshot_key(api_id: &str, deployment_id: &str) -> String {
    format!("{api_id}/{deployment_id}")
}

fn api_missing(apis: &Apis, api_id: &str) -> AwsError {
    not_found(format!(
        "Invalid API identifier specified {}:{api_id}",
        apis.account
    ))
}

impl Apis {
    pub fn rest_api(&self, api_id: &str) -> Result<RestApi, AwsError> {
        Ok(self
            .record(REST_APIS, api_id, || api_missing(self, api_id))?
            .0)
    }

    pub fn rest_apis(&self) -> Result<Vec<RestApi>, AwsError> {
        self.records(REST_APIS, "")
    }

    /// Changes a REST API by `change`, which may add writes of its own.
    pub fn change_rest_api(
        &self,
        api_id: &str,
        change: impl Fn(&mut RestApi, WriteBatch) -> Result<(Value, WriteBatch), AwsError>,
    ) -> Result<Value, AwsError> {
        self.change(REST_APIS, api_id, || api_missing(self, api_id), change)
    }

    pub fn snapshot(&self, api_id: &str, deployment_id: &str) -> Result<Snapshot, AwsError> {
        let missing = || not_found("Invalid Deployment identifier specified");
        Ok(self
            .record(SNAPSHOTS, &snapshot_key(api_id, deployment_id), missing)?
            .0)
    }

    /// Creates a REST API from `input` (`CreateRestApi`'s), with the resources a
    /// definition declares when it is imported.
    pub fn create_rest_api(
        &self,
        input: &Value,
        definition: Option<&crate::openapi::Definition>,
    ) -> Result<Value, AwsError> {
        let name = input["name"]
            .as_str()
            .filter(|n| !n.is_empty() && n.len() <= 1024)
            .ok_or_else(|| bad_request("Invalid REST API name specified"))?;
        if self.rest_apis()?.len() >= MAX_REST_APIS {
            return Err(limit(format!(
                "An account has at most {MAX_REST_APIS} REST APIs"
            )));
        }
        let id = crate::id(10);
        let root = crate::id(10);
        let types = match &input["endpointConfiguration"]["types"] {
            Value::Array(types) if !types.is_empty() => Value::Array(types.clone()),
            _ => json!(["EDGE"]),
        };
        let mut api = json!({
            "id": id,
            "name": name,
            "createdDate": epoch(),
            "apiKeySource": input["apiKeySource"].as_str().unwrap_or("HEADER"),
            "endpointConfiguration": { "types": types },
            "disableExecuteApiEndpoint": input["disableExecuteApiEndpoint"].as_bool().unwrap_or(false),
            "rootResourceId": root,
            "tags": input["tags"].as_object().cloned().unwrap_or_default(),
        });
        for field in [
            "description",
            "version",
            "binaryMediaTypes",
            "minimumCompressionSize",
            "policy",
        ] {
            if !input[field].is_null() {
                api[field] = input[field].clone();
            }
        }
        let mut record = RestApi {
            api: api.clone(),
            resources: vec![json!({ "id": root, "path": "/" })],
            stages: Vec::new(),
            deployments: Vec::new(),
        };
        if let Some(definition) = definition {
            record.apply(definition, true)?;
        }
        self.commit(WriteBatch::new().put(REST_APIS, &id, to_vec(&record), Expect::Absent))?;
        Ok(api)
    }

    /// Deletes a REST API with its deployments' snapshots.
    pub fn delete_rest_api(&self, api_id: &str) -> Result<(), AwsError> {
        let (api, version) =
            self.record::<RestApi>(REST_APIS, api_id, || api_missing(self, api_id))?;
        let mut batch = WriteBatch::new().delete(REST_APIS, api_id, Expect::Version(version));
        for deployment in &api.deployments {
            let id = deployment["id"].as_str().unwrap_or_default();
            batch = batch.delete(SNAPSHOTS, &snapshot_key(api_id, id), Expect::Anything);
        }
        self.commit(batch)
    }

    pub fn create_api_key(&self, input: &Value) -> Result<Value, AwsError> {
        if self.api_keys()?.len() >= MAX_API_KEYS {
            return Err(limit(format!(
                "An account has at most {MAX_API_KEYS} API keys"
            )));
        }
        let value = match input["value"].as_str() {
            Some(value) if (20..=128).contains(&value.len()) && value.is_ascii() => {
                value.to_owned()
            }
            Some(_) => {
                return Err(bad_request(
                    "API Key value should be at least 20 and at most 128 ASCII characters",
                ));
            }
            None => format!("{}{}", crate::id(32), crate::id(8)),
        };
        let id = crate::id(10);
        let at = epoch();
        let key = json!({
            "id": id,
            "value": value,
            "name": input["name"].as_str().unwrap_or(&id),
            "description": input["description"].as_str().unwrap_or_default(),
            "enabled": input["enabled"].as_bool().unwrap_or(false),
            "createdDate": at,
            "lastUpdatedDate": at,
            "stageKeys": input["stageKeys"].as_array().cloned().unwrap_or_default(),
            "customerId": input["customerId"].as_str().unwrap_or_default(),
            "tags": input["tags"].as_object().cloned().unwrap_or_default(),
        });
        let batch = WriteBatch::new()
            .put(KEY_VALUES, &value, to_vec(&id), Expect::Absent)
            .put(API_KEYS, &id, to_vec(&key), Expect::Absent);
        match self.commit_raw(batch) {
            Err(nimbus_storage::StoreError::Conflict { .. }) => {
                Err(conflict("API Key already exists"))
            }
            done => done.map(|()| key).map_err(internal),
        }
    }

    pub fn api_key(&self, id: &str) -> Result<Value, AwsError> {
        let missing = || not_found("Invalid API Key identifier specified");
        Ok(self.record(API_KEYS, id, missing)?.0)
    }

    pub fn api_keys(&self) -> Result<Vec<Value>, AwsError> {
        self.records(API_KEYS, "")
    }

    /// The API key whose value a request carries.
    pub fn api_key_by_value(&self, value: &str) -> Result<Option<Value>, AwsError> {
        let Ok((id, _)) = self.record::<String>(KEY_VALUES, value, || not_found("")) else {
            return Ok(None);
        };
        Ok(self.api_key(&id).ok())
    }

    pub fn delete_api_key(&self, id: &str) -> Result<(), AwsError> {
        let missing = || not_found("Invalid API Key identifier specified");
        let (key, version) = self.record::<Value>(API_KEYS, id, missing)?;
        let value = key["value"].as_str().unwrap_or_default();
        self.commit(
            WriteBatch::new()
                .delete(API_KEYS, id, Expect::Version(version))
                .delete(KEY_VALUES, value, Expect::Anything),
        )
    }

    pub fn change_api_key(
        &self,
        id: &str,
        change: impl Fn(&mut Value) -> Result<(), AwsError>,
    ) -> Result<Value, AwsError> {
        let missing = || not_found("Invalid API Key identifier specified");
        self.change(API_KEYS, id, missing, |key: &mut Value, batch| {
            change(key)?;
            key["lastUpdatedDate"] = epoch().into();
            Ok((key.clone(), batch))
        })
    }

    pub fn create_usage_plan(&self, input: &Value) -> Result<Value, AwsError> {
        if self.usage_plans()?.len() >= MAX_USAGE_PLANS {
            return Err(limit(format!(
                "An account has at most {MAX_USAGE_PLANS} usage plans"
            )));
        }
        let name = input["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad_request("Invalid usage plan name specified"))?;
        let id = crate::id(6);
        let mut plan = json!({
            "id": id,
            "name": name,
            "description": input["description"].as_str().unwrap_or_default(),
            "apiStages": input["apiStages"].as_array().cloned().unwrap_or_default(),
            "tags": input["tags"].as_object().cloned().unwrap_or_default(),
            "keys": [],
        });
        for field in ["throttle", "quota"] {
            if input[field].is_object() {
                plan[field] = input[field].clone();
            }
        }
        self.check_api_stages(&plan)?;
        self.commit(WriteBatch::new().put(USAGE_PLANS, &id, to_vec(&plan), Expect::Absent))?;
        Ok(plan_json(&plan))
    }

    /// Refuses a plan naming a stage no REST API has.
    pub fn check_api_stages(&self, plan: &Value) -> Result<(), AwsError> {
        for stage in plan["apiStages"].as_array().into_iter().flatten() {
            let (api_id, name) = (
                stage["apiId"].as_str().unwrap_or_default(),
                stage["stage"].as_str().unwrap_or_default(),
            );
            let found = self
                .rest_api(api_id)
                .is_ok_and(|api| api.stages.iter().any(|s| s["stageName"] == name));
            if !found {
                return Err(bad_request(format!(
                    "Invalid API Stage {{api: {api_id}, stage: {name}}} specified for usageplan"
                )));
            }
        }
        Ok(())
    }

    /// A usage plan as stored: with the ids of its keys.
    pub fn usage_plan(&self, id: &str) -> Result<Value, AwsError> {
        let missing = || not_found("Invalid Usage Plan ID specified");
        Ok(self.record(USAGE_PLANS, id, missing)?.0)
    }

    pub fn usage_plans(&self) -> Result<Vec<Value>, AwsError> {
        self.records(USAGE_PLANS, "")
    }

    pub fn change_usage_plan(
        &self,
        id: &str,
        change: impl Fn(&mut Value) -> Result<Value, AwsError>,
    ) -> Result<Value, AwsError> {
        let missing = || not_found("Invalid Usage Plan ID specified");
        self.change(USAGE_PLANS, id, missing, |plan: &mut Value, batch| {
            Ok((change(plan)?, batch))
        })
    }

    pub fn delete_usage_plan(&self, id: &str) -> Result<(), AwsError> {
        let missing = || not_found("Invalid Usage Plan ID specified");
        let (_, version) = self.record::<Value>(USAGE_PLANS, id, missing)?;
        self.commit(WriteBatch::new().delete(USAGE_PLANS, id, Expect::Version(version)))
    }
}

/// A usage plan as the API returns it: its keys are listed apart.
pub fn plan_json(plan: &Value) -> Value {
    let mut out = plan.clone();
    if let Some(fields) = out.as_object_mut() {
        fields.remove("keys");
    }
    out
}

/// An API key as the API returns it, with its value only when asked for.
pub fn key_json(key: &Value, with_value: bool) -> Value {
    let mut out = key.clone();
    if !with_value && let Some(fields) = out.as_object_mut() {
        fields.remove("value");
    }
    out
}

pub fn limit(message: String) -> AwsError {
    AwsError::new(
        http::StatusCode::TOO_MANY_REQUESTS,
        "LimitExceededException",
        message,
    )
}

fn to_vec(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

impl RestApi {
    pub fn id(&self) -> &str {
        self.api["id"].as_str().unwrap_or_default()
    }

    pub fn resource(&mut self, id: &str) -> Result<&mut Value, AwsError> {
        self.resources
            .iter_mut()
            .find(|r| r["id"] == id)
            .ok_or_else(|| not_found("Invalid Resource identifier specified"))
    }

    pub fn method(&mut self, resource: &str, method: &str) -> Result<&mut Value, AwsError> {
        self.resource(resource)?
            .get_mut("resourceMethods")
            .and_then(|methods| methods.get_mut(method))
            .ok_or_else(|| not_found("Invalid Method identifier specified"))
    }

    pub fn integration(&mut self, resource: &str, method: &str) -> Result<&mut Value, AwsError> {
        self.method(resource, method)?
            .get_mut("methodIntegration")
            .ok_or_else(|| not_found("Invalid Integration identifier specified"))
    }

    pub fn stage(&mut self, name: &str) -> Result<&mut Value, AwsError> {
        self.stages
            .iter_mut()
            .find(|s| s["stageName"] == name)
            .ok_or_else(|| not_found("Invalid Stage identifier specified"))
    }

    pub fn deployment(&mut self, id: &str) -> Result<&mut Value, AwsError> {
        self.deployments
            .iter_mut()
            .find(|d| d["id"] == id)
            .ok_or_else(|| not_found("Invalid Deployment identifier specified"))
    }

    /// Adds a resource under `parent`: a literal path part, a `{name}` or, with no
    /// children, a greedy `{name+}`; one variable part among siblings.
    pub fn create_resource(&mut self, parent: &str, path_part: &str) -> Result<Value, AwsError> {
        if self.resources.len() >= MAX_RESOURCES {
            return Err(limit(format!(
                "A REST API has at most {MAX_RESOURCES} resources"
            )));
        }
        let parent_path = self.place(parent, path_part, None)?;
        let resource = json!({
            "id": crate::id(6),
            "parentId": parent,
            "pathPart": path_part,
            "path": child_path(&parent_path, path_part),
        });
        self.resources.push(resource.clone());
        Ok(resource)
    }

    /// Renames or moves a resource by patch (`/pathPart`, `/parentId`), checked as a
    /// new one would be; the paths under it follow.
    pub fn update_resource(&mut self, id: &str, input: &Value) -> Result<Value, AwsError> {
        let mut changed = self.resource(id)?.clone();
        if changed["parentId"].is_null() {
            return Err(bad_request("The root resource cannot be changed"));
        }
        apply_patch(&mut changed, input, fields(&["pathPart", "parentId"]))?;
        let part = changed["pathPart"].as_str().unwrap_or_default().to_owned();
        let parent = changed["parentId"].as_str().unwrap_or_default().to_owned();
        self.place(&parent, &part, Some(id))?;
        let before = std::mem::replace(self.resource(id)?, changed);
        if let Err(err) = self.repath() {
            *self.resource(id)? = before;
            return Err(err);
        }
        Ok(self.resource(id)?.clone())
    }

    /// The path of `parent`, if a resource `part` may be its child (`except` is the
    /// resource being moved there): a good path part, a parent that is not greedy,
    /// no sibling of that name, one variable part among siblings.
    fn place(
        &mut self,
        parent: &str,
        part: &str,
        except: Option<&str>,
    ) -> Result<String, AwsError> {
        check_path_part(part)?;
        let parent_path = self.resource(parent)?["path"]
            .as_str()
            .unwrap_or("/")
            .to_owned();
        if parent_path.ends_with("+}") {
            return Err(bad_request(format!(
                "Cannot create a child of a resource with a greedy path variable: {parent_path}"
            )));
        }
        let siblings: Vec<&str> = self
            .resources
            .iter()
            .filter(|r| r["parentId"] == parent && except.is_none_or(|id| r["id"] != id))
            .filter_map(|r| r["pathPart"].as_str())
            .collect();
        if siblings.contains(&part) {
            return Err(conflict(format!(
                "Another resource with the same parent already has this name: {part}"
            )));
        }
        if part.starts_with('{') && siblings.iter().any(|s| s.starts_with('{')) {
            return Err(bad_request(
                "A sibling ({...}) already exists: only one variable path part is allowed among siblings",
            ));
        }
        Ok(parent_path)
    }

    /// Deletes a resource and everything under it.
    pub fn delete_resource(&mut self, id: &str) -> Result<(), AwsError> {
        if self.resource(id)?["parentId"].is_null() {
            return Err(bad_request("Cannot delete the root resource"));
        }
        let mut doomed = vec![id.to_owned()];
        let mut n = 0;
        while n < doomed.len() {
            let parent = doomed[n].clone();
            doomed.extend(
                self.resources
                    .iter()
                    .filter(|r| r["parentId"] == parent.as_str())
                    .filter_map(|r| r["id"].as_str().map(str::to_owned)),
            );
            n += 1;
        }
        self.resources
            .retain(|r| !doomed.iter().any(|d| r["id"] == d.as_str()));
        Ok(())
    }

    /// Recomputes every resource's path from its parent's (after a rename or move),
    /// refusing a resource moved under itself.
    pub fn repath(&mut self) -> Result<(), AwsError> {
        let mut paths: Map<String, Value> = Map::new();
        for _ in 0..=self.resources.len() {
            for resource in &self.resources {
                let id = resource["id"].as_str().unwrap_or_default();
                let path = match resource["parentId"].as_str() {
                    None => Some("/".to_owned()),
                    Some(parent) => paths
                        .get(parent)
                        .and_then(Value::as_str)
                        .map(|p| child_path(p, resource["pathPart"].as_str().unwrap_or_default())),
                };
                if let Some(path) = path {
                    paths.insert(id.to_owned(), path.into());
                }
            }
        }
        let placed = |r: &Value| paths.contains_key(r["id"].as_str().unwrap_or_default());
        if !self.resources.iter().all(placed) {
            return Err(bad_request("A resource cannot be moved under itself"));
        }
        for resource in &mut self.resources {
            let id = resource["id"].as_str().unwrap_or_default();
            resource["path"] = paths[id].clone();
        }
        Ok(())
    }

    /// A method as `PutMethod` makes it.
    pub fn put_method(
        &mut self,
        resource: &str,
        method: &str,
        input: &Value,
    ) -> Result<Value, AwsError> {
        if !METHODS.contains(&method) {
            return Err(bad_request(format!("Invalid HTTP method {method}")));
        }
        let authorization = input["authorizationType"].as_str().unwrap_or_default();
        check_authorization(authorization)?;
        let target = self.resource(resource)?;
        if target["resourceMethods"][method].is_object() {
            return Err(conflict("Method already exists for this resource"));
        }
        let mut made = json!({
            "httpMethod": method,
            "authorizationType": authorization,
            "apiKeyRequired": input["apiKeyRequired"].as_bool().unwrap_or(false),
        });
        for field in [
            "operationName",
            "requestParameters",
            "requestModels",
            "requestValidatorId",
        ] {
            if !input[field].is_null() {
                made[field] = input[field].clone();
            }
        }
        if !target["resourceMethods"].is_object() {
            target["resourceMethods"] = json!({});
        }
        target["resourceMethods"][method] = made.clone();
        Ok(made)
    }

    /// Deletes a deployment no stage serves.
    pub fn delete_deployment(&mut self, id: &str) -> Result<(), AwsError> {
        self.deployment(id)?;
        if self.stages.iter().any(|s| s["deploymentId"] == id) {
            return Err(bad_request(
                "Active stages pointing to this deployment must be moved or deleted",
            ));
        }
        self.deployments.retain(|d| d["id"] != id);
        Ok(())
    }

    /// Deploys the API's resources as they are now, to `input.stageName` if given
    /// (made if new); returns the deployment and its snapshot.
    pub fn deploy(&mut self, input: &Value) -> Result<(Value, Snapshot), AwsError> {
        let methods: Vec<&Value> = self
            .resources
            .iter()
            .filter_map(|r| r["resourceMethods"].as_object())
            .flat_map(|methods| methods.values())
            .collect();
        if methods.is_empty() {
            return Err(bad_request("The REST API doesn't contain any methods"));
        }
        if methods.iter().any(|m| m["methodIntegration"].is_null()) {
            return Err(bad_request("No integration defined for method"));
        }
        if self.deployments.len() >= MAX_DEPLOYMENTS {
            return Err(limit(format!(
                "A REST API keeps at most {MAX_DEPLOYMENTS} deployments: delete ones no stage serves"
            )));
        }
        let deployment = json!({
            "id": crate::id(6),
            "description": input["description"].as_str().unwrap_or_default(),
            "createdDate": epoch(),
        });
        self.deployments.push(deployment.clone());
        if let Some(name) = input["stageName"].as_str() {
            let variables = input["variables"].clone();
            match self.stage(name) {
                Ok(stage) => {
                    stage["deploymentId"] = deployment["id"].clone();
                    if variables.is_object() {
                        stage["variables"] = variables;
                    }
                    stage["lastUpdatedDate"] = epoch().into();
                }
                Err(_) => {
                    let stage = json!({
                        "stageName": name,
                        "deploymentId": deployment["id"],
                        "description": input["stageDescription"],
                        "variables": variables,
                        "tracingEnabled": input["tracingEnabled"],
                    });
                    self.create_stage(&stage)?;
                }
            }
        }
        let snapshot = Snapshot {
            resources: self.resources.clone(),
        };
        Ok((deployment, snapshot))
    }

    pub fn create_stage(&mut self, input: &Value) -> Result<Value, AwsError> {
        let name = input["stageName"]
            .as_str()
            .filter(|n| {
                !n.is_empty()
                    && n.len() <= 128
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
            })
            .ok_or_else(|| {
                bad_request("Stage name only allows a-zA-Z0-9_- and at most 128 characters")
            })?;
        let deployment = input["deploymentId"].as_str().unwrap_or_default();
        self.deployment(deployment)?;
        if self.stages.iter().any(|s| s["stageName"] == name) {
            return Err(conflict("Stage already exists"));
        }
        if self.stages.len() >= MAX_STAGES {
            return Err(limit(format!("A REST API has at most {MAX_STAGES} stages")));
        }
        let at = epoch();
        let stage = json!({
            "stageName": name,
            "deploymentId": deployment,
            "description": input["description"].as_str().unwrap_or_default(),
            "cacheClusterEnabled": false,
            "cacheClusterStatus": "NOT_AVAILABLE",
            "methodSettings": {},
            "variables": input["variables"].as_object().cloned().unwrap_or_default(),
            "tracingEnabled": input["tracingEnabled"].as_bool().unwrap_or(false),
            "tags": input["tags"].as_object().cloned().unwrap_or_default(),
            "createdDate": at,
            "lastUpdatedDate": at,
        });
        self.stages.push(stage.clone());
        Ok(stage)
    }
}

/// A summary of what a deployment serves: each path's methods.
pub fn api_summary(snapshot: &Snapshot) -> Value {
    let mut summary = Map::new();
    for resource in &snapshot.resources {
        let Some(methods) = resource["resourceMethods"].as_object() else {
            continue;
        };
        let path = resource["path"].as_str().unwrap_or_default();
        let methods: Map<String, Value> = methods
            .iter()
            .map(|(name, m)| {
                (
                    name.clone(),
                    json!({ "authorizationType": m["authorizationType"], "apiKeyRequired": m["apiKeyRequired"] }),
                )
            })
            .collect();
        summary.insert(path.to_owned(), methods.into());
    }
    summary.into()
}

fn child_path(parent: &str, part: &str) -> String {
    format!("{}/{part}", parent.trim_end_matches('/'))
}

/// A path part: letters, digits and `._-:`, or a whole `{name}` or `{name+}`.
fn check_path_part(part: &str) -> Result<(), AwsError> {
    let name = part
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .map(|p| p.strip_suffix('+').unwrap_or(p));
    let good = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b))
    };
    if part.len() <= 512 && name.map_or_else(|| good(part), good) {
        Ok(())
    } else {
        Err(bad_request(format!(
            "Resource's path part only allows a-zA-Z0-9._-: and curly braces at the beginning and the end, with an optional plus sign before the closing brace: {part}"
        )))
    }
}

pub fn check_authorization(kind: &str) -> Result<(), AwsError> {
    match kind {
        "NONE" | "AWS_IAM" => Ok(()),
        _ => Err(bad_request(format!(
            "Invalid authorization type {kind}: this nimbus checks NONE and AWS_IAM on REST API methods"
        ))),
    }
}

/// An integration as `PutIntegration` makes it for a method of `resource`: a Lambda
/// proxy (`AWS_PROXY`, called with POST), an HTTP proxy or a mock.
pub fn integration(resource: &str, input: &Value) -> Result<Value, AwsError> {
    let kind = input["type"].as_str().unwrap_or_default();
    let uri = input["uri"].as_str().unwrap_or_default();
    let method = input["httpMethod"].as_str().unwrap_or_default();
    match kind {
        "AWS_PROXY" if crate::invoke::function_of(uri).is_none() => {
            return Err(bad_request(format!(
                "Invalid integration URI specified: {uri} is not a Lambda function"
            )));
        }
        "AWS_PROXY" if method != "POST" => {
            return Err(bad_request(
                "Lambda proxy integrations are called with httpMethod POST",
            ));
        }
        "HTTP_PROXY" if !(uri.starts_with("http://") || uri.starts_with("https://")) => {
            return Err(bad_request(format!(
                "Invalid HTTP endpoint specified for URI: {uri}"
            )));
        }
        "HTTP_PROXY" if !METHODS.contains(&method) => {
            return Err(bad_request(format!("Invalid HTTP method {method}")));
        }
        "AWS_PROXY" | "HTTP_PROXY" | "MOCK" => {}
        _ => {
            return Err(bad_request(format!(
                "Invalid integration type {kind}: this nimbus serves AWS_PROXY, HTTP_PROXY and MOCK integrations"
            )));
        }
    }
    let timeout = input["timeoutInMillis"].as_i64().unwrap_or(29_000);
    if !(50..=29_000).contains(&timeout) {
        return Err(bad_request("Timeout should be between 50 ms and 29000 ms"));
    }
    let mut made = json!({
        "type": kind,
        "passthroughBehavior": input["passthroughBehavior"].as_str().unwrap_or("WHEN_NO_MATCH"),
        "timeoutInMillis": timeout,
        "cacheNamespace": input["cacheNamespace"].as_str().unwrap_or(resource),
        "cacheKeyParameters": input["cacheKeyParameters"].as_array().cloned().unwrap_or_default(),
        "connectionType": "INTERNET",
    });
    if kind != "MOCK" {
        made["httpMethod"] = method.into();
        made["uri"] = uri.into();
    }
    for field in [
        "requestParameters",
        "requestTemplates",
        "contentHandling",
        "credentials",
        "integrationResponses",
    ] {
        if !input[field].is_null() {
            made[field] = input[field].clone();
        }
    }
    Ok(made)
}

/// A patch path's segments, its `~1` (`/`) and `~0` (`~`) escapes undone.
fn segments(path: &str) -> Vec<String> {
    path.trim_start_matches('/')
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// Members that are lists: a patch adds or removes their entries.
const LISTS: &[&str] = &["binaryMediaTypes"];
/// Members whose patched values are booleans or numbers (patch values are strings).
const BOOLEANS: &[&str] = &[
    "apiKeyRequired",
    "enabled",
    "tracingEnabled",
    "cacheClusterEnabled",
    "disableExecuteApiEndpoint",
    "metricsEnabled",
    "dataTraceEnabled",
    "cachingEnabled",
    "cacheDataEncrypted",
    "requireAuthorizationForCacheControl",
];
const NUMBERS: &[&str] = &[
    "timeoutInMillis",
    "minimumCompressionSize",
    "throttlingRateLimit",
    "throttlingBurstLimit",
    "cacheTtlInSeconds",
    "rateLimit",
    "burstLimit",
    "limit",
    "offset",
];

fn typed(name: &str, value: &Value) -> Result<Value, AwsError> {
    let text = value.as_str().unwrap_or_default();
    let bad = || bad_request(format!("Invalid value {text} for {name}"));
    if BOOLEANS.contains(&name) {
        text.parse::<bool>().map(Value::from).map_err(|_| bad())
    } else if NUMBERS.contains(&name) {
        let number: f64 = text.parse().map_err(|_| bad())?;
        Ok(if number.fract() == 0.0 {
            json!(number as i64)
        } else {
            json!(number)
        })
    } else {
        Ok(value.clone())
    }
}

/// Applies a request's `patchOperations` to `item`. `place` maps each operation's
/// path (its segments) to the members it changes, or refuses it: a member, a member
/// of a map member (`/variables/name`), or an entry of a list member
/// (`/binaryMediaTypes/image~1png`, added or removed).
pub fn apply_patch(
    item: &mut Value,
    input: &Value,
    place: impl Fn(&[String]) -> Option<Vec<String>>,
) -> Result<(), AwsError> {
    for operation in input["patchOperations"].as_array().into_iter().flatten() {
        let path = operation["path"].as_str().unwrap_or_default();
        let op = operation["op"].as_str().unwrap_or_default();
        let at = place(&segments(path))
            .filter(|at| !at.is_empty())
            .ok_or_else(|| bad_request(format!("Invalid patch path {path}")))?;
        let (last, parents) = at.split_last().expect("not empty");
        let mut parent = &mut *item;
        for name in parents {
            if !parent[name.as_str()].is_object() && !parent[name.as_str()].is_array() {
                parent[name.as_str()] = if LISTS.contains(&name.as_str()) {
                    json!([])
                } else {
                    json!({})
                };
            }
            parent = &mut parent[name.as_str()];
        }
        match (op, parent) {
            ("add", Value::Array(list)) => {
                if !list.iter().any(|v| v == last.as_str()) {
                    list.push(last.as_str().into());
                }
            }
            ("remove", Value::Array(list)) => list.retain(|v| v != last.as_str()),
            ("replace" | "add", Value::Object(fields)) => {
                fields.insert(last.clone(), typed(last, &operation["value"])?);
            }
            ("remove", Value::Object(fields)) => {
                fields.remove(last);
            }
            _ => {
                return Err(bad_request(format!(
                    "Invalid patch operation {op} on {path}"
                )));
            }
        }
    }
    Ok(())
}

/// A `place` for `apply_patch` allowing `fields`: a name, or `name/*` for a member of
/// a map (or entry of a list) member.
pub fn fields(allowed: &'static [&'static str]) -> impl Fn(&[String]) -> Option<Vec<String>> {
    move |at: &[String]| {
        let fits = match at {
            [name] => allowed.contains(&name.as_str()),
            [name, _] => allowed.contains(&format!("{name}/*").as_str()),
            _ => false,
        };
        fits.then(|| at.to_vec())
    }
}

/// A stage's patchable members: a method's settings are `/{resource path}/{method}/
/// {category}/{setting}`, kept in `methodSettings` by `{resource path}/{method}`.
pub fn stage_place(at: &[String]) -> Option<Vec<String>> {
    const SETTINGS: &[(&str, &str, &str)] = &[
        ("throttling", "rateLimit", "throttlingRateLimit"),
        ("throttling", "burstLimit", "throttlingBurstLimit"),
        ("logging", "loglevel", "loggingLevel"),
        ("logging", "dataTrace", "dataTraceEnabled"),
        ("metrics", "enabled", "metricsEnabled"),
        ("caching", "enabled", "cachingEnabled"),
        ("caching", "ttlInSeconds", "cacheTtlInSeconds"),
    ];
    match at {
        [path, method, category, setting] => SETTINGS
            .iter()
            .find(|(c, s, _)| c == category && s == setting)
            .map(|(_, _, name)| {
                let key = format!("{}/{method}", path.trim_start_matches('/'));
                vec!["methodSettings".to_owned(), key, (*name).to_owned()]
            }),
        _ => fields(&[
            "deploymentId",
            "description",
            "variables/*",
            "accessLogSettings/*",
            "tracingEnabled",
            "cacheClusterEnabled",
            "cacheClusterSize",
        ])(at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api() -> RestApi {
        RestApi {
            api: json!({ "id": "a" }),
            resources: vec![json!({ "id": "root", "path": "/" })],
            stages: Vec::new(),
            deployments: Vec::new(),
        }
    }

    #[test]
    fn resources_make_a_tree_of_paths() {
        let mut api = api();
        let items = api.create_resource("root", "items").unwrap();
        let id = api
            .create_resource(items["id"].as_str().unwrap(), "{id}")
            .unwrap();
        assert_eq!(id["path"], "/items/{id}");
        // One variable part among siblings, a literal once, nothing under a greedy part.
        let items_id = items["id"].as_str().unwrap();
        assert!(api.create_resource(items_id, "{other}").is_err());
        assert!(api.create_resource("root", "items").is_err());
        let proxy = api.create_resource("root", "{proxy+}").unwrap();
        assert!(
            api.create_resource(proxy["id"].as_str().unwrap(), "x")
                .is_err()
        );
        assert!(api.create_resource("root", "a/b").is_err());
        assert!(api.create_resource("root", "{a+b}").is_err());
        // A rename moves the subtree's paths; a name a sibling has is refused.
        let rename = |part: &str| json!({ "patchOperations": [{ "op": "replace", "path": "/pathPart", "value": part }] });
        api.update_resource(items_id, &rename("things")).unwrap();
        assert_eq!(
            api.resource(id["id"].as_str().unwrap()).unwrap()["path"],
            "/things/{id}"
        );
        api.create_resource("root", "other").unwrap();
        assert!(api.update_resource(items_id, &rename("other")).is_err());
        assert!(api.update_resource(items_id, &rename("a/b")).is_err());
        // A move under itself is refused, and changes nothing.
        let under = json!({ "patchOperations": [{ "op": "replace", "path": "/parentId", "value": id["id"] }] });
        assert!(api.update_resource(items_id, &under).is_err());
        assert_eq!(api.resource(items_id).unwrap()["parentId"], "root");
        api.delete_resource(items_id).unwrap();
        assert_eq!(api.resources.len(), 3);
        assert!(api.delete_resource("root").is_err());
    }

    #[test]
    fn patches_change_only_what_they_may() {
        let mut stage = json!({ "variables": {}, "methodSettings": {} });
        let patch = json!({ "patchOperations": [
            { "op": "replace", "path": "/variables/color", "value": "blue" },
            { "op": "replace", "path": "/~1items/GET/throttling/rateLimit", "value": "5" },
            { "op": "replace", "path": "/*/*/throttling/burstLimit", "value": "2" },
            { "op": "replace", "path": "/tracingEnabled", "value": "true" },
        ]});
        apply_patch(&mut stage, &patch, stage_place).unwrap();
        assert_eq!(stage["variables"]["color"], "blue");
        assert_eq!(
            stage["methodSettings"]["items/GET"]["throttlingRateLimit"],
            5
        );
        assert_eq!(stage["methodSettings"]["*/*"]["throttlingBurstLimit"], 2);
        assert_eq!(stage["tracingEnabled"], true);
        let bad = json!({ "patchOperations": [{ "op": "replace", "path": "/createdDate", "value": "1" }] });
        assert!(apply_patch(&mut stage, &bad, stage_place).is_err());
        let bad = json!({ "patchOperations": [{ "op": "replace", "path": "/tracingEnabled", "value": "maybe" }] });
        assert!(apply_patch(&mut stage, &bad, stage_place).is_err());
        let mut api = json!({});
        let patch = json!({ "patchOperations": [
            { "op": "add", "path": "/binaryMediaTypes/image~1png" },
            { "op": "add", "path": "/binaryMediaTypes/application~1octet-stream" },
            { "op": "remove", "path": "/binaryMediaTypes/image~1png" },
        ]});
        apply_patch(&mut api, &patch, fields(&["binaryMediaTypes/*"])).unwrap();
        assert_eq!(api["binaryMediaTypes"], json!(["application/octet-stream"]));
    }
}
