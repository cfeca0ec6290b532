//! The json-1.1 protocol (ECR, CloudWatch Logs): the operation in `X-Amz-Target`
//! (`<prefix>.<Operation>`), a JSON object body, a JSON answer.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::Value;

use super::AwsError;
use crate::service::{NamedOperation, ServiceRequest};

/// The operation an `X-Amz-Target` header names.
pub fn operation(req: &ServiceRequest) -> &str {
    req.parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|target| target.split_once('.'))
        .map(|(_, operation)| operation)
        .unwrap_or_default()
}

fn serialization(message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::BAD_REQUEST, "SerializationException", message)
}

/// The request's JSON object; an empty body reads as `{}`.
pub fn input(req: &ServiceRequest) -> Result<Value, AwsError> {
    if req.body.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    let input: Value = serde_json::from_slice(&req.body)
        .map_err(|err| serialization(format!("Could not parse request body into json: {err}")))?;
    if !input.is_object() {
        return Err(serialization("The request body must be a JSON object"));
    }
    Ok(input)
}

pub fn response(output: &Value) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(output.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    response
}

/// The operation (an entry of `operations`, else the unknown-operation error) and
/// input of a request.
pub fn call(
    req: &ServiceRequest,
    operations: &'static [NamedOperation],
) -> Result<(&'static NamedOperation, Value), AwsError> {
    let operation = operation(req);
    let entry = operations
        .iter()
        .find(|entry| entry.name == operation)
        .ok_or_else(|| AwsError::unknown_operation(super::Protocol::Json11, operation))?;
    Ok((entry, input(req)?))
}
