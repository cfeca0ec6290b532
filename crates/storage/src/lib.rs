//! Where nimbus keeps its state: a metadata store for records and a content-addressed
//! blob store for bytes. Both sit behind traits so the embedded backends (SQLite, the
//! local filesystem) can be swapped for PostgreSQL and S3 when nimbus scales out.
//! Files nimbus replaces in place go through [`write_atomic`].

pub mod blob;
pub mod digest;
pub mod file;
pub mod metadata;

pub use blob::{Blob, BlobError, BlobInfo, BlobRead, BlobStore, BlobWriter, Digest, FsBlobStore};
pub use digest::{Algorithm, DigestError, OciDigest};
pub use file::{sync_dir, write_atomic};
pub use metadata::{Expect, MetadataStore, Record, SqliteStore, StoreError, WriteBatch};
