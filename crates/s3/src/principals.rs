//! Objects other services read and write on a principal's behalf (Lambda reading a
//! function's code as its caller, writing an invocation record as the function's
//! execution role): each access authorized as that principal, with the bucket's
//! policy, through the deployment's one authorizer, exactly as the same request
//! made through the API would be.

use std::sync::Arc;

use nimbus_auth::Caller;
use nimbus_auth::authz::{Access, Authorizer};
use nimbus_storage::Blob;

use crate::store::{ObjectRecord, S3Error, Store};

/// Why an access on a principal's behalf failed.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The authorizer's reason is kept for the log; S3 tells the caller only this.
    #[error("Access Denied")]
    AccessDenied(String),
    #[error(transparent)]
    S3(#[from] S3Error),
}

impl AccessError {
    /// S3's error code, as a service quoting it reports it.
    pub fn code(&self) -> &'static str {
        match self {
            AccessError::AccessDenied(_) => "AccessDenied",
            AccessError::S3(S3Error::NoSuchBucket(_)) => "NoSuchBucket",
            AccessError::S3(S3Error::NoSuchKey(_)) => "NoSuchKey",
            AccessError::S3(_) => "InternalError",
        }
    }

    /// What the acting service logs or records: the authorizer's whole reason for a
    /// denial (naming the principal and action), S3's message otherwise.
    pub fn detail(&self) -> String {
        match self {
            AccessError::AccessDenied(reason) => reason.clone(),
            other => other.to_string(),
        }
    }
}

/// The buckets, as another service reaches them: only as some principal.
pub struct Objects {
    store: Arc<Store>,
    authorizer: Arc<dyn Authorizer>,
}

impl Objects {
    pub fn new(store: Arc<Store>, authorizer: Arc<dyn Authorizer>) -> Self {
        Self { store, authorizer }
    }

    /// `action` on `bucket`/`key` for `caller`, with the bucket's policy.
    fn authorize(
        &self,
        caller: &Caller,
        action: &str,
        bucket: &str,
        key: &str,
    ) -> Result<(), AccessError> {
        let policy = self.store.bucket(bucket)?.policy;
        let resource = format!("arn:aws:s3:::{bucket}/{key}");
        let access = Access::new(action, &resource).with_policy(policy.as_deref());
        self.authorizer
            .authorize(caller, None, &access)
            .map_err(AccessError::AccessDenied)
    }

    /// GetObject as `caller`: the object's record and its bytes; blocks on the store.
    pub fn get_object_as(
        &self,
        caller: &Caller,
        bucket: &str,
        key: &str,
    ) -> Result<(ObjectRecord, Blob), AccessError> {
        self.authorize(caller, "s3:GetObject", bucket, key)?;
        let object = self.store.object(bucket, key)?;
        let blob = self.store.open(&object)?;
        Ok((object, blob))
    }

    /// PutObject of bytes in hand as `caller`; blocks on the store.
    pub fn put_object_as(
        &self,
        caller: &Caller,
        bucket: &str,
        key: &str,
        bytes: &[u8],
        content_type: &str,
    ) -> Result<(), AccessError> {
        self.authorize(caller, "s3:PutObject", bucket, key)?;
        self.store.put_bytes(bucket, key, bytes, content_type)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use nimbus_auth::Principal;
    use nimbus_storage::{FsBlobStore, SqliteStore};

    use super::*;
    use crate::store::BucketRecord;

    /// Allows exactly `s3:GetObject` on one object, and checks the bucket's policy
    /// reaches it.
    struct ReadOnly;

    impl Authorizer for ReadOnly {
        fn authorize(&self, _: &Caller, _: Option<IpAddr>, access: &Access) -> Result<(), String> {
            assert_eq!(access.resource_policy, Some("the bucket policy"));
            (access.action == "s3:GetObject" && access.resource == "arn:aws:s3:::b/code.zip")
                .then_some(())
                .ok_or_else(|| format!("not {}", access.action))
        }
    }

    #[test]
    fn each_access_is_the_principals_and_a_denied_one_touches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::new(
            Arc::new(SqliteStore::open(&dir.path().join("meta.db")).unwrap()),
            Arc::new(FsBlobStore::open(&dir.path().join("blobs")).unwrap()),
        ));
        store
            .create_bucket(BucketRecord {
                name: "b".into(),
                created_at: 0.0,
                notifications: Vec::new(),
                policy: Some("the bucket policy".into()),
            })
            .unwrap();
        store
            .put_bytes("b", "code.zip", b"zip", "application/zip")
            .unwrap();
        let objects = Objects::new(store.clone(), Arc::new(ReadOnly));
        let caller = Caller {
            principal: Principal::root("000000000000"),
            access_key_id: String::new(),
            is_session: false,
        };

        let (object, _) = objects.get_object_as(&caller, "b", "code.zip").unwrap();
        assert_eq!(object.size, 3);
        let denied = objects
            .put_object_as(&caller, "b", "record", b"{}", "application/json")
            .unwrap_err();
        assert_eq!(denied.code(), "AccessDenied");
        assert_eq!(denied.detail(), "not s3:PutObject");
        assert!(matches!(
            store.object("b", "record"),
            Err(S3Error::NoSuchKey(_))
        ));
        let Err(missing) = objects.get_object_as(&caller, "none", "k") else {
            panic!("a bucket that does not exist has no objects");
        };
        assert_eq!(missing.code(), "NoSuchBucket");
    }
}
