//! The web console at `/console/`: a single-page app built from `console/` and
//! embedded at build time, sign-in that trades an access key pair for temporary
//! credentials held by the server, and a proxy that signs the page's AWS requests
//! with them. Every console action is thus an ordinary SigV4 request of the
//! signed-in principal, authorized by IAM exactly as the SDKs' are.

mod assets;
mod sessions;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use nimbus_auth::sigv4::{Keys, Target, UNSIGNED_PAYLOAD, payload_sha256, sign};
use nimbus_edge::Peer;
use nimbus_edge::protocol::xml;
use nimbus_edge::service::{ServiceDescriptor, catalog};
use serde::Deserialize;
use serde_json::json;
use time::{Duration, OffsetDateTime};
use tower::ServiceExt;

pub use assets::Assets;
use sessions::{COOKIE, Session, Sessions};

/// How long a session lasts: GetSessionToken's longest for the keys signed in with.
const SESSION_SECONDS: i64 = 12 * 3600;
/// The page names the service each proxied request is for, and proves it is the page.
const SERVICE_HEADER: &str = "x-nimbus-service";
const CSRF_HEADER: &str = "x-nimbus-csrf";
/// A download link cannot send headers, so a GET may carry them in its query.
const CSRF_PARAM: &str = "nimbus-csrf";
const SERVICE_PARAM: &str = "nimbus-service";

pub struct Console {
    region: String,
    assets: Assets,
    sessions: Sessions,
    /// The edge's finished router, which proxied requests go through.
    edge: OnceLock<Router>,
}

impl Console {
    pub fn new(region: &str, assets: Assets) -> Arc<Self> {
        Arc::new(Self {
            region: region.to_owned(),
            assets,
            sessions: Sessions::default(),
            edge: OnceLock::new(),
        })
    }

    /// Gives the console the router its signed requests go through: the edge's
    /// own, built with [`Console::routes`] in it.
    pub fn connect(&self, edge: Router) {
        let _ = self.edge.set(edge);
    }

    /// The gzipped size of the pages built into this binary.
    pub fn embedded_bytes() -> usize {
        Assets::embedded_bytes()
    }

    pub fn routes(self: &Arc<Self>) -> Router {
        Router::new()
            .route(
                "/console",
                get(|| async { Redirect::permanent("/console/") }),
            )
            .route("/console/", get(page))
            .route("/console/{*path}", get(page))
            .route("/console/login", get(login))
            .route("/console/api/session", get(current))
            .route("/console/api/signin", post(sign_in))
            .route("/console/api/signout", post(sign_out))
            .route("/console/api/links", post(link))
            .route("/console/aws", any(proxy))
            .route("/console/aws/", any(proxy))
            .route("/console/aws/{*path}", any(proxy))
            .with_state(self.clone())
    }

    /// Sends one request through the edge, signed with `keys` for `service`.
    async fn send(
        &self,
        keys: &Keys,
        service: &ServiceDescriptor,
        parts: http::request::Parts,
        body: Body,
        payload_hash: &str,
    ) -> Response {
        let Some(edge) = self.edge.get() else {
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "the server is starting")
                .into_response();
        };
        let method = parts.method.as_str().to_owned();
        let path = parts.uri.path().to_owned();
        let query = parts.uri.query().unwrap_or_default().to_owned();
        let target = Target {
            method: &method,
            path: &path,
            query: &query,
            service: service.signing_name,
            region: &self.region,
            style: service.path_style(),
        };
        let mut request = http::Request::from_parts(parts, body);
        if let Err(err) = sign(
            keys,
            &target,
            request.headers_mut(),
            payload_hash,
            OffsetDateTime::now_utc(),
        ) {
            return refuse(StatusCode::BAD_REQUEST, &format!("cannot sign: {err}")).into_response();
        }
        match edge.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// A query-protocol call to STS as `keys`; the answer's XML, or why not.
    async fn sts(&self, keys: &Keys, host: &HeaderValue, form: &str) -> Result<String, String> {
        let request = http::Request::post("/")
            .header(header::HOST, host)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(())
            .expect("a valid request");
        let (parts, ()) = request.into_parts();
        let hash = payload_sha256(form.as_bytes());
        let response = self
            .send(
                keys,
                &catalog::STS,
                parts,
                Body::from(form.to_owned()),
                &hash,
            )
            .await;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if status.is_success() {
            Ok(text)
        } else {
            Err(xml::first_record(text.as_bytes(), "Error", &["Message"])
                .map_or_else(|| status.to_string(), |mut message| message.remove(0)))
        }
    }

    /// A session for the principal whose keys these are: temporary credentials
    /// from GetSessionToken (or the session credentials given, until they expire),
    /// checked by asking STS who they belong to.
    async fn establish(&self, given: SignInKeys, host: &HeaderValue) -> Result<Session, String> {
        let longest = OffsetDateTime::now_utc() + Duration::seconds(SESSION_SECONDS);
        let SignInKeys { keys, expiration } = given;
        let (keys, expires) = if keys.session_token.is_some() {
            (keys, expiration.map_or(longest, |end| end.min(longest)))
        } else {
            let form = format!(
                "Action=GetSessionToken&Version=2011-06-15&DurationSeconds={SESSION_SECONDS}"
            );
            let xml = self.sts(&keys, host, &form).await?;
            let fields = [
                "AccessKeyId",
                "SecretAccessKey",
                "SessionToken",
                "Expiration",
            ];
            let [id, secret, token, expiration]: [String; 4] =
                xml::first_record(xml.as_bytes(), "Credentials", &fields)
                    .and_then(|record| record.try_into().ok())
                    .ok_or("GetSessionToken gave no credentials")?;
            let expires =
                OffsetDateTime::parse(&expiration, &time::format_description::well_known::Rfc3339)
                    .map_err(|err| format!("GetSessionToken's expiration: {err}"))?;
            let keys = Keys {
                access_key_id: id,
                secret,
                session_token: Some(token),
            };
            (keys, expires)
        };
        let xml = self
            .sts(&keys, host, "Action=GetCallerIdentity&Version=2011-06-15")
            .await?;
        let [principal, account]: [String; 2] = xml::first_record(
            xml.as_bytes(),
            "GetCallerIdentityResult",
            &["Arn", "Account"],
        )
        .and_then(|record| record.try_into().ok())
        .ok_or("GetCallerIdentity gave no Arn and Account")?;
        Ok(Session {
            principal,
            account,
            csrf: sessions::random_token(),
            keys,
            expires,
        })
    }

    fn session(&self, headers: &HeaderMap) -> Result<(String, Session), Refusal> {
        sessions::cookie(headers)
            .and_then(|id| Some((id.to_owned(), self.sessions.get(id)?)))
            .ok_or_else(|| refuse(StatusCode::UNAUTHORIZED, "Sign in to use the console"))
    }
}

/// A JSON answer, never cached.
struct Json(serde_json::Value);

impl IntoResponse for Json {
    fn into_response(self) -> Response {
        (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            self.0.to_string(),
        )
            .into_response()
    }
}

/// Why the console did not do what the page asked: `{"message": ...}` to show.
#[derive(Debug)]
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "message": self.1 }))).into_response()
    }
}

fn refuse(status: StatusCode, message: &str) -> Refusal {
    Refusal(status, message.to_owned())
}

/// Requests that change something must come from the console's own pages: a
/// browser names the page's origin, which must be this server.
fn same_origin(headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let expected = host.map(|host| format!("http://{host}"));
    if origin.to_str().ok() == expected.as_deref() {
        Ok(())
    } else {
        Err(refuse(
            StatusCode::FORBIDDEN,
            "Requests to the console must come from its own pages",
        ))
    }
}

fn host(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(header::HOST)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("localhost"))
}

fn session_body(console: &Console, session: &Session, host: &HeaderValue) -> serde_json::Value {
    json!({
        "principal": session.principal,
        "account": session.account,
        "region": console.region,
        "csrf": session.csrf,
        "expires": session.expires.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "endpoint": format!("http://{}", host.to_str().unwrap_or("localhost")),
    })
}

/// The cookie that carries session `id` until `expires`.
fn session_cookie(id: &str, expires: OffsetDateTime) -> String {
    let max_age = (expires - OffsetDateTime::now_utc()).whole_seconds().max(0);
    format!("{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}")
}

async fn page(
    State(console): State<Arc<Console>>,
    path: Option<axum::extract::Path<String>>,
    headers: HeaderMap,
) -> Response {
    let path = path.map(|p| p.0).unwrap_or_default();
    console.assets.serve(&path, &headers)
}

async fn current(State(console): State<Arc<Console>>, headers: HeaderMap) -> Result<Json, Refusal> {
    let (_, session) = console.session(&headers)?;
    Ok(Json(session_body(&console, &session, &host(&headers))))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignIn {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
    /// When session credentials expire (RFC 3339), if the client knows.
    #[serde(default)]
    expiration: Option<String>,
}

/// What a sign-in body names: keys, and for session credentials, maybe their end.
struct SignInKeys {
    keys: Keys,
    expiration: Option<OffsetDateTime>,
}

/// Reads a sign-in body: JSON only, so no cross-site form can post one.
fn sign_in_keys(headers: &HeaderMap, body: &[u8]) -> Result<SignInKeys, Refusal> {
    same_origin(headers)?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Sign in with a JSON body",
        ));
    }
    let form: SignIn = serde_json::from_slice(body).map_err(|err| {
        refuse(
            StatusCode::BAD_REQUEST,
            &format!("Give accessKeyId and secretAccessKey: {err}"),
        )
    })?;
    let (id, secret) = (form.access_key_id.trim(), form.secret_access_key.trim());
    if id.is_empty() || secret.is_empty() {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "Give both the access key ID and the secret access key",
        ));
    }
    let expiration = form
        .expiration
        .map(|text| {
            OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                .map_err(|err| refuse(StatusCode::BAD_REQUEST, &format!("expiration: {err}")))
        })
        .transpose()?;
    Ok(SignInKeys {
        keys: Keys {
            access_key_id: id.to_owned(),
            secret: secret.to_owned(),
            session_token: form
                .session_token
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty()),
        },
        expiration,
    })
}

/// A session for the keys a sign-in body carries, and the host it was asked of.
async fn session_for(
    console: &Console,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Session, HeaderValue), Refusal> {
    let signed_in = sign_in_keys(headers, body)?;
    let host = host(headers);
    let session = console
        .establish(signed_in, &host)
        .await
        .map_err(|message| {
            tracing::info!(%message, "console sign-in refused");
            refuse(StatusCode::UNAUTHORIZED, &message)
        })?;
    Ok((session, host))
}

/// Whether `presented` is the session's CSRF token; the refusal when not.
fn check_csrf(session: &Session, presented: Option<&str>) -> Result<(), Refusal> {
    if presented.is_some_and(|token| session.csrf_matches(token)) {
        Ok(())
    } else {
        Err(refuse(
            StatusCode::FORBIDDEN,
            "The request lacks the console's CSRF token",
        ))
    }
}

async fn sign_in(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let (session, host) = session_for(&console, &headers, &body).await?;
    tracing::info!(principal = %session.principal, "console sign-in");
    let body = session_body(&console, &session, &host);
    let cookie = session_cookie(&console.sessions.open(session.clone()), session.expires);
    Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

async fn sign_out(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let (id, session) = console.session(&headers)?;
    check_csrf(
        &session,
        headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()),
    )?;
    console.sessions.close(&id);
    Ok((
        StatusCode::NO_CONTENT,
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
    )
        .into_response())
}

/// `nimbus console`'s request: a one-time login link for the keys it sends.
async fn link(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json, Refusal> {
    let (session, host) = session_for(&console, &headers, &body).await?;
    let principal = session.principal.clone();
    let token = console.sessions.offer(session);
    let url = format!(
        "http://{}/console/login?token={token}",
        host.to_str().unwrap_or("localhost")
    );
    let expires = OffsetDateTime::now_utc() + sessions::LINK_LIFETIME;
    Ok(Json(json!({
        "url": url,
        "principal": principal,
        "expires": expires.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
    })))
}

#[derive(Deserialize)]
struct LoginLink {
    token: String,
}

async fn login(State(console): State<Arc<Console>>, Query(link): Query<LoginLink>) -> Response {
    match console.sessions.claim(&link.token) {
        Some(session) => {
            let expires = session.expires;
            let id = console.sessions.open(session);
            (
                [
                    (header::SET_COOKIE, session_cookie(&id, expires)),
                    (header::CACHE_CONTROL, "no-store".to_owned()),
                ],
                Redirect::to("/console/"),
            )
                .into_response()
        }
        None => (
            StatusCode::GONE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "This login link was used already or has expired. Run `nimbus console` for a new one.\n",
        )
            .into_response(),
    }
}

/// Request headers the proxy never passes on: the browser's own credentials,
/// what the signature sets itself, and hop-by-hop headers.
fn passes_on(name: &header::HeaderName) -> bool {
    let name = name.as_str();
    !matches!(
        name,
        "cookie"
            | "authorization"
            | "host"
            | "origin"
            | "referer"
            | "connection"
            | "x-amz-date"
            | "x-amz-security-token"
            | "x-amz-content-sha256"
    ) && !name.starts_with("x-nimbus-")
        && !name.starts_with("sec-")
}

/// What a link's query says for the console rather than for AWS.
#[derive(Clone, Copy, Default)]
struct LinkParams<'a> {
    csrf: Option<&'a str>,
    service: Option<&'a str>,
}

/// A proxied query without the console's own parameters, and those parameters.
fn split_link_params(query: &str) -> (String, LinkParams<'_>) {
    let mut link = LinkParams::default();
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| match pair.split_once('=') {
            Some((CSRF_PARAM, value)) => {
                link.csrf = Some(value);
                false
            }
            Some((SERVICE_PARAM, value)) => {
                link.service = Some(value);
                false
            }
            _ => true,
        })
        .collect();
    (rest.join("&"), link)
}

/// `/console/aws/<path>?<query>`: the AWS request at `/<path>?<query>`, signed as
/// the session's principal for the service the page names.
async fn proxy(State(console): State<Arc<Console>>, request: Request) -> Result<Response, Refusal> {
    let (parts, body) = request.into_parts();
    let (_, session) = console.session(&parts.headers)?;
    same_origin(&parts.headers)?;
    let (query, link) = split_link_params(parts.uri.query().unwrap_or_default());
    // A plain link (a download) cannot send headers: GET and HEAD may name the
    // token and the service in the query instead.
    let link = matches!(parts.method, Method::GET | Method::HEAD).then_some(link);
    let header = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let csrf = header(CSRF_HEADER).or(link.and_then(|l| l.csrf));
    check_csrf(&session, csrf)?;
    let service = header(SERVICE_HEADER)
        .or(link.and_then(|l| l.service))
        .unwrap_or_default();
    let descriptor = catalog::by_signing_name(service).ok_or_else(|| {
        refuse(
            StatusCode::BAD_REQUEST,
            &format!("{SERVICE_HEADER} must name a service, not {service:?}"),
        )
    })?;
    let path = parts.uri.path().strip_prefix("/console/aws").unwrap_or("/");
    let path = if path.is_empty() { "/" } else { path };
    let uri = if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    };
    let mut builder = http::Request::builder()
        .method(parts.method.clone())
        .uri(uri)
        .header(header::HOST, host(&parts.headers));
    for (name, value) in parts.headers.iter().filter(|(name, _)| passes_on(name)) {
        builder = builder.header(name, value);
    }
    if let Some(peer) = parts.extensions.get::<Peer>() {
        builder = builder.extension(*peer);
    }
    let request = builder
        .body(())
        .map_err(|_| refuse(StatusCode::BAD_REQUEST, "The request cannot be passed on"))?;
    let (forward, ()) = request.into_parts();
    // S3 takes bodies of gigabytes as a stream; the other services' bodies are
    // small, read here (within their service's limit) to be signed.
    if descriptor.signing_name == "s3" {
        return Ok(console
            .send(&session.keys, descriptor, forward, body, UNSIGNED_PAYLOAD)
            .await);
    }
    let body = nimbus_edge::read_whole(body, descriptor.max_body)
        .await
        .map_err(|err| match err {
            nimbus_edge::BodyError::Idle(_) => refuse(
                StatusCode::REQUEST_TIMEOUT,
                &format!("The request timed out: {err}"),
            ),
            _ => refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "{} takes request bodies of at most {} bytes",
                    descriptor.name, descriptor.max_body
                ),
            ),
        })?;
    let hash = payload_sha256(&body);
    Ok(console
        .send(&session.keys, descriptor, forward, Body::from(body), &hash)
        .await)
}

/// Where the console's pages come from: `NIMBUS_CONSOLE_DIR` when set (to work on
/// the front end without rebuilding nimbus), else the copy built in.
pub fn assets_from_env() -> Assets {
    match std::env::var_os("NIMBUS_CONSOLE_DIR") {
        Some(dir) if !dir.is_empty() => Assets::Directory(PathBuf::from(dir)),
        _ => Assets::Embedded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consoles_parameters_leave_the_query() {
        let (rest, link) =
            split_link_params("list-type=2&nimbus-csrf=abc&prefix=a%3D&nimbus-service=s3");
        assert_eq!(rest, "list-type=2&prefix=a%3D");
        assert_eq!((link.csrf, link.service), (Some("abc"), Some("s3")));
        let (rest, link) = split_link_params("");
        assert_eq!((rest.as_str(), link.csrf), ("", None));
    }

    #[test]
    fn only_the_consoles_own_origin_may_post() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "127.0.0.1:4566".parse().unwrap());
        assert!(same_origin(&headers).is_ok());
        headers.insert(header::ORIGIN, "http://127.0.0.1:4566".parse().unwrap());
        assert!(same_origin(&headers).is_ok());
        headers.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(same_origin(&headers).is_err());
    }

    #[test]
    fn the_browsers_credentials_are_not_passed_on() {
        for name in [
            "cookie",
            "authorization",
            "x-nimbus-csrf",
            "x-amz-date",
            "sec-fetch-mode",
        ] {
            assert!(!passes_on(&header::HeaderName::from_static(name)), "{name}");
        }
        for name in ["content-type", "x-amz-target", "x-amz-log-type", "range"] {
            assert!(passes_on(&header::HeaderName::from_static(name)), "{name}");
        }
    }
}
