//! The edge: one HTTP listener in front of every nimbus service. It routes each
//! request by its SigV4 credential scope (or `X-Amz-Target`), bounds and reads the
//! body, authenticates the caller, hands a typed request to the service, and renders
//! errors in the AWS protocol the client speaks.

pub mod authorization;
pub mod body;
pub mod forward;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod service;

pub use authorization::{Authorization, Check};
pub use body::{BODY_IDLE_TIMEOUT, BodyError, IdleBody, read_whole};
pub use protocol::{AwsError, Protocol};
pub use server::{Edge, EdgeBuilder, Forwarder, NodeList, Peer, SecureTransport, Tls, serve};
pub use service::{
    NamedCall, NamedOperation, Operation, OperationDoc, RequestContext, Routed, Service,
    ServiceDescriptor, ServiceRequest, StreamBody, StreamingService, catalog, named,
};
