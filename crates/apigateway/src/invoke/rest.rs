//! REST APIs' (v1) invoke URLs: the path's first segment names the stage, whose
//! deployment's resources are matched segment by segment, and the method's
//! integration answers: a Lambda proxy with the v1 proxy event, an HTTP proxy or a
//! mock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use nimbus_lambda::function_urls::answer;
use nimbus_lambda::invoke::InvokeRequest;
use serde_json::Value;

use super::{Facts, InvokeServer, event_v1, iam_allows, logged, message};
use crate::jwt::Refusal;
use crate::rest::{RestApi, Snapshot};

/// A matched resource, its method and the path parameters the request gives it.
type Matched<'a> = (&'a Value, &'a Value, BTreeMap<String, String>);

/// The resource and method a path takes: segment by segment from the root, a
/// literal child before a `{name}` one before a greedy `{name+}`, backing off where a
/// branch leads nowhere; the resource must have the request's method or `ANY`.
fn resource_for<'a>(resources: &'a [Value], method: &str, path: &str) -> Option<Matched<'a>> {
    let segments: Vec<&str> = path
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let root = resources.iter().find(|r| r["parentId"].is_null())?;
    let mut parameters = BTreeMap::new();
    let found = descend(resources, root, &segments, method, &mut parameters)?;
    Some((found.0, found.1, parameters))
}

fn descend<'a>(
    resources: &'a [Value],
    at: &'a Value,
    rest: &[&str],
    method: &str,
    parameters: &mut BTreeMap<String, String>,
) -> Option<(&'a Value, &'a Value)> {
    let Some((segment, after)) = rest.split_first() else {
        let methods = &at["resourceMethods"];
        let chosen = methods
            .get(method)
            .or_else(|| methods.get("ANY"))
            .filter(|m| m.is_object())?;
        return Some((at, chosen));
    };
    let children: Vec<&Value> = resources
        .iter()
        .filter(|r| r["parentId"] == at["id"])
        .collect();
    let part = |r: &&Value| r["pathPart"].as_str().unwrap_or_default().to_owned();
    if let Some(child) = children.iter().find(|r| part(r) == *segment)
        && let Some(found) = descend(resources, child, after, method, parameters)
    {
        return Some(found);
    }
    for child in &children {
        let part = part(child);
        let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) else {
            continue;
        };
        if let Some(name) = name.strip_suffix('+') {
            let methods = &child["resourceMethods"];
            let chosen = methods
                .get(method)
                .or_else(|| methods.get("ANY"))
                .filter(|m| m.is_object());
            if let Some(chosen) = chosen {
                parameters.insert(name.to_owned(), rest.join("/"));
                return Some((child, chosen));
            }
            continue;
        }
        parameters.insert(name.to_owned(), (*segment).to_owned());
        if let Some(found) = descend(resources, child, after, method, parameters) {
            return Some(found);
        }
        parameters.remove(name);
    }
    None
}

/// A request's API key, judged.
enum Keyed {
    Admitted(Value),
    Throttled,
    Refused,
}

/// REST APIs answer a request no resource and method take this way.
fn missing_token() -> Response {
    message(StatusCode::FORBIDDEN, "Missing Authentication Token")
}

impl InvokeServer {
    /// Serves a request to one of a REST API's stages: `/<stage>/<path>`.
    pub(super) async fn serve_rest(
        self: &Arc<Self>,
        api: &RestApi,
        parts: http::request::Parts,
        path: &str,
        body: Body,
    ) -> Response {
        let started = Instant::now();
        let rest = path.trim_start_matches('/');
        let (stage_name, within) = rest.split_once('/').unwrap_or((rest, ""));
        let within = format!("/{within}");
        let Some(stage) = api.stages.iter().find(|s| s["stageName"] == stage_name) else {
            return message(StatusCode::FORBIDDEN, "Forbidden");
        };
        let deployment = stage["deploymentId"].as_str().unwrap_or_default();
        let snapshot = match self.apis.cached_snapshot(api.id(), deployment) {
            Some(snapshot) => Ok(snapshot),
            None => {
                let apis = self.apis.clone();
                let (api_id, deployment) = (api.id().to_owned(), deployment.to_owned());
                tokio::task::spawn_blocking(move || apis.served_snapshot(&api_id, &deployment))
                    .await
                    .map_err(|_| ())
                    .and_then(|loaded| loaded.map_err(drop))
            }
        };
        let Ok(snapshot) = snapshot else {
            return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error");
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut route_key = "-".to_owned();
        let response = self
            .respond_rest(
                (api, stage, &snapshot),
                &parts,
                &within,
                body,
                (&request_id, &mut route_key),
            )
            .await;
        let facts = Facts {
            api_id: api.id(),
            stage: stage_name,
            parts: &parts,
            path: &within,
            route_key: &route_key,
            request_id: &request_id,
            started,
        };
        logged(&self.logs, stage, response, "x-amzn-requestid", &facts).await
    }

    async fn respond_rest(
        &self,
        (api, stage, snapshot): (&RestApi, &Value, &Snapshot),
        parts: &http::request::Parts,
        path: &str,
        body: Body,
        (request_id, route_key): (&str, &mut String),
    ) -> Response {
        let api_id = api.id();
        let stage_name = stage["stageName"].as_str().unwrap_or_default();
        let method_name = parts.method.as_str();
        let Some((resource, method, parameters)) =
            resource_for(&snapshot.resources, method_name, path)
        else {
            return missing_token();
        };
        let resource_path = resource["path"].as_str().unwrap_or("/");
        let declared = method["httpMethod"].as_str().unwrap_or(method_name);
        *route_key = format!("{declared} {resource_path}");
        // A method's own settings, else the stage's `*/*`.
        let settings = &stage["methodSettings"];
        let own = format!("{}/{declared}", resource_path.trim_start_matches('/'));
        let settings = settings
            .get(&own)
            .filter(|s| s.is_object())
            .unwrap_or(&settings["*/*"]);
        let bucket = format!("{api_id}/{stage_name}/{own}");
        let body = match self.admitted(bucket, settings, body).await {
            Ok(body) => body,
            Err(refused) => return refused,
        };
        let invoked = self.execute_arn(api_id, stage_name, method_name, path);
        if method["authorizationType"] == "AWS_IAM"
            && let Err(refusal) = iam_allows(self, parts, &body, &invoked)
        {
            return match refusal {
                Refusal::Forbidden => message(StatusCode::FORBIDDEN, "Forbidden"),
                _ => missing_token(),
            };
        }
        let key = if method["apiKeyRequired"] == true {
            match self.keyed(api_id, stage_name, parts).await {
                Keyed::Admitted(key) => Some(key),
                Keyed::Throttled => {
                    return message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
                }
                Keyed::Refused => return message(StatusCode::FORBIDDEN, "Forbidden"),
            }
        } else {
            None
        };
        let integration = &method["methodIntegration"];
        let uri = integration["uri"].as_str().unwrap_or_default();
        match integration["type"].as_str() {
            Some("MOCK") => return mock(integration),
            Some("HTTP_PROXY") => {
                let method = integration["httpMethod"].as_str().unwrap_or("ANY");
                return self
                    .forward(uri, method, parts, "", &parameters, body)
                    .await;
            }
            _ => {}
        }
        let source = format!(
            "{api_id}/{stage_name}/{}{resource_path}",
            declared.replace("ANY", "*")
        );
        let function = match self.invokable(uri, &source) {
            Ok(function) => function,
            Err(reason) => {
                tracing::info!(api = %api_id, %reason, "a REST API may not invoke its function");
                return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error");
            }
        };
        let mut payload = event_v1(
            parts,
            path,
            resource_path,
            stage_name,
            &parameters,
            &body,
            api_id,
        );
        if let Some(fields) = payload.as_object_mut() {
            fields.remove("version");
        }
        let variables = &stage["variables"];
        payload["stageVariables"] = if variables.as_object().is_some_and(|v| !v.is_empty()) {
            variables.clone()
        } else {
            Value::Null
        };
        let context = &mut payload["requestContext"];
        context["resourceId"] = resource["id"].clone();
        context["path"] = format!("/{stage_name}{path}").into();
        context["requestId"] = request_id.into();
        context["accountId"] = self.apis.account.clone().into();
        if let Some(key) = key {
            context["identity"]["apiKey"] = key["value"].clone();
            context["identity"]["apiKeyId"] = key["id"].clone();
        }
        let timeout =
            Duration::from_millis(integration["timeoutInMillis"].as_u64().unwrap_or(29_000));
        let invoked = tokio::time::timeout(
            timeout,
            self.invoker.invoke(InvokeRequest {
                function,
                request_id: request_id.to_owned(),
                payload: Bytes::from(payload.to_string()),
                client_context: None,
                tail: false,
            }),
        )
        .await;
        match invoked {
            Err(_) => message(StatusCode::GATEWAY_TIMEOUT, "Endpoint request timed out"),
            Ok(Ok(outcome)) if outcome.function_error.is_none() => {
                let shaped = serde_json::from_slice::<Value>(&outcome.payload)
                    .is_ok_and(|v| v.get("statusCode").is_some());
                if shaped {
                    super::with_multi_value_headers(answer(&outcome.payload), &outcome.payload)
                } else {
                    message(StatusCode::BAD_GATEWAY, "Internal server error")
                }
            }
            Ok(Ok(outcome)) => {
                tracing::info!(api = %api_id, error = %String::from_utf8_lossy(&outcome.payload), "a REST API's function failed");
                message(StatusCode::BAD_GATEWAY, "Internal server error")
            }
            Ok(Err(err)) => {
                tracing::info!(api = %api_id, error = %err.message, "a REST API's function was not invoked");
                message(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
            }
        }
    }

    /// What becomes of a request to a method that requires an API key: admitted with
    /// the key it carries (its `x-api-key`) if that is enabled, in a usage plan for
    /// this API's stage, and within that plan's throttle.
    async fn keyed(&self, api_id: &str, stage: &str, parts: &http::request::Parts) -> Keyed {
        let Some(value) = parts
            .headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
        else {
            return Keyed::Refused;
        };
        let apis = self.apis.clone();
        let (api_id, stage) = (api_id.to_owned(), stage.to_owned());
        let found = tokio::task::spawn_blocking(move || {
            let key = apis.api_key_by_value(&value).ok()??;
            if key["enabled"] != true {
                return None;
            }
            let id = key["id"].as_str()?.to_owned();
            let plan = apis.usage_plans().ok()?.into_iter().find(|plan| {
                let holds = plan["keys"]
                    .as_array()
                    .is_some_and(|keys| keys.iter().any(|k| k == id.as_str()));
                let serves = plan["apiStages"].as_array().is_some_and(|s| {
                    s.iter()
                        .any(|s| s["apiId"] == api_id && s["stage"] == stage)
                });
                holds && serves
            })?;
            Some((key, plan))
        })
        .await;
        let Ok(Some((key, plan))) = found else {
            return Keyed::Refused;
        };
        let bucket = format!(
            "plan/{}/{}",
            plan["id"].as_str().unwrap_or_default(),
            key["id"].as_str().unwrap_or_default()
        );
        let throttle = &plan["throttle"];
        if self.admits(
            bucket,
            throttle["rateLimit"].as_f64(),
            throttle["burstLimit"].as_f64(),
        ) {
            Keyed::Admitted(key)
        } else {
            Keyed::Throttled
        }
    }
}

/// A `MOCK` integration's answer: the status its request template names (200
/// otherwise), and that status's integration response (else the default one): its
/// static header values (`'...'`) and its template's text.
fn mock(integration: &Value) -> Response {
    let asked = integration["requestTemplates"]
        .as_object()
        .and_then(|templates| templates.values().next())
        .and_then(Value::as_str)
        .and_then(|template| serde_json::from_str::<Value>(template).ok())
        .and_then(|template| template["statusCode"].as_u64())
        .unwrap_or(200);
    let responses = integration["integrationResponses"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let chosen = responses.get(&asked.to_string()).or_else(|| {
        responses
            .values()
            .find(|r| r["selectionPattern"].as_str().is_none_or(str::is_empty))
    });
    let Some(chosen) = chosen else {
        return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error");
    };
    let status = chosen["statusCode"]
        .as_str()
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let text = chosen["responseTemplates"]
        .as_object()
        .and_then(|templates| templates.values().next())
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in chosen["responseParameters"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let literal = value
            .as_str()
            .and_then(|v| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')));
        let (Some(name), Some(literal)) = (name.strip_prefix("method.response.header."), literal)
        else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::try_from(name),
            HeaderValue::from_str(literal),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resources_are_matched_literal_first_with_back_off() {
        let any = json!({ "ANY": { "httpMethod": "ANY" } });
        let get = json!({ "GET": { "httpMethod": "GET" } });
        let resources = vec![
            json!({ "id": "r", "path": "/", "resourceMethods": get }),
            json!({ "id": "i", "parentId": "r", "pathPart": "items", "path": "/items", "resourceMethods": get }),
            json!({ "id": "n", "parentId": "i", "pathPart": "{id}", "path": "/items/{id}", "resourceMethods": get }),
            json!({ "id": "s", "parentId": "i", "pathPart": "special", "path": "/items/special" }),
            json!({ "id": "p", "parentId": "r", "pathPart": "{proxy+}", "path": "/{proxy+}", "resourceMethods": any }),
        ];
        let path = |method: &str, path: &str| {
            resource_for(&resources, method, path)
                .map(|(r, _, p)| (r["path"].as_str().unwrap().to_owned(), p))
        };
        assert_eq!(path("GET", "/").unwrap().0, "/");
        let (found, parameters) = path("GET", "/items/7").unwrap();
        assert_eq!(
            (found.as_str(), parameters["id"].as_str()),
            ("/items/{id}", "7")
        );
        // `special` has no methods: the variable sibling takes it.
        assert_eq!(path("GET", "/items/special").unwrap().0, "/items/{id}");
        // No POST on `/items`: the greedy resource takes it, with the whole path.
        let (found, parameters) = path("POST", "/items").unwrap();
        assert_eq!(
            (found.as_str(), parameters["proxy"].as_str()),
            ("/{proxy+}", "items")
        );
        assert_eq!(path("DELETE", "/a/b/c").unwrap().1["proxy"], "a/b/c");
        assert!(path("POST", "/").is_none());
    }

    #[test]
    fn a_mock_answers_from_its_integration_response() {
        let integration = json!({
            "type": "MOCK",
            "requestTemplates": { "application/json": "{\"statusCode\": 200}" },
            "integrationResponses": { "200": {
                "statusCode": "200",
                "responseParameters": {
                    "method.response.header.Access-Control-Allow-Origin": "'*'",
                    "method.response.header.X-From": "integration.response.header.X",
                },
                "responseTemplates": { "application/json": "{}" },
            }},
        });
        let response = mock(&integration);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["access-control-allow-origin"], "*");
        assert!(!response.headers().contains_key("x-from"));
    }
}
