//! Hands a request to another node of the deployment as it came: an invoke to the
//! node with a warm environment, a registry upload to the node holding it. The
//! request keeps its client's own credentials, which the other node checks as it
//! would have: forwarding grants nothing. The forwarding node adds where the client
//! connected from and whether over TLS, signed with the deployment's secret, so the
//! other node's `aws:SourceIp` and `aws:SecureTransport` are the client's, not the
//! hop's; claims nobody signed are dropped where requests enter ([`Peers::admit`]).
//! A forwarded request is never forwarded again.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::response::Response;
use hmac::{Hmac, KeyInit, Mac};
use hyper_util::rt::TokioIo;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::server::{Peer, SecureTransport};

/// Set on a forwarded request: `secure` when the client's own connection was TLS,
/// `plain` otherwise.
pub const FORWARDED: &str = "x-nimbus-forwarded";
/// The client's address.
const FORWARDED_FOR: &str = "x-nimbus-forwarded-for";
/// When it was forwarded, in Unix milliseconds.
const FORWARDED_AT: &str = "x-nimbus-forwarded-at";
/// The deployment secret's HMAC-SHA256 over the claims, the request line, the Host
/// and the Authorization.
const FORWARDED_MAC: &str = "x-nimbus-forwarded-mac";
const CLAIMS: [&str; 4] = [FORWARDED, FORWARDED_FOR, FORWARDED_AT, FORWARDED_MAC];
/// How old a forwarded request may be when it arrives.
const MAX_AGE_MS: u64 = 60_000;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How this node reaches the others and knows their requests: the deployment's
/// secret, and TLS when its own edge serves it (the peers' certificates checked
/// against the roots of its own chain and the system's). Without a secret (a node
/// alone on its store) nothing is forwarded and no claim is believed.
#[derive(Clone, Default)]
pub struct Peers {
    secret: Option<Arc<[u8; 32]>>,
    tls: Option<tokio_native_tls::TlsConnector>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Peers {
    pub fn new(secret: [u8; 32]) -> Self {
        Self {
            secret: Some(Arc::new(secret)),
            tls: None,
        }
    }

    /// Over TLS, trusting the certificates of `chain` (PEM) besides the system's.
    pub fn with_tls(mut self, chain: &[u8]) -> Result<Self, String> {
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
        self.tls = Some(connector.into());
        Ok(self)
    }

    fn mac<B>(&self, request: &http::Request<B>, claims: [&str; 3]) -> Option<String> {
        let secret = self.secret.as_ref()?;
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_slice()).ok()?;
        let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
        let header = |name| {
            request
                .headers()
                .get(name)
                .map_or(&b""[..], |value| value.as_bytes())
        };
        // The client's own credentials are covered too, so claims cannot be moved
        // onto another caller's request.
        for part in [
            claims[0].as_bytes(),
            claims[1].as_bytes(),
            claims[2].as_bytes(),
            request.method().as_str().as_bytes(),
            target.as_bytes(),
            header(http::header::HOST),
            header(http::header::AUTHORIZATION),
        ] {
            mac.update(part);
            mac.update(b"\n");
        }
        Some(hex::encode(mac.finalize().into_bytes()))
    }

    /// Where a request enters: a forwarded one signed with the deployment's secret
    /// takes its client's address and transport; anyone else's claims are dropped,
    /// and the request is the connection's own.
    pub fn admit<B>(&self, request: &mut http::Request<B>) {
        if !request.headers().contains_key(FORWARDED) {
            return;
        }
        let claim = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let (transport, client, at, mac) = (
            claim(FORWARDED),
            claim(FORWARDED_FOR),
            claim(FORWARDED_AT),
            claim(FORWARDED_MAC),
        );
        let fresh = at
            .parse::<u64>()
            .is_ok_and(|at| now_ms().abs_diff(at) <= MAX_AGE_MS);
        let signed = self
            .mac(request, [&transport, &client, &at])
            .is_some_and(|expected| bool::from(expected.as_bytes().ct_eq(mac.as_bytes())));
        match client.parse::<IpAddr>() {
            Ok(ip) if fresh && signed && matches!(transport.as_str(), "secure" | "plain") => {
                request.extensions_mut().insert(Peer(ip));
                if transport == "secure" {
                    request.extensions_mut().insert(SecureTransport);
                } else {
                    request.extensions_mut().remove::<SecureTransport>();
                }
            }
            _ => {
                tracing::debug!("dropping unsigned forwarding claims");
                for name in CLAIMS {
                    request.headers_mut().remove(name);
                }
            }
        }
    }

    /// Sends `request` (origin-form URI, its own Host header, the client's `Peer`)
    /// to the node at `address` (`host:port`) and streams its answer back.
    pub async fn forward(
        &self,
        address: &str,
        mut request: http::Request<Body>,
    ) -> Result<Response, String> {
        let failed = |err: &dyn std::fmt::Display| format!("node {address}: {err}");
        let secure = request.extensions().get::<SecureTransport>().is_some();
        let transport = if secure { "secure" } else { "plain" };
        let client = request
            .extensions()
            .get::<Peer>()
            .map(|peer| peer.0.to_string())
            .ok_or("a forwarded request needs its client's address")?;
        let at = now_ms().to_string();
        let mac = self
            .mac(&request, [transport, &client, &at])
            .ok_or("this node has no deployment secret to forward with")?;
        for (name, value) in [
            (FORWARDED, transport),
            (FORWARDED_FOR, client.as_str()),
            (FORWARDED_AT, at.as_str()),
            (FORWARDED_MAC, mac.as_str()),
        ] {
            let value = http::HeaderValue::from_str(value).map_err(|err| failed(&err))?;
            request.headers_mut().insert(name, value);
        }
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address))
            .await
            .map_err(|_| format!("node {address} did not answer in time"))?
            .map_err(|err| failed(&err))?;
        let _ = stream.set_nodelay(true);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(peers: &Peers, transport: &str, client: &str, at: u64) -> http::Request<()> {
        let mut request = http::Request::builder()
            .method("POST")
            .uri("/2015-03-31/functions/f/invocations")
            .header("host", "nimbus:4566")
            .body(())
            .unwrap();
        let at = at.to_string();
        let mac = peers.mac(&request, [transport, client, &at]).unwrap();
        for (name, value) in [
            (FORWARDED, transport),
            (FORWARDED_FOR, client),
            (FORWARDED_AT, &at),
            (FORWARDED_MAC, &mac),
        ] {
            request.headers_mut().insert(name, value.parse().unwrap());
        }
        request
            .extensions_mut()
            .insert(Peer("10.0.0.2".parse().unwrap()));
        request
    }

    #[test]
    fn signed_claims_are_believed_and_any_others_dropped() {
        let peers = Peers::new([7; 32]);
        let mut signed = forwarded(&peers, "plain", "203.0.113.9", now_ms());
        signed.extensions_mut().insert(SecureTransport);
        peers.admit(&mut signed);
        assert_eq!(
            signed.extensions().get::<Peer>().unwrap().0.to_string(),
            "203.0.113.9"
        );
        assert!(signed.extensions().get::<SecureTransport>().is_none());
        assert!(signed.headers().contains_key(FORWARDED));

        // Signed with another secret, stale, or altered: the connection's own facts.
        let others = Peers::new([8; 32]);
        let stale = now_ms() - 2 * MAX_AGE_MS;
        let mut altered = forwarded(&peers, "plain", "203.0.113.9", now_ms());
        altered
            .headers_mut()
            .insert(FORWARDED_FOR, "10.0.0.1".parse().unwrap());
        for mut request in [
            forwarded(&others, "secure", "10.0.0.1", now_ms()),
            forwarded(&peers, "secure", "10.0.0.1", stale),
            altered,
        ] {
            peers.admit(&mut request);
            assert_eq!(
                request.extensions().get::<Peer>().unwrap().0.to_string(),
                "10.0.0.2"
            );
            assert!(request.extensions().get::<SecureTransport>().is_none());
            assert!(
                CLAIMS
                    .iter()
                    .all(|name| !request.headers().contains_key(*name))
            );
        }
        // A node alone believes nobody.
        let mut request = forwarded(&peers, "secure", "10.0.0.1", now_ms());
        Peers::default().admit(&mut request);
        assert!(!request.headers().contains_key(FORWARDED));
    }
}
