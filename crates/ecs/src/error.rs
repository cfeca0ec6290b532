//! ECS's error codes, each with the status AWS gives it.

use http::StatusCode;
use nimbus_edge::{AwsError, Protocol};

/// ECS's catch-all for a bad request, with the reason.
pub fn client(message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::BAD_REQUEST, "ClientException", message)
}

pub fn invalid(message: impl Into<String>) -> AwsError {
    AwsError::new(
        StatusCode::BAD_REQUEST,
        "InvalidParameterException",
        message,
    )
}

pub fn cluster_not_found() -> AwsError {
    AwsError::new(
        StatusCode::BAD_REQUEST,
        "ClusterNotFoundException",
        "Cluster not found.",
    )
}

pub fn internal(err: impl std::fmt::Display) -> AwsError {
    tracing::error!(error = %err, "ecs store failure");
    AwsError::internal(Protocol::Json11)
}
