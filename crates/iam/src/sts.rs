//! STS over the query protocol: who am I, and temporary credentials.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use nimbus_auth::policy::{Decision, PrincipalRef};
use nimbus_auth::{Credential, CredentialStore};
use nimbus_edge::protocol::query::{self, QueryRequest};
use nimbus_edge::{
    Authorization, AwsError, Check, NamedOperation, Operation, OperationDoc, Protocol,
    RequestContext, Service, ServiceDescriptor, ServiceRequest, catalog, named,
};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::authorizer::principal_arns;
use crate::{IamAuthorizer, RoleSessions};

/// GetSessionToken's bounds and default, in seconds.
const SESSION_MIN_SECS: i64 = 900;
const SESSION_MAX_SECS: i64 = 129_600;
const SESSION_DEFAULT_SECS: i64 = 43_200;
/// Root sessions are capped at an hour, as on AWS.
const ROOT_SESSION_MAX_SECS: i64 = 3_600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StsOperation {
    GetCallerIdentity,
    GetSessionToken {
        duration_secs: i64,
    },
    AssumeRole {
        role_arn: String,
        session_name: String,
        duration_secs: Option<i64>,
        external_id: Option<String>,
    },
}

impl Operation for StsOperation {
    fn name(&self) -> &'static str {
        self.entry().name
    }

    fn authorization(&self) -> Authorization {
        self.entry().authorization
    }
}

impl StsOperation {
    fn entry(&self) -> &'static NamedOperation {
        let index = match self {
            StsOperation::AssumeRole { .. } => 0,
            StsOperation::GetCallerIdentity => 1,
            StsOperation::GetSessionToken { .. } => 2,
        };
        &OPERATIONS[index]
    }
}

pub struct Sts {
    credentials: Arc<CredentialStore>,
    sessions: Arc<RoleSessions>,
    authorizer: Arc<IamAuthorizer>,
}

impl Sts {
    pub fn new(
        credentials: Arc<CredentialStore>,
        sessions: Arc<RoleSessions>,
        authorizer: Arc<IamAuthorizer>,
    ) -> Self {
        Self {
            credentials,
            sessions,
            authorizer,
        }
    }
}

/// Role sessions a session may start (role chaining) last at most an hour.
const CHAINED_MAX_SECS: i64 = 3_600;

fn access_denied(message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::FORBIDDEN, "AccessDenied", message)
}

fn duration_param(request: &QueryRequest) -> Result<Option<i64>, AwsError> {
    request
        .param("DurationSeconds")
        .map(|text| {
            text.parse::<i64>().map_err(|_| {
                validation(format!(
                    "Value '{text}' at 'durationSeconds' is not a valid integer"
                ))
            })
        })
        .transpose()
}

fn is_session_name(name: &str) -> bool {
    (2..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

fn validation(message: String) -> AwsError {
    AwsError::new(StatusCode::BAD_REQUEST, "ValidationError", message)
}

/// The actions `parse_operation` routes.
const OPERATIONS: &[NamedOperation] = &[
    named(
        "AssumeRole",
        Authorization::new(
            "sts:AssumeRole",
            "arn:${Partition}:iam::${Account}:role/${RoleNameWithPath}",
        )
        .checked_in_operation(),
    ),
    named(
        "GetCallerIdentity",
        Authorization::none("any signed-in caller may ask who it is, as on AWS"),
    ),
    named(
        "GetSessionToken",
        Authorization::none(
            "any long-term credentials may ask for a session of their own, as on AWS",
        ),
    ),
];

fn parse_operation(request: &QueryRequest) -> Result<StsOperation, AwsError> {
    match request.action.as_str() {
        "GetCallerIdentity" => Ok(StsOperation::GetCallerIdentity),
        "AssumeRole" => {
            let role_arn = request.param("RoleArn").unwrap_or_default().to_owned();
            if role_arn.len() < 20 {
                return Err(validation(format!(
                    "1 validation error detected: Value '{role_arn}' at 'roleArn' failed to satisfy constraint: Member must have length greater than or equal to 20"
                )));
            }
            let session_name = request
                .param("RoleSessionName")
                .unwrap_or_default()
                .to_owned();
            if !is_session_name(&session_name) {
                return Err(validation(format!(
                    "1 validation error detected: Value '{session_name}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]* and have length between 2 and 64"
                )));
            }
            if request.param("Policy").is_some()
                || request.param("PolicyArns.member.1.arn").is_some()
            {
                return Err(validation(
                    "Session policies are not supported by nimbus: attach the policies to the role"
                        .to_owned(),
                ));
            }
            let duration_secs = duration_param(request)?;
            if duration_secs.is_some_and(|secs| !(SESSION_MIN_SECS..=43_200).contains(&secs)) {
                return Err(validation(format!(
                    "1 validation error detected: Value '{}' at 'durationSeconds' failed to satisfy constraint: Member must have value between {SESSION_MIN_SECS} and 43200",
                    duration_secs.unwrap_or_default()
                )));
            }
            Ok(StsOperation::AssumeRole {
                role_arn,
                session_name,
                duration_secs,
                external_id: request.param("ExternalId").map(str::to_owned),
            })
        }
        "GetSessionToken" => {
            let duration_secs = duration_param(request)?.unwrap_or(SESSION_DEFAULT_SECS);
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

    fn operations(&self) -> Vec<OperationDoc> {
        OperationDoc::named(OPERATIONS)
    }

    fn parse(&self, req: &ServiceRequest) -> Result<StsOperation, AwsError> {
        parse_operation(&QueryRequest::parse(req)?)
    }

    /// No STS operation is checked before it runs (see the table); were one, no
    /// check would conform to its declaration and the edge would refuse it.
    async fn access(&self, _: &RequestContext, _: &StsOperation) -> Result<Vec<Check>, AwsError> {
        Ok(Vec::new())
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
                Ok(query::response(name, namespace, &ctx.request_id, |xml| {
                    write_credentials(xml, &issued)
                }))
            }
            StsOperation::AssumeRole {
                role_arn,
                session_name,
                duration_secs,
                external_id,
            } => {
                let caller = ctx.caller.clone();
                let sessions = self.sessions.clone();
                let authorizer = self.authorizer.clone();
                let source_ip = ctx.source_ip;
                let issued = tokio::task::spawn_blocking(move || {
                    assume_role(
                        &sessions,
                        &authorizer,
                        &caller,
                        source_ip,
                        &role_arn,
                        &session_name,
                        duration_secs,
                        external_id,
                    )
                })
                .await
                .map_err(|_| AwsError::internal(Protocol::Query))??;
                Ok(query::response(name, namespace, &ctx.request_id, |xml| {
                    write_credentials(xml, &issued);
                    xml.open("AssumedRoleUser");
                    xml.leaf("AssumedRoleId", &issued.principal.user_id());
                    xml.leaf("Arn", &issued.principal.arn());
                    xml.close("AssumedRoleUser");
                }))
            }
        }
    }
}

fn write_credentials(xml: &mut nimbus_edge::protocol::xml::XmlWriter, issued: &Credential) {
    let expiration = OffsetDateTime::from_unix_timestamp(issued.expires_at.unwrap_or_default())
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_default();
    xml.open("Credentials");
    xml.leaf("AccessKeyId", &issued.access_key_id);
    xml.leaf("SecretAccessKey", &issued.secret_access_key);
    xml.leaf(
        "SessionToken",
        issued.session_token.as_deref().unwrap_or_default(),
    );
    xml.leaf("Expiration", &expiration);
    xml.close("Credentials");
}

/// AssumeRole's checks: the role's trust policy must let the caller in; when it
/// trusts the caller's account rather than naming the caller, the caller's own
/// policies must also allow `sts:AssumeRole` on the role.
#[allow(clippy::too_many_arguments)]
fn assume_role(
    sessions: &RoleSessions,
    authorizer: &IamAuthorizer,
    caller: &nimbus_auth::Caller,
    source_ip: Option<std::net::IpAddr>,
    role_arn: &str,
    session_name: &str,
    duration_secs: Option<i64>,
    external_id: Option<String>,
) -> Result<Arc<Credential>, AwsError> {
    use nimbus_auth::authz::{Access, Authorizer};
    let principal = &caller.principal;
    if principal.is_root() {
        return Err(access_denied("Roles may not be assumed by root accounts."));
    }
    let denied = || {
        access_denied(format!(
            "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
            principal.arn()
        ))
    };
    let (_, role) = sessions.store.role_by_arn(role_arn).map_err(|_| denied())?;
    let max_secs = if caller.is_session {
        CHAINED_MAX_SECS
    } else {
        role.max_session_secs
    };
    let duration_secs = duration_secs.unwrap_or(3_600);
    if duration_secs > max_secs {
        return Err(validation(format!(
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role ({max_secs} seconds)."
        )));
    }
    let arns = principal_arns(principal);
    let mut context = vec![(
        "aws:PrincipalArn".to_owned(),
        vec![arns.last().cloned().unwrap_or_default()],
    )];
    if let Some(external_id) = external_id {
        context.push(("sts:ExternalId".to_owned(), vec![external_id]));
    }
    let named = PrincipalRef {
        aws: &arns,
        account: "",
        service: None,
    };
    if sessions.trust(&role, &named, &context) != Decision::Allow {
        let by_account = PrincipalRef {
            aws: &arns,
            account: &principal.account_id,
            service: None,
        };
        if sessions.trust(&role, &by_account, &context) != Decision::Allow {
            return Err(denied());
        }
        authorizer
            .authorize(caller, source_ip, &Access::new("sts:AssumeRole", role_arn))
            .map_err(|_| denied())?;
    }
    sessions.issue(&role, session_name, Duration::seconds(duration_secs))
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
    fn every_listed_operation_is_routed() {
        for entry in OPERATIONS {
            let parsed = parse_operation(&request(&format!(
                "Action={}&RoleArn=arn:aws:iam::000000000000:role/r&RoleSessionName=session",
                entry.name
            )));
            assert_eq!(parsed.map(|op| op.name()).ok(), Some(entry.name));
        }
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
