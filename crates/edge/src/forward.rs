//! Hands a request to another node of the deployment as it came: an invoke to the
//! node with a warm environment, a registry upload to the node holding it. The
//! request keeps its client's own credentials, which the other node checks as it
//! would have: forwarding grants nothing. A forwarded request is marked, never
//! forwarded again, and says whether it first came over TLS, so the other node's
//! `aws:SecureTransport` is the client's and not the hop's.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::server::SecureTransport;

/// Set on a forwarded request: `secure` when the client's own connection was TLS,
/// `plain` otherwise.
pub const FORWARDED: &str = "x-nimbus-forwarded";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How this node reaches the others: over TLS when its own edge serves TLS (the
/// peers' certificates checked against the roots of its own chain and the system's).
#[derive(Clone, Default)]
pub struct Peers {
    tls: Option<tokio_native_tls::TlsConnector>,
}

impl Peers {
    /// Over TLS, trusting the certificates of `chain` (PEM) besides the system's.
    pub fn tls(chain: &[u8]) -> Result<Self, String> {
        let text = String::from_utf8_lossy(chain);
        let mut builder = native_tls::TlsConnector::builder();
        builder.min_protocol_version(Some(native_tls::Protocol::Tlsv12));
        for block in text.split_inclusive("-----END CERTIFICATE-----") {
            if let Some(start) = block.find("-----BEGIN CERTIFICATE-----") {
                let certificate = native_tls::Certificate::from_pem(&block.as_bytes()[start..])
                    .map_err(|err| format!("a certificate of the chain cannot be read: {err}"))?;
                builder.add_root_certificate(certificate);
            }
        }
        let connector = builder
            .build()
            .map_err(|err| format!("TLS to other nodes cannot be set up: {err}"))?;
        Ok(Self {
            tls: Some(connector.into()),
        })
    }

    /// Sends `request` (origin-form URI, its own Host header) to the node at
    /// `address` (`host:port`) and streams its answer back.
    pub async fn forward(
        &self,
        address: &str,
        mut request: http::Request<Body>,
    ) -> Result<Response, String> {
        let failed = |err: &dyn std::fmt::Display| format!("node {address}: {err}");
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address))
            .await
            .map_err(|_| format!("node {address} did not answer in time"))?
            .map_err(|err| failed(&err))?;
        let _ = stream.set_nodelay(true);
        let secure = request.extensions().get::<SecureTransport>().is_some();
        request.headers_mut().insert(
            FORWARDED,
            http::HeaderValue::from_static(if secure { "secure" } else { "plain" }),
        );
        match &self.tls {
            Some(connector) => {
                let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let stream = connector
                    .connect(host, stream)
                    .await
                    .map_err(|err| failed(&err))?;
                send(stream, request).await.map_err(|err| failed(&err))
            }
            None => send(stream, request).await.map_err(|err| failed(&err)),
        }
    }
}

async fn send<S>(stream: S, request: http::Request<Body>) -> Result<Response, hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "a forwarded request's connection ended");
        }
    });
    Ok(sender.send_request(request).await?.map(Body::new))
}
