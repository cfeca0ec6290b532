//! Hands a request to another node of the deployment as it came, for state that lives
//! on one node (an open registry upload). The request keeps its client's own
//! credentials, which the other node checks as it would have: forwarding grants
//! nothing. A forwarded request is marked, and a node never forwards one again.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use hyper_util::rt::TokioIo;

/// Set on a forwarded request.
pub const FORWARDED: &str = "x-nimbus-forwarded";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends `request` (origin-form URI, its own Host header) to the node at `address`
/// (`host:port`) and streams its answer back.
pub async fn forward(address: &str, mut request: http::Request<Body>) -> Result<Response, String> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address))
        .await
        .map_err(|_| format!("node {address} did not answer in time"))?
        .map_err(|err| format!("node {address}: {err}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| format!("node {address}: {err}"))?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "a forwarded request's connection ended");
        }
    });
    request
        .headers_mut()
        .insert(FORWARDED, http::HeaderValue::from_static("1"));
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| format!("node {address}: {err}"))?;
    Ok(response.map(Body::new))
}
