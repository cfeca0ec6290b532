//! Identity services: IAM (users, access keys, roles, policies) and STS, and the
//! authorizer that evaluates every request's identity and resource policies.

pub mod api;
pub mod authorizer;
pub mod managed;
pub mod sessions;
pub mod store;
pub mod sts;

pub use api::IamApi;
pub use authorizer::IamAuthorizer;
pub use sessions::RoleSessions;
pub use store::IamStore;
pub use sts::Sts;
