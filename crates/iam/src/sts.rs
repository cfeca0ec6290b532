//! STS over the query protocol: who am I, and temporary credentials.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use nimbus_auth::CredentialStore;
use nimbus_edge::protocol::query::{self, QueryRequest};
use nimbus_edge::{
    AwsError, Operation, Protocol, RequestContext, Service, ServiceDescriptor, ServiceRequest,
    catalog,
};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// GetSessionToken's bounds and default, in seconds.
const SESSION_MIN_SECS: i64 = 900;
const SESSION_MAX_SECS: i64 = 129_600;
const SESSION_DEFAULT_SECS: i64 = 43_200;
/// Root sessions are capped at an hour, as on AWS.
const ROOT_SESSION_MAX_SECS: i64 = 3_600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StsOperation {
    GetCallerIdentity,
    GetSessionToken { duration_secs: i64 },
}

impl Operation for StsOperation {
    fn name(&self) -> &'static str {
        match self {
            StsOperation::GetCallerIdentity => "GetCallerIdentity",
            StsOperation::GetSessionToken { .. } => "GetSessionToken",
        }
    }
}

pub struct Sts {
    credentials: Arc<CredentialStore>,
}

impl Sts {
    pub fn new(credentials: Arc<CredentialStore>) -> Self {
        Self { credentials }
    }
}

fn validation(message: String) -> AwsError {
    AwsError::new(StatusCode::BAD_REQUEST, "ValidationError", message)
}

fn parse_operation(request: &QueryRequest) -> Result<StsOperation, AwsError> {
    match request.action.as_str() {
        "GetCallerIdentity" => Ok(StsOperation::GetCallerIdentity),
        "GetSessionToken" => {
            let duration_secs = match request.param("DurationSeconds") {
                None => SESSION_DEFAULT_SECS,
                Some(text) => text.parse::<i64>().map_err(|_| {
                    validation(format!(
                        "Value '{text}' at 'durationSeconds' is not a valid integer"
                    ))
                })?,
            };
            if !(SESSION_MIN_SECS..=SESSION_MAX_SECS).contains(&duration_secs) {
                return Err(validation(format!(
                    "1 validation error detected: Value '{duration_secs}' at 'durationSeconds' failed to satisfy constraint: \
                     Member must have value between {SESSION_MIN_SECS} and {SESSION_MAX_SECS}"
                )));
            }
            Ok(StsOperation::GetSessionToken { duration_secs })
        }
        other => Err(AwsError::unknown_operation(Protocol::Query, other)),
    }
}

impl Service for Sts {
    type Operation = StsOperation;

    fn descriptor(&self) -> &'static ServiceDescriptor {
        &catalog::STS
    }

    fn parse(&self, req: &ServiceRequest) -> Result<StsOperation, AwsError> {
        parse_operation(&QueryRequest::parse(req)?)
    }

    async fn handle(
        &self,
        ctx: &RequestContext,
        operation: StsOperation,
    ) -> Result<Response<Bytes>, AwsError> {
        let namespace = catalog::STS.xml_namespace.expect("sts has a namespace");
        let name = operation.name();
        match operation {
            StsOperation::GetCallerIdentity => {
                let principal = &ctx.caller.principal;
                Ok(query::response(name, namespace, &ctx.request_id, |xml| {
                    xml.leaf("Arn", &principal.arn());
                    xml.leaf("UserId", &principal.user_id());
                    xml.leaf("Account", &principal.account_id);
                }))
            }
            StsOperation::GetSessionToken { duration_secs } => {
                if ctx.caller.is_session {
                    return Err(AwsError::new(
                        StatusCode::FORBIDDEN,
                        "AccessDenied",
                        "Cannot call GetSessionToken with session credentials",
                    ));
                }
                let principal = ctx.caller.principal.clone();
                let duration_secs = if principal.is_root() {
                    duration_secs.min(ROOT_SESSION_MAX_SECS)
                } else {
                    duration_secs
                };
                let credentials = self.credentials.clone();
                let now = OffsetDateTime::now_utc();
                let issued = tokio::task::spawn_blocking(move || {
                    credentials.issue_session(principal, Duration::seconds(duration_secs), now)
                })
                .await
                .map_err(|err| err.to_string())
                .and_then(|result| result.map_err(|err| err.to_string()))
                .map_err(|err| {
                    tracing::error!(error = %err, "issuing session credentials failed");
                    AwsError::internal(Protocol::Query)
                })?;
                let expiration =
                    OffsetDateTime::from_unix_timestamp(issued.expires_at.unwrap_or_default())
                        .ok()
                        .and_then(|at| at.format(&Rfc3339).ok())
                        .unwrap_or_default();
                Ok(query::response(name, namespace, &ctx.request_id, |xml| {
                    xml.open("Credentials");
                    xml.leaf("AccessKeyId", &issued.access_key_id);
                    xml.leaf("SecretAccessKey", &issued.secret_access_key);
                    xml.leaf(
                        "SessionToken",
                        issued.session_token.as_deref().unwrap_or_default(),
                    );
                    xml.leaf("Expiration", &expiration);
                    xml.close("Credentials");
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str) -> QueryRequest {
        let (parts, ()) = http::Request::builder()
            .method("POST")
            .uri("/")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(())
            .unwrap()
            .into_parts();
        QueryRequest::parse(&ServiceRequest {
            parts,
            body: Bytes::from(body.to_owned()),
        })
        .unwrap()
    }

    #[test]
    fn parses_operations_and_validates_durations() {
        assert_eq!(
            parse_operation(&request("Action=GetCallerIdentity&Version=2011-06-15")).unwrap(),
            StsOperation::GetCallerIdentity
        );
        assert_eq!(
            parse_operation(&request("Action=GetSessionToken")).unwrap(),
            StsOperation::GetSessionToken {
                duration_secs: 43_200
            }
        );
        assert_eq!(
            parse_operation(&request("Action=GetSessionToken&DurationSeconds=900")).unwrap(),
            StsOperation::GetSessionToken { duration_secs: 900 }
        );
        for bad in ["899", "129601", "ten"] {
            let err = parse_operation(&request(&format!(
                "Action=GetSessionToken&DurationSeconds={bad}"
            )))
            .unwrap_err();
            assert_eq!(err.code, "ValidationError", "{bad}");
        }
        let err = parse_operation(&request("Action=AssumeRoot")).unwrap_err();
        assert_eq!(err.code, "InvalidAction");
    }
}
