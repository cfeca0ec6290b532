//! How a service plugs into the edge: it parses a request into its own typed
//! operation, then handles the operation knowing nothing of HTTP routing, signing or
//! error shaping.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use nimbus_auth::authz::{Access, Authorizer};
use nimbus_auth::{Caller, PathStyle};

use crate::authorization::{Authorization, Check, conforms};
use crate::protocol::{AwsError, Protocol};

/// What the edge knows about a service before any request reaches it.
#[derive(Debug)]
pub struct ServiceDescriptor {
    /// The name in health reports and metrics.
    pub name: &'static str,
    /// The service in SigV4 credential scopes, which routes signed requests.
    pub signing_name: &'static str,
    pub protocol: Protocol,
    /// The `X-Amz-Target` prefix of json-1.1 services, which routes unsigned requests.
    pub target_prefix: Option<&'static str>,
    /// The namespace of query-protocol XML.
    pub xml_namespace: Option<&'static str>,
    /// Bodies larger than this are refused before they are read.
    pub max_body: usize,
    /// Whether form-encoded query-protocol requests are served too (SQS, whose
    /// older SDKs and CLIs still send them).
    pub also_query: bool,
}

impl ServiceDescriptor {
    pub fn path_style(&self) -> PathStyle {
        if self.protocol == Protocol::RestXml {
            PathStyle::AsSent
        } else {
            PathStyle::Normalized
        }
    }
}

const MIB: usize = 1 << 20;

/// Every service nimbus routes, built or not: requests to one that is not running
/// still get an error in the shape their client expects.
pub mod catalog {
    use super::*;

    pub const STS: ServiceDescriptor = ServiceDescriptor {
        name: "sts",
        signing_name: "sts",
        protocol: Protocol::Query,
        target_prefix: None,
        xml_namespace: Some("https://sts.amazonaws.com/doc/2011-06-15/"),
        also_query: false,
        max_body: MIB,
    };
    pub const IAM: ServiceDescriptor = ServiceDescriptor {
        name: "iam",
        signing_name: "iam",
        protocol: Protocol::Query,
        target_prefix: None,
        xml_namespace: Some("https://iam.amazonaws.com/doc/2010-05-08/"),
        also_query: false,
        max_body: MIB,
    };
    pub const LAMBDA: ServiceDescriptor = ServiceDescriptor {
        name: "lambda",
        signing_name: "lambda",
        protocol: Protocol::RestJson,
        target_prefix: None,
        xml_namespace: None,
        // A 50 MB zip upload, base64-encoded inside JSON.
        also_query: false,
        max_body: 70 * MIB,
    };
    pub const S3: ServiceDescriptor = ServiceDescriptor {
        name: "s3",
        signing_name: "s3",
        protocol: Protocol::RestXml,
        target_prefix: None,
        xml_namespace: None,
        also_query: false,
        max_body: 5 * 1024 * MIB,
    };
    pub const ECR: ServiceDescriptor = ServiceDescriptor {
        name: "ecr",
        signing_name: "ecr",
        protocol: Protocol::Json11,
        target_prefix: Some("AmazonEC2ContainerRegistry_V20150921"),
        xml_namespace: None,
        also_query: false,
        max_body: 10 * MIB,
    };
    pub const ECS: ServiceDescriptor = ServiceDescriptor {
        name: "ecs",
        signing_name: "ecs",
        protocol: Protocol::Json11,
        target_prefix: Some("AmazonEC2ContainerServiceV20141113"),
        xml_namespace: None,
        also_query: false,
        max_body: 10 * MIB,
    };
    pub const LOGS: ServiceDescriptor = ServiceDescriptor {
        name: "logs",
        signing_name: "logs",
        protocol: Protocol::Json11,
        target_prefix: Some("Logs_20140328"),
        xml_namespace: None,
        // PutLogEvents batches are at most 1 MiB.
        also_query: false,
        max_body: 2 * MIB,
    };
    pub const SCHEDULER: ServiceDescriptor = ServiceDescriptor {
        name: "scheduler",
        signing_name: "scheduler",
        protocol: Protocol::RestJson,
        target_prefix: None,
        xml_namespace: None,
        also_query: false,
        max_body: MIB,
    };

    pub const SQS: ServiceDescriptor = ServiceDescriptor {
        name: "sqs",
        signing_name: "sqs",
        protocol: Protocol::Json10,
        target_prefix: Some("AmazonSQS"),
        xml_namespace: Some("http://queue.amazonaws.com/doc/2012-11-05/"),
        also_query: true,
        // Ten entries of 256 KiB, encoded.
        max_body: 4 * MIB,
    };

    pub const SNS: ServiceDescriptor = ServiceDescriptor {
        name: "sns",
        signing_name: "sns",
        protocol: Protocol::Query,
        target_prefix: None,
        xml_namespace: Some("http://sns.amazonaws.com/doc/2010-03-31/"),
        also_query: false,
        max_body: 4 * MIB,
    };

    pub const EVENTS: ServiceDescriptor = ServiceDescriptor {
        name: "events",
        signing_name: "events",
        protocol: Protocol::Json11,
        target_prefix: Some("AWSEvents"),
        xml_namespace: None,
        also_query: false,
        // PutEvents' entries are at most 256 KiB together.
        max_body: MIB,
    };

    pub const APIGATEWAY: ServiceDescriptor = ServiceDescriptor {
        name: "apigateway",
        signing_name: "apigateway",
        protocol: Protocol::RestJson,
        target_prefix: None,
        xml_namespace: None,
        also_query: false,
        max_body: MIB,
    };

    pub const ALL: &[&ServiceDescriptor] = &[
        &STS,
        &IAM,
        &LAMBDA,
        &S3,
        &ECR,
        &ECS,
        &LOGS,
        &SCHEDULER,
        &SQS,
        &SNS,
        &EVENTS,
        &APIGATEWAY,
    ];

    pub fn by_signing_name(name: &str) -> Option<&'static ServiceDescriptor> {
        ALL.iter().copied().find(|d| d.signing_name == name)
    }

    /// The json-1.1 service whose operations an `X-Amz-Target` value names.
    pub fn by_target(target: &str) -> Option<&'static ServiceDescriptor> {
        let prefix = target.split_once('.')?.0;
        ALL.iter()
            .copied()
            .find(|d| d.target_prefix == Some(prefix))
    }
}

/// Facts about the request and its caller that every handler may need.
#[derive(Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub caller: Caller,
    pub region: Arc<str>,
    pub account_id: Arc<str>,
    /// The edge as the client addressed it (`http://<Host>`), for links it can follow.
    pub endpoint: String,
    /// Where the request's connection came from (`aws:SourceIp`).
    pub source_ip: Option<std::net::IpAddr>,
    /// Whether the request came over TLS (`aws:SecureTransport`).
    pub secure: bool,
    pub protocol: Protocol,
    pub authorizer: Arc<dyn Authorizer>,
}

impl std::fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestContext")
            .field("request_id", &self.request_id)
            .field("caller", &self.caller)
            .field("source_ip", &self.source_ip)
            .finish_non_exhaustive()
    }
}

impl RequestContext {
    /// Whether the caller may perform `access`; AWS's AccessDenied error in the
    /// request's protocol when not.
    pub fn authorize(&self, access: &Access) -> Result<(), AwsError> {
        let secure;
        let access = if self.secure {
            secure = access
                .clone()
                .with_context("aws:SecureTransport", vec!["true".into()]);
            &secure
        } else {
            access
        };
        self.authorizer
            .authorize(&self.caller, self.source_ip, access)
            .map_err(|message| {
                let code = match self.protocol {
                    Protocol::RestXml | Protocol::Query => "AccessDenied",
                    Protocol::RestJson | Protocol::Json11 => "AccessDeniedException",
                    // Query compatible: the query protocol's code.
                    Protocol::Json10 => "AccessDenied",
                };
                AwsError::new(http::StatusCode::FORBIDDEN, code, message)
            })
    }

    /// The ARN of a resource of this account and region: `arn:aws:<service>:<region>:<account>:<rest>`.
    pub fn arn(&self, service: &str, rest: &str) -> String {
        format!(
            "arn:aws:{service}:{}:{}:{rest}",
            self.region, self.account_id
        )
    }
}

/// An authenticated request with its whole (bounded) body.
#[derive(Debug)]
pub struct ServiceRequest {
    pub parts: http::request::Parts,
    pub body: Bytes,
}

/// A parsed operation; its name labels metrics and logs, its authorization is the
/// declaration of the table entry it was routed by.
pub trait Operation: Send + Sync {
    fn name(&self) -> &'static str;

    fn authorization(&self) -> Authorization;
}

/// A service's own operation type with its name and the declaration of the route
/// that parsed it.
#[derive(Debug)]
pub struct Routed<Op> {
    pub operation: Op,
    pub name: &'static str,
    pub authorization: Authorization,
}

impl<Op: Send + Sync> Operation for Routed<Op> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn authorization(&self) -> Authorization {
        self.authorization
    }
}

/// An operation of a service that routes by name and works on its JSON input.
#[derive(Debug)]
pub struct NamedCall {
    pub name: &'static str,
    pub authorization: Authorization,
    pub input: serde_json::Value,
}

impl Operation for NamedCall {
    fn name(&self) -> &'static str {
        self.name
    }

    fn authorization(&self) -> Authorization {
        self.authorization
    }
}

/// An entry of a table that routes by operation name alone (json-1.1's target,
/// query's `Action`).
#[derive(Debug, Clone, Copy)]
pub struct NamedOperation {
    pub name: &'static str,
    pub authorization: Authorization,
}

/// A table entry: `name`, guarded as `authorization` declares.
pub const fn named(name: &'static str, authorization: Authorization) -> NamedOperation {
    NamedOperation {
        name,
        authorization,
    }
}

/// One operation a service answers, as the docs list it: its name, for the
/// protocols that route by path its method and path template, and what IAM must
/// allow for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OperationDoc {
    pub name: String,
    pub route: Option<String>,
    pub authorization: Authorization,
}

impl OperationDoc {
    /// Operations routed by name alone.
    pub fn named(table: &[NamedOperation]) -> Vec<Self> {
        table
            .iter()
            .map(|entry| Self {
                name: entry.name.to_owned(),
                route: None,
                authorization: entry.authorization,
            })
            .collect()
    }
}

/// A service as the edge drives it: `parse` turns the request into a typed,
/// validated operation, `handle` carries it out.
pub trait Service: Send + Sync + 'static {
    type Operation: Operation;

    fn descriptor(&self) -> &'static ServiceDescriptor;

    /// Every operation `parse` routes to, from the table it routes with.
    fn operations(&self) -> Vec<OperationDoc>;

    fn parse(&self, req: &ServiceRequest) -> Result<Self::Operation, AwsError>;

    /// The concrete checks of a parsed operation: its declared action on the
    /// resources the request names (with their policies and condition keys), and its
    /// declared dependent actions. The edge authorizes each before `handle`; it asks
    /// only for operations whose declaration names an action.
    fn access(
        &self,
        ctx: &RequestContext,
        operation: &Self::Operation,
    ) -> impl Future<Output = Result<Vec<Check>, AwsError>> + Send;

    fn handle(
        &self,
        ctx: &RequestContext,
        operation: Self::Operation,
    ) -> impl Future<Output = Result<Response<Bytes>, AwsError>> + Send;
}

/// A request body as a streaming service reads it: the payload, checked against
/// what the request's signature promised as it passes.
pub struct StreamBody {
    body: crate::IdleBody,
    check: Option<nimbus_auth::PayloadCheck>,
    pending: Vec<u8>,
}

impl StreamBody {
    pub(crate) fn new(body: axum::body::Body, check: nimbus_auth::PayloadCheck) -> Self {
        Self {
            body: crate::IdleBody::new(body),
            check: Some(check),
            pending: Vec::new(),
        }
    }

    /// The next piece of payload, `None` at the end. A piece may be empty.
    pub async fn next(&mut self, protocol: crate::Protocol) -> Option<Result<Bytes, AwsError>> {
        use http_body_util::BodyExt;
        let data = match self.body.frame().await? {
            Ok(frame) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => return Some(Ok(Bytes::new())),
            },
            Err(crate::BodyError::Idle(_)) => {
                return Some(Err(AwsError::new(
                    http::StatusCode::BAD_REQUEST,
                    "RequestTimeout",
                    "Your socket connection to the server was not read from or written to within the timeout period.",
                )));
            }
            Err(err) => {
                return Some(Err(AwsError::new(
                    http::StatusCode::BAD_REQUEST,
                    "IncompleteBody",
                    err.to_string(),
                )));
            }
        };
        let check = self.check.as_mut()?;
        self.pending.clear();
        Some(
            check
                .feed(&data, &mut self.pending)
                .map(|()| Bytes::from(std::mem::take(&mut self.pending)))
                .map_err(|err| AwsError::from_auth(&err, protocol)),
        )
    }

    /// Ends the body once every piece was read: the payload must be whole and as
    /// signed. Returns the trailers an aws-chunked body carried.
    pub fn finish(&mut self, protocol: crate::Protocol) -> Result<Vec<(String, String)>, AwsError> {
        let check = self
            .check
            .take()
            .ok_or_else(|| AwsError::bad_request(protocol, "the body was already finished"))?;
        check
            .finish()
            .map_err(|err| AwsError::from_auth(&err, protocol))
    }

    /// The whole payload of a small body (an XML document), refusing more than
    /// `limit` bytes.
    pub async fn collect(
        &mut self,
        protocol: crate::Protocol,
        limit: usize,
    ) -> Result<Vec<u8>, AwsError> {
        let mut payload = Vec::new();
        while let Some(piece) = self.next(protocol).await {
            payload.extend_from_slice(&piece?);
            if payload.len() > limit {
                return Err(AwsError::too_large(protocol, limit));
            }
        }
        self.finish(protocol)?;
        Ok(payload)
    }
}

/// A service whose request bodies are streamed rather than buffered (S3 objects):
/// it parses the request head, and handles the operation with the checked body,
/// answering with a body of its own, streamed too.
pub trait StreamingService: Send + Sync + 'static {
    type Operation: Operation;

    fn descriptor(&self) -> &'static ServiceDescriptor;

    /// Every operation the service routes to, from the table it routes with.
    fn operations(&self) -> Vec<OperationDoc>;

    fn parse(&self, parts: &http::request::Parts) -> Result<Self::Operation, AwsError>;

    /// As [`Service::access`].
    fn access(
        &self,
        ctx: &RequestContext,
        operation: &Self::Operation,
    ) -> impl Future<Output = Result<Vec<Check>, AwsError>> + Send;

    fn handle(
        &self,
        ctx: RequestContext,
        operation: Self::Operation,
        parts: http::request::Parts,
        body: StreamBody,
    ) -> impl Future<Output = Result<Response<axum::body::Body>, AwsError>> + Send;
}

/// A streaming service's operation name (when the request parsed) and outcome.
pub type StreamOutcome = (
    Option<&'static str>,
    Result<Response<axum::body::Body>, AwsError>,
);

pub(crate) trait DynStreaming: Send + Sync {
    fn operations(&self) -> Vec<OperationDoc>;

    fn call(
        &self,
        ctx: RequestContext,
        parts: http::request::Parts,
        body: StreamBody,
    ) -> BoxFuture<'_, StreamOutcome>;
}

impl<S: StreamingService> DynStreaming for S {
    fn operations(&self) -> Vec<OperationDoc> {
        StreamingService::operations(self)
    }

    fn call(
        &self,
        ctx: RequestContext,
        parts: http::request::Parts,
        body: StreamBody,
    ) -> BoxFuture<'_, StreamOutcome> {
        Box::pin(async move {
            let operation = match self.parse(&parts) {
                Ok(operation) => operation,
                Err(err) => return (None, Err(err)),
            };
            let name = operation.name();
            let allowed = enforce(&ctx, operation.authorization(), || {
                self.access(&ctx, &operation)
            })
            .await;
            let outcome = match allowed {
                Ok(()) => self.handle(ctx, operation, parts, body).await,
                Err(err) => Err(err),
            };
            (Some(name), outcome)
        })
    }
}

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The operation name (when the request parsed) and the outcome.
pub(crate) type Outcome = (Option<&'static str>, Result<Response<Bytes>, AwsError>);

/// [`Service`] with its operation type erased, so the edge can hold many.
pub(crate) trait DynService: Send + Sync {
    fn operations(&self) -> Vec<OperationDoc>;

    fn call<'a>(&'a self, ctx: &'a RequestContext, req: ServiceRequest) -> BoxFuture<'a, Outcome>;
}

impl<S: Service> DynService for S {
    fn operations(&self) -> Vec<OperationDoc> {
        Service::operations(self)
    }

    fn call<'a>(&'a self, ctx: &'a RequestContext, req: ServiceRequest) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match self.parse(&req) {
                Ok(operation) => {
                    let name = operation.name();
                    let allowed = enforce(ctx, operation.authorization(), || {
                        self.access(ctx, &operation)
                    })
                    .await;
                    let outcome = match allowed {
                        Ok(()) => self.handle(ctx, operation).await,
                        Err(err) => Err(err),
                    };
                    (Some(name), outcome)
                }
                Err(err) => (None, Err(err)),
            }
        })
    }
}

/// The one enforcement point: an operation's declared authorization, filled from
/// the request by the service (`access`), judged by the deployment's authorizer.
async fn enforce<F>(
    ctx: &RequestContext,
    declared: Authorization,
    access: impl FnOnce() -> F,
) -> Result<(), AwsError>
where
    F: Future<Output = Result<Vec<Check>, AwsError>>,
{
    match declared.action {
        // The account's root user is allowed everything: no resource needs resolving.
        Some(action) if !declared.checked_in_operation && !ctx.caller.principal.is_root() => {
            let checks = access().await?;
            authorize_checks(ctx, action, &declared, &checks)
        }
        _ => Ok(()),
    }
}

/// Authorizes each check, after making sure they are what the table declares.
fn authorize_checks(
    ctx: &RequestContext,
    action: &'static str,
    declared: &Authorization,
    checks: &[Check],
) -> Result<(), AwsError> {
    conforms(declared, checks).map_err(|problem| {
        tracing::error!(%problem, "an operation's checks differ from its declaration");
        AwsError::internal(ctx.protocol)
    })?;
    for check in checks {
        ctx.authorize(&Access {
            action: check.dependent.unwrap_or(action),
            resource: &check.resource,
            resource_policy: check.resource_policy.as_deref(),
            context: check.context.clone(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Allows only `allowed` (action, resource) pairs, recording every question.
    struct Recording {
        allowed: Vec<(&'static str, &'static str)>,
        asked: Mutex<Vec<(String, String)>>,
    }

    impl Authorizer for Recording {
        fn authorize(
            &self,
            _: &Caller,
            _: Option<std::net::IpAddr>,
            access: &Access,
        ) -> Result<(), String> {
            self.asked
                .lock()
                .unwrap()
                .push((access.action.to_owned(), access.resource.to_owned()));
            match self.allowed.contains(&(access.action, access.resource)) {
                true => Ok(()),
                false => Err("denied".to_owned()),
            }
        }
    }

    struct Op(Authorization);

    impl Operation for Op {
        fn name(&self) -> &'static str {
            "Get"
        }

        fn authorization(&self) -> Authorization {
            self.0
        }
    }

    /// A service whose one operation is declared `declared` and checks `checks`.
    struct Fake {
        declared: Authorization,
        checks: Vec<Check>,
    }

    impl Service for Fake {
        type Operation = Op;

        fn descriptor(&self) -> &'static ServiceDescriptor {
            &catalog::LOGS
        }

        fn operations(&self) -> Vec<OperationDoc> {
            Vec::new()
        }

        fn parse(&self, _: &ServiceRequest) -> Result<Op, AwsError> {
            Ok(Op(self.declared))
        }

        async fn access(&self, _: &RequestContext, _: &Op) -> Result<Vec<Check>, AwsError> {
            Ok(self.checks.clone())
        }

        async fn handle(&self, _: &RequestContext, _: Op) -> Result<Response<Bytes>, AwsError> {
            Ok(Response::new(Bytes::from_static(b"ran")))
        }
    }

    const GET: Authorization = Authorization::new("logs:Get", "arn:thing/${Name}");

    async fn call(
        service: Fake,
        kind: nimbus_auth::PrincipalKind,
        allowed: Vec<(&'static str, &'static str)>,
    ) -> (Result<Response<Bytes>, AwsError>, Vec<(String, String)>) {
        let authorizer = Arc::new(Recording {
            allowed,
            asked: Mutex::new(Vec::new()),
        });
        let ctx = RequestContext {
            request_id: "r".to_owned(),
            caller: Caller {
                principal: nimbus_auth::Principal {
                    account_id: "000000000000".to_owned(),
                    kind,
                },
                access_key_id: "AKIA".to_owned(),
                is_session: false,
            },
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            endpoint: "http://localhost".to_owned(),
            source_ip: None,
            secure: false,
            protocol: Protocol::Json11,
            authorizer: authorizer.clone(),
        };
        let (parts, ()) = http::Request::new(()).into_parts();
        let request = ServiceRequest {
            parts,
            body: Bytes::new(),
        };
        let (_, outcome) = DynService::call(&service, &ctx, request).await;
        let asked = authorizer.asked.lock().unwrap().clone();
        (outcome, asked)
    }

    fn user() -> nimbus_auth::PrincipalKind {
        nimbus_auth::PrincipalKind::User {
            name: "u".to_owned(),
            id: "AIDA".to_owned(),
            path: "/".to_owned(),
        }
    }

    #[tokio::test]
    async fn the_declared_action_is_authorized_before_the_operation_runs() {
        let fake = || Fake {
            declared: GET.dependent(&["iam:PassRole"]),
            checks: vec![
                Check::on("arn:thing/a"),
                Check::dependent("iam:PassRole", "arn:role/r"),
            ],
        };
        let (outcome, asked) = call(fake(), user(), vec![("logs:Get", "arn:thing/a")]).await;
        assert_eq!(outcome.unwrap_err().code, "AccessDeniedException");
        assert_eq!(
            asked,
            [
                ("logs:Get".to_owned(), "arn:thing/a".to_owned()),
                ("iam:PassRole".to_owned(), "arn:role/r".to_owned())
            ]
        );
        let both = vec![("logs:Get", "arn:thing/a"), ("iam:PassRole", "arn:role/r")];
        let (outcome, _) = call(fake(), user(), both).await;
        assert_eq!(outcome.unwrap().body().as_ref(), b"ran");
        // The root user is not asked about.
        let (outcome, asked) = call(fake(), nimbus_auth::PrincipalKind::Root, vec![]).await;
        assert!(outcome.is_ok() && asked.is_empty());
    }

    #[tokio::test]
    async fn checks_that_stray_from_the_declaration_are_refused() {
        let stray = Fake {
            declared: GET,
            checks: vec![
                Check::on("arn:thing/a"),
                Check::dependent("s3:GetObject", "arn:object"),
            ],
        };
        let everything = vec![("logs:Get", "arn:thing/a"), ("s3:GetObject", "arn:object")];
        let (outcome, asked) = call(stray, user(), everything).await;
        assert_eq!(
            outcome.unwrap_err().status,
            http::StatusCode::INTERNAL_SERVER_ERROR
        );
        assert!(asked.is_empty());
        let unguarded = Fake {
            declared: Authorization::none("nothing to guard"),
            checks: vec![],
        };
        let (outcome, asked) = call(unguarded, user(), vec![]).await;
        assert!(outcome.is_ok() && asked.is_empty());
    }

    #[test]
    fn catalog_routes_by_signing_name_and_target() {
        assert_eq!(catalog::by_signing_name("sts").unwrap().name, "sts");
        assert!(catalog::by_signing_name("nope").is_none());
        assert_eq!(
            catalog::by_target("Logs_20140328.PutLogEvents")
                .unwrap()
                .name,
            "logs"
        );
        assert!(catalog::by_target("Logs_20140328").is_none());
        assert!(catalog::by_target("Other.Op").is_none());
    }
}
