//! Lambda: the function model (configuration, code, versions, aliases) and its API.

pub mod api;
pub mod async_queue;
pub mod code;
pub mod code_links;
pub mod environment;
pub mod error;
pub mod functions;
pub mod interpreters;
pub mod invoke;
pub mod layers;
pub mod model;
pub mod names;
pub mod runtime_api;
pub mod runtimes;
pub mod store;

pub use api::LambdaApi;
pub use async_queue::AsyncQueue;
pub use code_links::CodeLinks;
pub use functions::{Functions, LambdaSettings};
pub use invoke::{Invoker, InvokerSettings};
