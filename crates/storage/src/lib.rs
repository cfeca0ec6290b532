//! Where nimbus keeps its state: a metadata store for records and a content-addressed
//! blob store for bytes. Both sit behind traits so the embedded backends (SQLite, the
//! local filesystem) and the network ones (PostgreSQL, any S3-compatible store) are
//! interchangeable.
//! Files nimbus replaces in place go through [`write_atomic`].

pub mod blob;
pub mod digest;
pub mod file;
pub mod metadata;
pub mod postgres;
pub mod remote;
pub mod s3;

pub use blob::{Blob, BlobError, BlobInfo, BlobRead, BlobStore, BlobWriter, Digest, FsBlobStore};
pub use digest::{Algorithm, DigestError, OciDigest};
pub use file::{sync_dir, write_atomic};
pub use metadata::{Expect, MetadataStore, Record, SqliteStore, StoreError, WriteBatch};
pub use postgres::PgStore;
pub use remote::backends_degraded;
pub use s3::{S3BlobStore, S3Keys, S3Location};
