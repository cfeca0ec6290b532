//! Identity services: STS now; IAM users, roles and policies join here.

pub mod sts;

pub use sts::Sts;
