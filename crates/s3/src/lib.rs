//! S3: buckets and objects ([`store`]) behind the rest-xml API ([`api`]), with
//! request and response bodies streamed, never buffered whole.

pub mod api;
pub mod notifications;
pub mod principals;
pub mod store;

pub use api::S3Api;
pub use notifications::EventTarget;
pub use principals::Objects;
pub use store::Store;
