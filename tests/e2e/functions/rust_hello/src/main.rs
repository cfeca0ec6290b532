use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayV2httpRequest};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

/// What AWS's own event types read of an API Gateway event: a REST API's or an HTTP
/// API's payload format 1.0 (`ApiGatewayProxyRequest`), or format 2.0.
fn api_event(payload: Value) -> Result<Value, Error> {
    let seen = if payload["version"] == "2.0" {
        let request: ApiGatewayV2httpRequest = serde_json::from_value(payload)?;
        json!({
            "format": "2.0",
            "route": request.route_key,
            "path": request.raw_path,
            "parameters": request.path_parameters,
            "stage": request.request_context.stage,
        })
    } else {
        let request: ApiGatewayProxyRequest = serde_json::from_value(payload)?;
        json!({
            "format": "1.0",
            "method": request.http_method.as_str(),
            "resource": request.resource,
            "path": request.path,
            "parameters": request.path_parameters,
            "stage": request.request_context.stage,
        })
    };
    Ok(json!({ "statusCode": 200, "body": seen.to_string() }))
}

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, context) = event.into_parts();
    if payload.get("requestContext").is_some() {
        return api_event(payload);
    }
    if payload.get("fail").is_some() {
        return Err("asked to fail".into());
    }
    Ok(json!({
        "echo": payload,
        "request_id": context.request_id,
        "function": context.env_config.function_name,
        "memory": context.env_config.memory,
    }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handler)).await
}
