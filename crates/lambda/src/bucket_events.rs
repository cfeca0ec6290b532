//! Bucket notifications' way into Lambda: S3 asks whether a function's resource
//! policy lets it deliver a bucket's events, and queues each event as an
//! asynchronous invoke (durable, retried, at least once).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use crate::async_queue::AsyncQueue;
use crate::functions::Functions;
use crate::names::FunctionRef;

pub struct BucketEvents {
    functions: Arc<Functions>,
    queue: Arc<AsyncQueue>,
}

impl BucketEvents {
    pub fn new(functions: Arc<Functions>, queue: Arc<AsyncQueue>) -> Self {
        Self { functions, queue }
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
        match self.functions.service_may_invoke(
            &function.name,
            "s3.amazonaws.com",
            &source,
            account,
        ) {
            Ok(true) => None,
            Ok(false) => Some(format!(
                "the function's resource policy does not let s3.amazonaws.com invoke it for {source}"
            )),
            Err(err) => Some(err.message),
        }
    }

    fn deliver(
        &self,
        function_arn: String,
        event: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            let function = self.function(&function_arn)?;
            let request_id = uuid::Uuid::new_v4().to_string();
            self.queue
                .enqueue(function, &request_id, Bytes::from(event))
                .await
                .map_err(|err| err.message)
        })
    }
}
