//! Bucket notifications' way into Lambda: S3 asks whether a function's resource
//! policy lets it deliver a bucket's events, and commits each event's queue entry
//! (an asynchronous invoke: durable, retried, at least once) with the object change.

use std::sync::Arc;

use nimbus_auth::authz::{Access, Authorizer};

use crate::async_queue::AsyncQueue;
use crate::functions::Functions;
use crate::names::FunctionRef;

pub struct BucketEvents {
    functions: Arc<Functions>,
    queue: Arc<AsyncQueue>,
    authorizer: Arc<dyn Authorizer>,
}

impl BucketEvents {
    pub fn new(
        functions: Arc<Functions>,
        queue: Arc<AsyncQueue>,
        authorizer: Arc<dyn Authorizer>,
    ) -> Self {
        Self {
            functions,
            queue,
            authorizer,
        }
    }

    fn function(&self, arn: &str) -> Result<FunctionRef, String> {
        FunctionRef::parse(arn, &self.functions.region, &self.functions.account)
            .map_err(|err| err.message)
    }
}

impl nimbus_s3::EventTarget for BucketEvents {
    fn refuses(&self, function_arn: &str, bucket: &str, account: &str) -> Option<String> {
        let function = match self.function(function_arn) {
            Ok(function) => function,
            Err(reason) => return Some(reason),
        };
        let source = format!("arn:aws:s3:::{bucket}");
        let arn = self.functions.arn(&function.name, None);
        let policy = self.functions.policy_document(&function.name);
        let access = Access::new("lambda:InvokeFunction", &arn)
            .with_policy(policy.as_deref())
            .for_source(&source, account);
        self.authorizer
            .authorize_service("s3.amazonaws.com", &access)
            .err()
    }

    fn stage(
        &self,
        function_arn: &str,
        event: Vec<u8>,
    ) -> Result<Vec<nimbus_s3::notifications::Staged>, String> {
        let function = self.function(function_arn)?;
        let request_id = uuid::Uuid::new_v4().to_string();
        let (table, key, value) = self.queue.stage(function, &request_id, &event);
        Ok(vec![nimbus_s3::notifications::Staged { table, key, value }])
    }

    fn wake(&self) {
        self.queue.wake();
    }
}
