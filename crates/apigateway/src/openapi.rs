//! OpenAPI (3) and Swagger (2) definitions of REST APIs, as `ImportRestApi` and
//! `PutRestApi` read them: paths become resources, operations methods, and each
//! `x-amazon-apigateway-integration` the method's integration.

use serde_json::{Map, Value, json};

use nimbus_edge::AwsError;

use crate::bad_request;
use crate::rest::{self, RestApi};

/// The operations of an OpenAPI path item, by the method each becomes.
const OPENAPI_METHODS: &[(&str, &str)] = &[
    ("get", "GET"),
    ("post", "POST"),
    ("put", "PUT"),
    ("patch", "PATCH"),
    ("delete", "DELETE"),
    ("head", "HEAD"),
    ("options", "OPTIONS"),
    ("x-amazon-apigateway-any-method", "ANY"),
];

/// What an OpenAPI (3) or Swagger (2) definition in JSON declares of a REST API:
/// its name and description, and each path's methods with their
/// `x-amazon-apigateway-integration`, as `ImportRestApi` reads them.
pub struct Definition {
    pub name: String,
    pub api: Value,
    pub paths: Vec<(String, Vec<Declared>)>,
}

/// One method a definition declares.
pub struct Declared {
    pub method: String,
    /// Its `PutMethod` input.
    pub put: Value,
    /// Its integration's `PutIntegration` input, if it has one.
    pub integration: Option<Value>,
}

pub fn definition(body: &[u8]) -> Result<Definition, AwsError> {
    let doc: Value = serde_json::from_slice(body).map_err(|err| {
        bad_request(format!(
            "Invalid OpenAPI input: this nimbus imports definitions in JSON ({err})"
        ))
    })?;
    if doc["swagger"] != "2.0" && !doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")) {
        return Err(bad_request(
            "Invalid OpenAPI input: expected \"swagger\": \"2.0\" or \"openapi\": \"3.x\"",
        ));
    }
    let name = doc["info"]["title"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad_request("Invalid OpenAPI input: info.title names the API"))?
        .to_owned();
    let mut api = json!({ "name": name });
    for (field, from) in [
        ("description", &doc["info"]["description"]),
        ("version", &doc["info"]["version"]),
        (
            "binaryMediaTypes",
            &doc["x-amazon-apigateway-binary-media-types"],
        ),
        ("apiKeySource", &doc["x-amazon-apigateway-api-key-source"]),
    ] {
        if !from.is_null() {
            api[field] = from.clone();
        }
    }
    // Security schemes: an API key in the `x-api-key` header, or SigV4.
    let schemes = match &doc["securityDefinitions"] {
        Value::Object(_) => &doc["securityDefinitions"],
        _ => &doc["components"]["securitySchemes"],
    };
    let kind_of = |name: &str| {
        let scheme = &schemes[name];
        if scheme["x-amazon-apigateway-authtype"] == "awsSigv4" {
            "AWS_IAM"
        } else if scheme["type"] == "apiKey" && scheme["in"] == "header" {
            "API_KEY"
        } else {
            "OTHER"
        }
    };
    let mut paths = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        if !path.starts_with('/') {
            return Err(bad_request(format!(
                "Invalid OpenAPI input: path {path} does not begin with /"
            )));
        }
        let mut methods = Vec::new();
        for (key, method) in OPENAPI_METHODS {
            let operation = &item[*key];
            if !operation.is_object() {
                continue;
            }
            let security: Vec<&str> = operation["security"]
                .as_array()
                .or(doc["security"].as_array())
                .into_iter()
                .flatten()
                .filter_map(Value::as_object)
                .flat_map(|requirement| requirement.keys().map(|k| kind_of(k)))
                .collect();
            if security.contains(&"OTHER") {
                return Err(bad_request(format!(
                    "Invalid OpenAPI input: {method} {path} uses a security scheme this nimbus does not check (it checks API keys and SigV4)"
                )));
            }
            let mut put = json!({
                "authorizationType": if security.contains(&"AWS_IAM") { "AWS_IAM" } else { "NONE" },
                "apiKeyRequired": security.contains(&"API_KEY"),
            });
            if let Some(id) = operation["operationId"].as_str() {
                put["operationName"] = id.into();
            }
            let integration = operation["x-amazon-apigateway-integration"]
                .as_object()
                .map(|found| openapi_integration(&Value::Object(found.clone())));
            methods.push(Declared {
                method: (*method).to_owned(),
                put,
                integration,
            });
        }
        paths.push((path.clone(), methods));
    }
    Ok(Definition { name, api, paths })
}

/// An `x-amazon-apigateway-integration` as `PutIntegration` takes it.
fn openapi_integration(found: &Value) -> Value {
    let mut input = json!({
        "type": found["type"].as_str().unwrap_or_default().to_ascii_uppercase(),
    });
    for field in [
        "httpMethod",
        "uri",
        "passthroughBehavior",
        "requestTemplates",
        "requestParameters",
        "timeoutInMillis",
        "contentHandling",
    ] {
        if !found[field].is_null() {
            input[field] = found[field].clone();
        }
    }
    let mut responses = Map::new();
    for (pattern, response) in found["responses"].as_object().into_iter().flatten() {
        let status = response["statusCode"].as_str().unwrap_or("200").to_owned();
        let mut made = json!({
            "statusCode": status,
            "responseParameters": response["responseParameters"].as_object().cloned().unwrap_or_default(),
            "responseTemplates": response["responseTemplates"].as_object().cloned().unwrap_or_default(),
        });
        if pattern != "default" {
            made["selectionPattern"] = pattern.as_str().into();
        }
        responses.insert(status, made);
    }
    if !responses.is_empty() {
        input["integrationResponses"] = responses.into();
    }
    input
}

impl RestApi {
    /// Builds the resources and methods a definition declares: `overwrite` replaces
    /// every resource but the root, else the definition's methods are merged in.
    pub fn apply(&mut self, definition: &Definition, overwrite: bool) -> Result<(), AwsError> {
        let root = self
            .resources
            .iter()
            .find(|r| r["parentId"].is_null())
            .cloned()
            .ok_or_else(|| bad_request("The REST API has no root resource"))?;
        if overwrite {
            let mut fresh = root.clone();
            if let Some(fields) = fresh.as_object_mut() {
                fields.remove("resourceMethods");
            }
            self.resources = vec![fresh];
        }
        let root_id = root["id"].as_str().unwrap_or_default().to_owned();
        for (path, methods) in &definition.paths {
            let mut at = root_id.clone();
            for part in path.split('/').filter(|p| !p.is_empty()) {
                let existing = self
                    .resources
                    .iter()
                    .find(|r| r["parentId"] == at.as_str() && r["pathPart"] == part)
                    .and_then(|r| r["id"].as_str().map(str::to_owned));
                at = match existing {
                    Some(id) => id,
                    None => self.create_resource(&at, part)?["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                };
            }
            for Declared {
                method,
                put,
                integration,
            } in methods
            {
                if let Some(methods) = self.resource(&at)?["resourceMethods"].as_object_mut() {
                    methods.remove(method);
                }
                self.put_method(&at, method, put)?;
                if let Some(input) = integration {
                    let made = rest::integration(&at, input)
                        .map_err(|err| bad_request(format!("{method} {path}: {}", err.message)))?;
                    self.method(&at, method)?["methodIntegration"] = made;
                }
            }
        }
        Ok(())
    }
}
