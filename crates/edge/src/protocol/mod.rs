//! The AWS wire protocols nimbus speaks, and the one place errors are shaped for
//! each of them.

pub mod json11;
pub mod query;
pub mod range;
pub mod rest_json;
pub mod xml;

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use nimbus_auth::AuthError;

/// An AWS wire protocol, as named in botocore's service models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Lambda, Scheduler: JSON bodies, operations chosen by method and path.
    RestJson,
    /// ECS, ECR, CloudWatch Logs: JSON bodies, operation in `X-Amz-Target`.
    Json11,
    /// SQS: json-1.0, the same as json-1.1 but for its media type, and "query
    /// compatible": errors also carry the query protocol's code in a header.
    Json10,
    /// S3: XML bodies, operations chosen by method, path and query.
    RestXml,
    /// IAM, STS: form-encoded `Action=` requests, XML responses.
    Query,
}

/// An error a client receives in its protocol's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub message: String,
    /// More members of the error shape (Lambda's `Reason`, say), in JSON protocols.
    pub fields: Vec<(&'static str, String)>,
}

impl AwsError {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            fields: Vec::new(),
        }
    }

    pub fn with_field(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.fields.push((name, value.into()));
        self
    }

    /// A failure on nimbus's side; the detail goes to the log, not to the client.
    pub fn internal(protocol: Protocol) -> Self {
        let code = match protocol {
            Protocol::RestXml => "InternalError",
            Protocol::Query => "InternalFailure",
            Protocol::RestJson | Protocol::Json11 | Protocol::Json10 => "ServiceException",
        };
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            code,
            "We encountered an internal error. Please try again.",
        )
    }

    /// A storage backend cannot be reached: retryable, unlike an internal error.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "A storage backend is unreachable. Please try again.",
        )
    }

    pub fn unknown_operation(protocol: Protocol, operation: &str) -> Self {
        match protocol {
            Protocol::Query => Self::new(
                StatusCode::BAD_REQUEST,
                "InvalidAction",
                format!("Could not find operation {operation}"),
            ),
            Protocol::RestXml => Self::new(
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
                format!("The operation {operation} is not implemented"),
            ),
            Protocol::RestJson | Protocol::Json11 | Protocol::Json10 => Self::new(
                StatusCode::BAD_REQUEST,
                "UnknownOperationException",
                format!("Unknown operation {operation}"),
            ),
        }
    }

    /// A service nimbus knows the shape of but does not run (yet). The code is not one
    /// SDKs treat as transient, so clients fail at once instead of retrying.
    pub fn service_not_running(service: &str) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            format!("The {service} service is not available on this nimbus server"),
        )
    }

    pub fn unknown_service(signing_name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "UnknownService",
            format!(
                "No service named '{signing_name}' is served here; nimbus routes requests by the service in their SigV4 credential scope"
            ),
        )
    }

    pub fn too_large(protocol: Protocol, limit: usize) -> Self {
        let code = match protocol {
            Protocol::RestJson | Protocol::Json11 | Protocol::Json10 => {
                "RequestEntityTooLargeException"
            }
            Protocol::RestXml | Protocol::Query => "RequestEntityTooLarge",
        };
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            code,
            format!("Request body exceeds the maximum allowed size of {limit} bytes"),
        )
    }

    pub fn bad_request(protocol: Protocol, message: impl Into<String>) -> Self {
        let code = match protocol {
            Protocol::RestJson | Protocol::Json11 | Protocol::Json10 => "SerializationException",
            Protocol::RestXml | Protocol::Query => "MalformedInput",
        };
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// The shape each protocol's services give an authentication failure.
    pub fn from_auth(err: &AuthError, protocol: Protocol) -> Self {
        use AuthError::*;
        use Protocol::*;
        let (status, code) = match (err, protocol) {
            (Missing, Query) => (403, "MissingAuthenticationToken"),
            (Missing, RestJson | Json11 | Json10) => (403, "MissingAuthenticationTokenException"),
            (Missing, RestXml) => (403, "AccessDenied"),
            (Incomplete(_), Query) => (400, "IncompleteSignature"),
            (Incomplete(_), RestJson | Json11 | Json10) => (400, "IncompleteSignatureException"),
            (Incomplete(_) | WrongRegion(_), RestXml) => (400, "AuthorizationHeaderMalformed"),
            (UnknownAccessKey | InvalidToken, Query) => (403, "InvalidClientTokenId"),
            (UnknownAccessKey | InvalidToken, RestJson | Json11 | Json10) => {
                (403, "UnrecognizedClientException")
            }
            (UnknownAccessKey, RestXml) => (403, "InvalidAccessKeyId"),
            (InvalidToken, RestXml) => (400, "InvalidToken"),
            (SignatureMismatch | WrongRegion(_), Query) => (403, "SignatureDoesNotMatch"),
            (SignatureMismatch | WrongRegion(_), RestJson | Json11 | Json10) => {
                (403, "InvalidSignatureException")
            }
            (SignatureMismatch, RestXml) => (403, "SignatureDoesNotMatch"),
            (ContentSha256Mismatch, RestXml) => (400, "XAmzContentSHA256Mismatch"),
            (ContentSha256Mismatch, Query) => (400, "SignatureDoesNotMatch"),
            (ContentSha256Mismatch, RestJson | Json11 | Json10) => {
                (400, "InvalidSignatureException")
            }
            (TimeTooSkewed { .. }, RestXml) => (403, "RequestTimeTooSkewed"),
            (TimeTooSkewed { .. } | PresignExpired, Query) => (403, "RequestExpired"),
            (TimeTooSkewed { .. } | PresignExpired, RestJson | Json11 | Json10) => {
                (403, "InvalidSignatureException")
            }
            (PresignExpired, RestXml) => (403, "AccessDenied"),
            (ExpiredToken, Query | RestXml) => (403, "ExpiredToken"),
            (ExpiredToken, RestJson | Json11 | Json10) => (403, "ExpiredTokenException"),
            (UnsupportedPayload(_), _) => (400, "InvalidRequest"),
            (Unavailable, _) => (503, "ServiceUnavailable"),
        };
        let message = match (err, protocol) {
            (UnknownAccessKey, RestXml) => {
                "The AWS Access Key Id you provided does not exist in our records.".to_owned()
            }
            _ => err.to_string(),
        };
        Self::new(
            StatusCode::from_u16(status).expect("valid status"),
            code,
            message,
        )
    }
}

impl Protocol {
    /// The protocol as AWS's service models name it.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::RestJson => "rest-json",
            Protocol::Json11 | Protocol::Json10 => "json",
            Protocol::RestXml => "rest-xml",
            Protocol::Query => "query",
        }
    }

    /// The response header that carries the request id.
    pub fn request_id_header(self) -> &'static str {
        match self {
            Protocol::RestXml => "x-amz-request-id",
            _ => "x-amzn-requestid",
        }
    }

    /// Renders `err` as this protocol's error response.
    pub fn error_response(
        self,
        err: &AwsError,
        request_id: &str,
        xml_namespace: Option<&str>,
    ) -> Response<Bytes> {
        // Whatever failed while a backend is unreachable most likely failed for that,
        // and the client is told to retry rather than that nimbus broke.
        let unavailable;
        let err = if err.status == StatusCode::INTERNAL_SERVER_ERROR
            && nimbus_storage::backends_degraded()
        {
            unavailable = AwsError::unavailable();
            &unavailable
        } else {
            err
        };
        let sender_fault = err.status.is_client_error();
        let (content_type, body) = match self {
            Protocol::Json11 | Protocol::Json10 => {
                let mut body = serde_json::json!({ "__type": err.code, "message": err.message });
                for (name, value) in &err.fields {
                    body[*name] = value.as_str().into();
                }
                let media = if self == Protocol::Json10 {
                    "application/x-amz-json-1.0"
                } else {
                    "application/x-amz-json-1.1"
                };
                (media, body.to_string())
            }
            Protocol::RestJson => {
                let mut body = serde_json::json!({
                    "Type": if sender_fault { "User" } else { "Service" },
                    "message": err.message,
                });
                for (name, value) in &err.fields {
                    body[*name] = value.as_str().into();
                }
                ("application/json", body.to_string())
            }
            Protocol::Query => {
                let mut xml = xml::XmlWriter::new();
                xml.open_with_namespace("ErrorResponse", xml_namespace);
                xml.open("Error");
                xml.leaf("Type", if sender_fault { "Sender" } else { "Receiver" });
                xml.leaf("Code", &err.code);
                xml.leaf("Message", &err.message);
                xml.close("Error");
                xml.leaf("RequestId", request_id);
                xml.close("ErrorResponse");
                ("text/xml", xml.finish())
            }
            Protocol::RestXml => {
                let mut xml = xml::XmlWriter::new();
                xml.open("Error");
                xml.leaf("Code", &err.code);
                xml.leaf("Message", &err.message);
                xml.leaf("RequestId", request_id);
                xml.close("Error");
                ("application/xml", xml.finish())
            }
        };
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = err.status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if self == Protocol::RestJson
            && let Ok(code) = HeaderValue::from_str(&err.code)
        {
            headers.insert("x-amzn-errortype", code);
        }
        // The code a query-protocol client would have got, which query-compatible
        // SDKs report.
        if self == Protocol::Json10
            && let Ok(code) = HeaderValue::from_str(&format!(
                "{};{}",
                err.code,
                if sender_fault { "Sender" } else { "Receiver" }
            ))
        {
            headers.insert("x-amzn-query-error", code);
        }
        response
    }

    /// A best guess at the protocol of a request no service claimed, so even an
    /// unroutable request gets an error its client can parse.
    pub fn guess(parts: &http::request::Parts) -> Protocol {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if parts.headers.contains_key("x-amz-target") {
            Protocol::Json11
        } else if content_type.starts_with("application/x-www-form-urlencoded")
            || parts
                .uri
                .query()
                .is_some_and(|q| q.split('&').any(|p| p.starts_with("Action=")))
        {
            Protocol::Query
        } else if content_type.starts_with("application/json") {
            Protocol::RestJson
        } else {
            Protocol::RestXml
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(response: &Response<Bytes>) -> String {
        String::from_utf8(response.body().to_vec()).unwrap()
    }

    #[test]
    fn each_protocol_has_its_error_shape() {
        let err = AwsError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            "Function not found: a<b",
        );

        let json = Protocol::Json11.error_response(&err, "rid", None);
        assert_eq!(json.status(), 404);
        let value: serde_json::Value = serde_json::from_str(&body(&json)).unwrap();
        assert_eq!(value["__type"], "ResourceNotFoundException");
        assert_eq!(value["message"], "Function not found: a<b");

        let rest_json = Protocol::RestJson.error_response(&err, "rid", None);
        assert_eq!(
            rest_json.headers()["x-amzn-errortype"],
            "ResourceNotFoundException"
        );
        assert!(body(&rest_json).contains("\"Type\":\"User\""));

        let query = Protocol::Query.error_response(
            &err,
            "rid",
            Some("https://sts.amazonaws.com/doc/2011-06-15/"),
        );
        assert_eq!(
            body(&query),
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
             <Code>ResourceNotFoundException</Code><Message>Function not found: a&lt;b</Message></Error>\
             <RequestId>rid</RequestId></ErrorResponse>"
        );

        let rest_xml = Protocol::RestXml.error_response(&err, "rid", None);
        assert!(body(&rest_xml).starts_with("<Error><Code>ResourceNotFoundException</Code>"));
    }

    #[test]
    fn auth_errors_use_each_protocols_codes() {
        let code = |err: AuthError, protocol| AwsError::from_auth(&err, protocol).code.into_owned();
        assert_eq!(
            code(AuthError::UnknownAccessKey, Protocol::Query),
            "InvalidClientTokenId"
        );
        assert_eq!(
            code(AuthError::UnknownAccessKey, Protocol::RestXml),
            "InvalidAccessKeyId"
        );
        assert_eq!(
            code(AuthError::UnknownAccessKey, Protocol::Json11),
            "UnrecognizedClientException"
        );
        assert_eq!(
            code(AuthError::SignatureMismatch, Protocol::Query),
            "SignatureDoesNotMatch"
        );
        assert_eq!(
            code(AuthError::SignatureMismatch, Protocol::RestJson),
            "InvalidSignatureException"
        );
        assert_eq!(
            code(AuthError::Missing, Protocol::Query),
            "MissingAuthenticationToken"
        );
        assert_eq!(
            code(AuthError::PresignExpired, Protocol::Query),
            "RequestExpired"
        );
        let skew = AuthError::TimeTooSkewed {
            request_time: "20150830T123600Z".into(),
        };
        assert_eq!(code(skew, Protocol::RestXml), "RequestTimeTooSkewed");
        // A key nobody could look up is the store's outage, which SDKs retry, not the
        // caller's mistake.
        let unavailable = AwsError::from_auth(&AuthError::Unavailable, Protocol::Json11);
        assert_eq!(
            (unavailable.status.as_u16(), &*unavailable.code),
            (503, "ServiceUnavailable")
        );
    }
}
