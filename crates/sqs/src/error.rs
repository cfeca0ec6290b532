//! SQS's errors. Each has the name of its shape in the JSON model (what `__type`
//! carries) and the code the query protocol used, which SDKs still match on: the
//! JSON protocol sends that code in `x-amzn-query-error` (SQS is "query compatible").

use http::StatusCode;
use nimbus_edge::AwsError;

/// An SQS error: (status, JSON shape name, query code).
fn sqs(status: StatusCode, shape: &'static str, code: &'static str, message: String) -> AwsError {
    AwsError::new(status, code, message).with_field("__type", format!("com.amazonaws.sqs#{shape}"))
}

pub fn no_queue() -> AwsError {
    sqs(
        StatusCode::BAD_REQUEST,
        "QueueDoesNotExist",
        "AWS.SimpleQueueService.NonExistentQueue",
        "The specified queue does not exist.".into(),
    )
}

pub fn queue_exists(attribute: &str) -> AwsError {
    sqs(
        StatusCode::BAD_REQUEST,
        "QueueNameExists",
        "QueueAlreadyExists",
        format!(
            "A queue already exists with the same name and a different value for attribute {attribute}"
        ),
    )
}

pub fn deleted_recently() -> AwsError {
    sqs(
        StatusCode::BAD_REQUEST,
        "QueueDeletedRecently",
        "AWS.SimpleQueueService.QueueDeletedRecently",
        "You must wait 60 seconds after deleting a queue before you can create another with the same name.".into(),
    )
}

pub fn purge_in_progress(queue: &str) -> AwsError {
    sqs(
        StatusCode::FORBIDDEN,
        "PurgeQueueInProgress",
        "AWS.SimpleQueueService.PurgeQueueInProgress",
        format!("Only one PurgeQueue operation on {queue} is allowed every 60 seconds."),
    )
}

pub fn invalid_receipt(message: impl Into<String>) -> AwsError {
    sqs(
        StatusCode::BAD_REQUEST,
        "ReceiptHandleIsInvalid",
        "ReceiptHandleIsInvalid",
        message.into(),
    )
}

pub fn not_inflight() -> AwsError {
    sqs(
        StatusCode::BAD_REQUEST,
        "MessageNotInflight",
        "AWS.SimpleQueueService.MessageNotInflight",
        "Message does not exist or is not available for visibility timeout change.".into(),
    )
}

pub fn over_limit(message: impl Into<String>) -> AwsError {
    sqs(
        StatusCode::FORBIDDEN,
        "OverLimit",
        "OverLimit",
        message.into(),
    )
}

pub fn invalid_attribute_name(name: &str) -> AwsError {
    sqs(
        StatusCode::BAD_REQUEST,
        "InvalidAttributeName",
        "InvalidAttributeName",
        format!("Unknown Attribute {name}."),
    )
}

pub fn invalid_attribute_value(message: impl Into<String>) -> AwsError {
    sqs(
        StatusCode::BAD_REQUEST,
        "InvalidAttributeValue",
        "InvalidAttributeValue",
        message.into(),
    )
}

pub fn invalid_contents(message: impl Into<String>) -> AwsError {
    sqs(
        StatusCode::BAD_REQUEST,
        "InvalidMessageContents",
        "InvalidMessageContents",
        message.into(),
    )
}

pub fn empty_batch() -> AwsError {
    sqs(
        StatusCode::BAD_REQUEST,
        "EmptyBatchRequest",
        "AWS.SimpleQueueService.EmptyBatchRequest",
        "There should be at least one SendMessageBatchRequestEntry in the request.".into(),
    )
}

pub fn too_many_entries(count: usize) -> AwsError {
    sqs(
        StatusCode::BAD_REQUEST,
        "TooManyEntriesInBatchRequest",
        "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
        format!("Maximum number of entries per request are 10. You have sent {count}."),
    )
}

pub fn ids_not_distinct(id: &str) -> AwsError {
    sqs(
        StatusCode::BAD_REQUEST,
        "BatchEntryIdsNotDistinct",
        "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
        format!("Id {id} repeated."),
    )
}

pub fn invalid_entry_id(id: &str) -> AwsError {
    sqs(
        StatusCode::BAD_REQUEST,
        "InvalidBatchEntryId",
        "AWS.SimpleQueueService.InvalidBatchEntryId",
        format!(
            "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long. Got {id:?}."
        ),
    )
}

pub fn batch_too_long(total: usize, limit: usize) -> AwsError {
    sqs(
        StatusCode::BAD_REQUEST,
        "BatchRequestTooLong",
        "AWS.SimpleQueueService.BatchRequestTooLong",
        format!("Batch requests cannot be longer than {limit} bytes. You have sent {total} bytes."),
    )
}

pub fn unsupported(message: impl Into<String>) -> AwsError {
    sqs(
        StatusCode::BAD_REQUEST,
        "UnsupportedOperation",
        "AWS.SimpleQueueService.UnsupportedOperation",
        message.into(),
    )
}

pub fn not_found(message: impl Into<String>) -> AwsError {
    sqs(
        StatusCode::BAD_REQUEST,
        "ResourceNotFoundException",
        "ResourceNotFoundException",
        message.into(),
    )
}

/// A parameter with a wrong value (a common error of the query protocol).
pub fn invalid_parameter(message: impl Into<String>) -> AwsError {
    sqs(
        StatusCode::BAD_REQUEST,
        "InvalidParameterValueException",
        "InvalidParameterValue",
        message.into(),
    )
}

pub fn missing_parameter(name: &str) -> AwsError {
    sqs(
        StatusCode::BAD_REQUEST,
        "MissingRequiredParameterException",
        "MissingParameter",
        format!("The request must contain the parameter {name}."),
    )
}

pub fn internal(err: impl std::fmt::Display) -> AwsError {
    tracing::error!(error = %err, "sqs failed");
    if nimbus_storage::backends_degraded() {
        return AwsError::unavailable();
    }
    sqs(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        "InternalError",
        "We encountered an internal error. Please try again.".into(),
    )
}
