//! The engine: sandboxes that run untrusted code, behind a trait so the isolation
//! technology can change (plain processes now, OCI runtimes next) without the
//! services noticing. Nothing here knows about AWS.

pub mod sandbox;

pub use sandbox::{ProcessRuntime, Sandbox, SandboxError, SandboxRuntime, SandboxSpec};
