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
        max_body: MIB,
    };
    pub const IAM: ServiceDescriptor = ServiceDescriptor {
        name: "iam",
        signing_name: "iam",
        protocol: Protocol::Query,
        target_prefix: None,
        xml_namespace: Some("https://iam.amazonaws.com/doc/2010-05-08/"),
        max_body: MIB,
    };
    pub const LAMBDA: ServiceDescriptor = ServiceDescriptor {
        name: "lambda",
        signing_name: "lambda",
        protocol: Protocol::RestJson,
        target_prefix: None,
        xml_namespace: None,
        // A 50 MB zip upload, base64-encoded inside JSON.
        max_body: 70 * MIB,
    };
    pub const S3: ServiceDescriptor = ServiceDescriptor {
        name: "s3",
        signing_name: "s3",
        protocol: Protocol::RestXml,
        target_prefix: None,
        xml_namespace: None,
        max_body: 5 * 1024 * MIB,
    };
    pub const ECR: ServiceDescriptor = ServiceDescriptor {
        name: "ecr",
        signing_name: "ecr",
        protocol: Protocol::Json11,
        target_prefix: Some("AmazonEC2ContainerRegistry_V20150921"),
        xml_namespace: None,
        max_body: 10 * MIB,
    };
    pub const ECS: ServiceDescriptor = ServiceDescriptor {
        name: "ecs",
        signing_name: "ecs",
        protocol: Protocol::Json11,
        target_prefix: Some("AmazonEC2ContainerServiceV20141113"),
        xml_namespace: None,
        max_body: 10 * MIB,
    };
    pub const LOGS: ServiceDescriptor = ServiceDescriptor {
        name: "logs",
        signing_name: "logs",
        protocol: Protocol::Json11,
        target_prefix: Some("Logs_20140328"),
        xml_namespace: None,
        // PutLogEvents batches are at most 1 MiB.
        max_body: 2 * MIB,
    };
    pub const SCHEDULER: ServiceDescriptor = ServiceDescriptor {
        name: "scheduler",
        signing_name: "scheduler",
        protocol: Protocol::RestJson,
        target_prefix: None,
        xml_namespace: None,
        max_body: MIB,
    };

    pub const ALL: &[&ServiceDescriptor] =
        &[&STS, &IAM, &LAMBDA, &S3, &ECR, &ECS, &LOGS, &SCHEDULER];

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
        self.authorizer
            .authorize(&self.caller, self.source_ip, access)
            .map_err(|message| {
                let code = match self.protocol {
                    Protocol::RestXml | Protocol::Query => "AccessDenied",
                    Protocol::RestJson | Protocol::Json11 => "AccessDeniedException",
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

/// A parsed operation; its name labels metrics and logs.
pub trait Operation: Send {
    fn name(&self) -> &'static str;
}

/// One operation a service answers, as the docs list it: its name and, for the
/// protocols that route by path, its method and path template.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OperationDoc {
    pub name: String,
    pub route: Option<String>,
}

impl OperationDoc {
    /// Operations routed by name alone (json-1.1's target, query's `Action`).
    pub fn named(names: &[&str]) -> Vec<Self> {
        names
            .iter()
            .map(|name| Self {
                name: (*name).to_owned(),
                route: None,
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
/// it gets the request head and the checked body, and answers with a body of its
/// own, streamed too.
pub trait StreamingService: Send + Sync + 'static {
    fn descriptor(&self) -> &'static ServiceDescriptor;

    /// Every operation the service routes to, from the table it routes with.
    fn operations(&self) -> Vec<OperationDoc>;

    /// Returns the operation's name (for metrics) and its outcome.
    fn handle(
        &self,
        ctx: RequestContext,
        parts: http::request::Parts,
        body: StreamBody,
    ) -> impl Future<Output = StreamOutcome> + Send;
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
        Box::pin(self.handle(ctx, parts, body))
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
                    (Some(name), self.handle(ctx, operation).await)
                }
                Err(err) => (None, Err(err)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::catalog;

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
