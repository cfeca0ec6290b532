//! Scheduler's error codes, each with the status AWS gives it.

use http::StatusCode;
use nimbus_edge::AwsError;

pub fn validation(message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::BAD_REQUEST, "ValidationException", message)
}

pub fn not_found(message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
}

pub fn conflict(message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::CONFLICT, "ConflictException", message)
}

pub fn internal(err: impl std::fmt::Display) -> AwsError {
    tracing::error!(error = %err, "scheduler store failure");
    AwsError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServerException",
        "An internal error occurred.",
    )
}
