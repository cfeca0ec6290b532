//! Lambda: the function model (configuration, code, versions, aliases) and its API.

pub mod api;
pub mod async_queue;
pub mod bucket_events;
pub mod code;
pub mod code_links;
pub mod concurrency;
pub mod environment;
pub mod error;
pub mod event_invoke;
pub mod event_sources;
pub mod function_urls;
pub mod functions;
pub mod images;
pub mod interpreters;
pub mod invoke;
pub mod layers;
pub mod model;
pub mod names;
pub mod permissions;
pub mod runtime_api;
pub mod runtimes;
pub mod schedule_targets;
pub mod store;
pub mod warm;

pub use api::LambdaApi;
pub use async_queue::AsyncQueue;
pub use code_links::CodeLinks;
pub use functions::{Functions, LambdaSettings};
pub use invoke::{Invoker, InvokerSettings};

/// Unix milliseconds now, as log events and the event queue count time.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
