//! The command line's AWS client: SigV4-signed HTTP/1.1 requests to a nimbus server,
//! with the credentials of the environment or of the server's data dir.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use nimbus_auth::PathStyle;
use nimbus_auth::sigv4::{Keys, Target, payload_sha256, sign};
use nimbus_edge::catalog;
use serde_json::Value;

pub use super::term::Upload;

pub struct Client {
    host: String,
    keys: Keys,
    pub region: String,
}

impl Client {
    /// The keys requests are signed with.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The registry host, as image references name it.
    pub fn host(&self) -> &str {
        &self.host
    }
}

/// An AWS error a call answered with, or why there was no answer.
#[derive(Debug)]
pub struct CallError(pub String);

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A profile's keys in an AWS credentials file.
fn profile_keys(text: &str, profile: &str) -> Option<Keys> {
    let mut in_profile = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_profile = line.trim_matches(['[', ']']).trim() == profile;
        } else if in_profile && let Some((key, value)) = line.split_once('=') {
            let value = Some(value.trim().to_owned());
            match key.trim() {
                "aws_access_key_id" => id = value,
                "aws_secret_access_key" => secret = value,
                "aws_session_token" => token = value,
                _ => {}
            }
        }
    }
    Some(Keys {
        access_key_id: id?,
        secret: secret?,
        session_token: token,
    })
}

/// The keys of `profile` in the credentials file at `path`.
fn file_keys(path: &Path, profile: &str, hint: &str) -> Result<Keys, CallError> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        CallError(format!(
            "no credentials: {hint} ({}: {err})",
            path.display()
        ))
    })?;
    profile_keys(&text, profile).ok_or_else(|| {
        CallError(format!(
            "{} has no [{profile}] profile with keys",
            path.display()
        ))
    })
}

impl Client {
    /// A client for the server at `endpoint` (`http://host:port`), signing with the
    /// environment's AWS keys, else an AWS profile's (`--profile`, `AWS_PROFILE`, from
    /// `AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`), else the root keys in
    /// `<data_dir>/credentials`.
    pub fn new(
        endpoint: &str,
        data_dir: &Path,
        region: &str,
        profile: Option<&str>,
    ) -> Result<Self, CallError> {
        let host = endpoint
            .strip_prefix("http://")
            .ok_or_else(|| {
                CallError(format!(
                    "the endpoint must be http://host:port, not {endpoint}"
                ))
            })?
            .trim_end_matches('/')
            .to_owned();
        let env = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        let keys = match (
            env("AWS_ACCESS_KEY_ID"),
            env("AWS_SECRET_ACCESS_KEY"),
            profile,
        ) {
            (Some(id), Some(secret), _) => Keys {
                access_key_id: id,
                secret,
                session_token: env("AWS_SESSION_TOKEN"),
            },
            (_, _, Some(profile)) => {
                let path = env("AWS_SHARED_CREDENTIALS_FILE")
                    .map(PathBuf::from)
                    .or_else(|| env("HOME").map(|home| Path::new(&home).join(".aws/credentials")))
                    .ok_or_else(|| CallError("no HOME to find ~/.aws/credentials in".into()))?;
                file_keys(&path, profile, "set AWS_SHARED_CREDENTIALS_FILE")?
            }
            _ => file_keys(
                &data_dir.join("credentials"),
                "nimbus",
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, pass --profile, or pass the server's --data-dir",
            )?,
        };
        Ok(Self {
            host,
            keys,
            region: region.to_owned(),
        })
    }

    /// Sends one signed request; the status, headers and body of the answer.
    pub async fn send(
        &self,
        service: &str,
        method: Method,
        path: &str,
        query: &str,
        extra: &[(&str, &str)],
        body: Upload,
    ) -> Result<(StatusCode, HeaderMap, Bytes), CallError> {
        let mut headers = HeaderMap::new();
        let value = |text: &str| {
            HeaderValue::from_str(text).map_err(|_| CallError(format!("bad header value {text}")))
        };
        headers.insert("host", value(&self.host)?);
        for (name, text) in extra {
            headers.insert(
                http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| CallError(format!("bad header {name}")))?,
                value(text)?,
            );
        }
        let target = Target {
            method: method.as_str(),
            path,
            query,
            service,
            region: &self.region,
            style: catalog::by_signing_name(service)
                .map_or(PathStyle::Normalized, |descriptor| descriptor.path_style()),
        };
        sign(
            &self.keys,
            &target,
            &mut headers,
            &payload_sha256(body.bytes()),
            time::OffsetDateTime::now_utc(),
        )
        .map_err(|err| CallError(format!("cannot sign the request: {err}")))?;
        let uri = if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{query}")
        };
        self.transmit(method, &uri, headers, body).await
    }

    /// Sends a request to one of the server's own endpoints, which take no
    /// signature (`/_nimbus/...`, the console's sign-in).
    pub async fn plain(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(StatusCode, HeaderMap, Bytes), CallError> {
        let mut headers = HeaderMap::new();
        if let Some(content_type) = content_type {
            let value = HeaderValue::from_str(content_type)
                .map_err(|_| CallError(format!("bad content type {content_type}")))?;
            headers.insert(http::header::CONTENT_TYPE, value);
        }
        self.transmit(method, path, headers, Upload::new(body, None))
            .await
    }

    /// Sends a request as it is (the registry's, with its own authorization).
    pub async fn transmit(
        &self,
        method: Method,
        uri: &str,
        mut headers: HeaderMap,
        body: Upload,
    ) -> Result<(StatusCode, HeaderMap, Bytes), CallError> {
        if !headers.contains_key("host") {
            let host = HeaderValue::from_str(&self.host)
                .map_err(|_| CallError(format!("bad host {}", self.host)))?;
            headers.insert("host", host);
        }
        let unreachable = |err: &dyn std::fmt::Display| {
            CallError(format!(
                "cannot reach nimbus at http://{}: {err} (is `nimbus server` running? --endpoint or NIMBUS_ENDPOINT names another)",
                self.host
            ))
        };
        let stream = tokio::net::TcpStream::connect(&self.host)
            .await
            .map_err(|err| unreachable(&err))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|err| unreachable(&err))?;
        tokio::spawn(connection);
        let mut request = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(body)
            .map_err(|err| CallError(err.to_string()))?;
        *request.headers_mut() = headers;
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| unreachable(&err))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|err| CallError(err.to_string()))?
            .to_bytes();
        Ok((parts.status, parts.headers, body))
    }

    /// A JSON call: its answer's JSON, or the AWS error as `Code: message`.
    pub async fn json(
        &self,
        service: &str,
        method: Method,
        path: &str,
        extra: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, CallError> {
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.json_with(service, method, path, extra, Upload::new(body, None))
            .await
    }

    /// A JSON call whose body draws a progress bar named `label` as it goes out.
    pub async fn upload_json(
        &self,
        service: &str,
        method: Method,
        path: &str,
        body: &Value,
        label: String,
    ) -> Result<Value, CallError> {
        let body = Upload::new(body.to_string().into_bytes(), Some(label));
        self.json_with(service, method, path, &[], body).await
    }

    async fn json_with(
        &self,
        service: &str,
        method: Method,
        path: &str,
        extra: &[(&str, &str)],
        body: Upload,
    ) -> Result<Value, CallError> {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let (status, headers, bytes) = self.send(service, method, path, query, extra, body).await?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let code = headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(':').next().unwrap_or(v).to_owned())
            .or_else(|| {
                value["__type"]
                    .as_str()
                    .map(|t| t.rsplit('#').next().unwrap_or(t).to_owned())
            })
            .unwrap_or_else(|| status.to_string());
        let message = value["message"]
            .as_str()
            .or(value["Message"].as_str())
            .unwrap_or_default();
        Err(CallError(format!("{code}: {message}")))
    }

    /// A json-1.1 call (ECS, Logs): `target` is `Prefix.Operation`.
    pub async fn json11(
        &self,
        service: &str,
        target: &str,
        body: &Value,
    ) -> Result<Value, CallError> {
        self.json_target(service, target, "1.1", body).await
    }

    /// A call of the JSON protocol `version` (1.0 for SQS, 1.1 for ECS and Logs):
    /// `target` is `Prefix.Operation`.
    pub async fn json_target(
        &self,
        service: &str,
        target: &str,
        version: &str,
        body: &Value,
    ) -> Result<Value, CallError> {
        let content_type = format!("application/x-amz-json-{version}");
        self.json(
            service,
            Method::POST,
            "/",
            &[("x-amz-target", target), ("content-type", &content_type)],
            Some(body),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_named_profile() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key = a\n\n[nimbus]\naws_access_key_id = B\naws_secret_access_key = b\naws_session_token = t\n";
        let keys = profile_keys(text, "nimbus").unwrap();
        assert_eq!(
            (keys.access_key_id.as_str(), keys.secret.as_str()),
            ("B", "b")
        );
        assert_eq!(keys.session_token.as_deref(), Some("t"));
        assert_eq!(profile_keys(text, "default").unwrap().session_token, None);
        assert!(profile_keys(text, "other").is_none());
    }
}
