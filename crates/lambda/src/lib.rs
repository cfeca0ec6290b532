//! Lambda: the function model (configuration, code, versions, aliases) and its API.

pub mod api;
pub mod code;
pub mod error;
pub mod functions;
pub mod model;
pub mod names;
pub mod runtimes;
pub mod store;

pub use api::LambdaApi;
pub use functions::{Functions, LambdaSettings};
