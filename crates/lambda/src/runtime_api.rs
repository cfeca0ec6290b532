//! The Lambda Runtime API (`/2018-06-01/runtime/...`) one execution environment
//! talks to: it hands out one invocation at a time and takes back its response or
//! error. Each environment gets a listener of its own, so no environment can reach
//! another's invocations.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use tokio::sync::{mpsc, oneshot};

/// The largest response or error a function may return.
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;
/// Error types are short identifiers; longer ones are cut.
const MAX_ERROR_TYPE: usize = 128;

/// One invocation on its way to an environment.
pub struct Invocation {
    pub request_id: String,
    pub payload: Bytes,
    /// How long the function has once the runtime picks the invocation up.
    pub timeout: std::time::Duration,
    pub invoked_arn: String,
    pub client_context: Option<String>,
    /// Told when the runtime picks the invocation up.
    pub picked_up: oneshot::Sender<()>,
    pub outcome: oneshot::Sender<RuntimeOutcome>,
}

/// What the runtime reported for an invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeOutcome {
    Response(Bytes),
    Error {
        error_type: Option<String>,
        body: Bytes,
    },
    ResponseTooLarge,
}

/// What the runtime reported when it could not initialize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitFailure {
    pub error_type: Option<String>,
    pub body: Bytes,
}

struct Current {
    request_id: String,
    outcome: oneshot::Sender<RuntimeOutcome>,
}

struct ApiState {
    inbox: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    current: Mutex<Option<Current>>,
    /// Set once the first invocation was handed out: init is over from then on.
    started: AtomicBool,
    init_failure: Mutex<Option<oneshot::Sender<InitFailure>>>,
}

/// A running Runtime API endpoint.
pub struct RuntimeApi {
    pub address: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RuntimeApi {
    /// Serves the endpoint on `listener`; invocations arrive through `inbox` and an
    /// init failure is reported on `init_failure`.
    pub fn serve(
        listener: std::net::TcpListener,
        inbox: mpsc::Receiver<Invocation>,
        init_failure: oneshot::Sender<InitFailure>,
    ) -> std::io::Result<Self> {
        let state = Arc::new(ApiState {
            inbox: tokio::sync::Mutex::new(inbox),
            current: Mutex::new(None),
            started: AtomicBool::new(false),
            init_failure: Mutex::new(Some(init_failure)),
        });
        let router = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(respond),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(fail))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .fallback(not_found)
            .with_state(state);
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let address = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self { address, server })
    }
}

/// Lambda's error document, as runtimes and invoke errors carry it.
pub(crate) fn error_json(error_type: &str, message: &str) -> String {
    serde_json::json!({ "errorType": error_type, "errorMessage": message }).to_string()
}

fn runtime_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    let body = error_json(error_type, message);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn accepted() -> Response {
    (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"OK"}"#,
    )
        .into_response()
}

async fn next(State(state): State<Arc<ApiState>>) -> Response {
    if state.current.lock().expect("runtime state").is_some() {
        return runtime_error(
            StatusCode::FORBIDDEN,
            "InvalidStateTransition",
            "State transition from Running to Ready failed: the current invocation has no response or error yet",
        );
    }
    let Some(invocation) = state.inbox.lock().await.recv().await else {
        return runtime_error(
            StatusCode::GONE,
            "EnvironmentShutdown",
            "This execution environment is shutting down",
        );
    };
    state.started.store(true, Ordering::Release);
    let Invocation {
        request_id,
        payload,
        timeout,
        invoked_arn,
        client_context,
        picked_up,
        outcome,
    } = invocation;
    let _ = picked_up.send(());
    let deadline_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|now| (now + timeout).as_millis() as u64)
        .unwrap_or_default();
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    put("lambda-runtime-aws-request-id", &request_id);
    put("lambda-runtime-deadline-ms", &deadline_ms.to_string());
    put("lambda-runtime-invoked-function-arn", &invoked_arn);
    put("lambda-runtime-trace-id", &trace_id(&request_id));
    if let Some(client_context) = &client_context {
        put("lambda-runtime-client-context", client_context);
    }
    put("content-type", "application/json");
    *state.current.lock().expect("runtime state") = Some(Current {
        request_id,
        outcome,
    });
    (StatusCode::OK, headers, Body::from(payload)).into_response()
}

/// An X-Ray trace header for the invocation, derived from its id.
fn trace_id(request_id: &str) -> String {
    let hex: String = request_id.chars().filter(char::is_ascii_hexdigit).collect();
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!(
        "Root=1-{epoch:08x}-{};Parent={};Sampled=0",
        &hex[..24.min(hex.len())],
        &hex[hex.len().saturating_sub(16)..]
    )
}

/// Why a response or error was refused.
enum Refusal {
    WrongId,
    NoInvocation,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::WrongId => runtime_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestID",
                "Invalid request ID",
            ),
            Refusal::NoInvocation => runtime_error(
                StatusCode::FORBIDDEN,
                "InvalidStateTransition",
                "No invocation is in progress: call /runtime/invocation/next first",
            ),
        }
    }
}

/// Takes the current invocation if `id` names it.
fn take_current(state: &ApiState, id: &str) -> Result<Current, Refusal> {
    let mut current = state.current.lock().expect("runtime state");
    match current.as_ref() {
        Some(c) if c.request_id == id => Ok(current.take().expect("checked above")),
        Some(_) => Err(Refusal::WrongId),
        None => Err(Refusal::NoInvocation),
    }
}

async fn read_limited(request: Request) -> Result<Bytes, ()> {
    match Limited::new(request.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(_) => Err(()),
    }
}

async fn respond(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let current = match take_current(&state, &id) {
        Ok(current) => current,
        Err(refusal) => return refusal.into_response(),
    };
    match read_limited(request).await {
        Ok(body) => {
            let _ = current.outcome.send(RuntimeOutcome::Response(body));
            accepted()
        }
        Err(()) => {
            let _ = current.outcome.send(RuntimeOutcome::ResponseTooLarge);
            runtime_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                &format!("Exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."),
            )
        }
    }
}

fn error_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(MAX_ERROR_TYPE).collect())
}

async fn fail(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let current = match take_current(&state, &id) {
        Ok(current) => current,
        Err(refusal) => return refusal.into_response(),
    };
    let error_type = error_type(request.headers());
    let body = read_limited(request).await.unwrap_or_default();
    let _ = current
        .outcome
        .send(RuntimeOutcome::Error { error_type, body });
    accepted()
}

async fn init_error(State(state): State<Arc<ApiState>>, request: Request) -> Response {
    if state.started.load(Ordering::Acquire) {
        return runtime_error(
            StatusCode::FORBIDDEN,
            "InvalidStateTransition",
            "Init errors can only be reported before the first invocation",
        );
    }
    let Some(report) = state.init_failure.lock().expect("runtime state").take() else {
        return runtime_error(
            StatusCode::FORBIDDEN,
            "InvalidStateTransition",
            "Init error already reported",
        );
    };
    let error_type = error_type(request.headers());
    let body = read_limited(request).await.unwrap_or_default();
    let _ = report.send(InitFailure { error_type, body });
    accepted()
}

async fn not_found(request: Request) -> Response {
    runtime_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!(
            "No Runtime API route for {} {}",
            request.method(),
            request.uri().path()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One raw HTTP/1.1 exchange: the status and the body.
    async fn call(
        api: &RuntimeApi,
        method: &str,
        path: &str,
        headers: &str,
        body: &[u8],
    ) -> (u16, String, String) {
        let mut stream = tokio::net::TcpStream::connect(api.address).await.unwrap();
        let head = format!(
            "{method} /2018-06-01/runtime{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let _ = stream.write_all(body).await;
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        let text = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, head.to_ascii_lowercase(), body.to_owned())
    }

    struct Harness {
        api: RuntimeApi,
        inbox: mpsc::Sender<Invocation>,
        init: Option<oneshot::Receiver<InitFailure>>,
    }

    async fn harness() -> Harness {
        let (inbox, inbox_rx) = mpsc::channel(1);
        let (init_tx, init_rx) = oneshot::channel();
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let api = RuntimeApi::serve(listener, inbox_rx, init_tx).unwrap();
        Harness {
            api,
            inbox,
            init: Some(init_rx),
        }
    }

    async fn send(harness: &Harness, id: &str) -> oneshot::Receiver<RuntimeOutcome> {
        let (picked_up, _) = oneshot::channel();
        let (outcome, outcome_rx) = oneshot::channel();
        harness
            .inbox
            .send(Invocation {
                request_id: id.to_owned(),
                payload: Bytes::from_static(b"{\"n\":1}"),
                timeout: Duration::from_secs(3),
                invoked_arn: "arn:aws:lambda:us-east-1:000000000000:function:f".to_owned(),
                client_context: None,
                picked_up,
                outcome,
            })
            .await
            .unwrap();
        outcome_rx
    }

    #[tokio::test]
    async fn an_invocation_goes_out_with_lambdas_headers_and_its_response_comes_back() {
        let harness = harness().await;
        let outcome = send(&harness, "req-1").await;
        let (status, head, body) = call(&harness.api, "GET", "/invocation/next", "", b"").await;
        assert_eq!((status, body.as_str()), (200, "{\"n\":1}"));
        assert!(head.contains("lambda-runtime-aws-request-id: req-1"));
        assert!(head.contains("lambda-runtime-deadline-ms: "));
        assert!(head.contains(
            "lambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:000000000000:function:f"
        ));
        assert!(head.contains("lambda-runtime-trace-id: root=1-"));

        // Out of order: another `next` before this invocation is answered.
        assert_eq!(
            call(&harness.api, "GET", "/invocation/next", "", b"")
                .await
                .0,
            403
        );
        // An id that is not the current invocation's.
        assert_eq!(
            call(&harness.api, "POST", "/invocation/other/response", "", b"1")
                .await
                .0,
            400
        );
        assert_eq!(
            call(
                &harness.api,
                "POST",
                "/invocation/req-1/response",
                "",
                b"42"
            )
            .await
            .0,
            202
        );
        assert_eq!(
            outcome.await.unwrap(),
            RuntimeOutcome::Response(Bytes::from_static(b"42"))
        );
        // Answered already: nothing is in progress.
        assert_eq!(
            call(
                &harness.api,
                "POST",
                "/invocation/req-1/response",
                "",
                b"42"
            )
            .await
            .0,
            403
        );
    }

    #[tokio::test]
    async fn errors_carry_their_type_and_body() {
        let harness = harness().await;
        let outcome = send(&harness, "req-2").await;
        call(&harness.api, "GET", "/invocation/next", "", b"").await;
        let body = br#"{"errorType":"ValueError","errorMessage":"bad"}"#;
        let headers = "Lambda-Runtime-Function-Error-Type: Unhandled\r\n";
        assert_eq!(
            call(
                &harness.api,
                "POST",
                "/invocation/req-2/error",
                headers,
                body
            )
            .await
            .0,
            202
        );
        assert_eq!(
            outcome.await.unwrap(),
            RuntimeOutcome::Error {
                error_type: Some("Unhandled".into()),
                body: Bytes::from_static(body)
            }
        );
    }

    #[tokio::test]
    async fn an_oversized_response_is_refused_and_reported() {
        let harness = harness().await;
        let outcome = send(&harness, "req-3").await;
        call(&harness.api, "GET", "/invocation/next", "", b"").await;
        let big = vec![b'x'; MAX_RESPONSE_BYTES + 1];
        let (status, _, body) =
            call(&harness.api, "POST", "/invocation/req-3/response", "", &big).await;
        assert_eq!(status, 413);
        assert!(body.contains("RequestEntityTooLarge"));
        assert_eq!(outcome.await.unwrap(), RuntimeOutcome::ResponseTooLarge);
    }

    #[tokio::test]
    async fn init_errors_are_taken_only_before_the_first_invocation() {
        let mut early = harness().await;
        let headers = "Lambda-Runtime-Function-Error-Type: Runtime.ImportModuleError\r\n";
        let (status, ..) = call(
            &early.api,
            "POST",
            "/init/error",
            headers,
            b"{\"errorType\":\"x\"}",
        )
        .await;
        assert_eq!(status, 202);
        let failure = early.init.take().unwrap().await.unwrap();
        assert_eq!(
            failure.error_type.as_deref(),
            Some("Runtime.ImportModuleError")
        );

        let late = harness().await;
        let _outcome = send(&late, "req-4").await;
        call(&late.api, "GET", "/invocation/next", "", b"").await;
        assert_eq!(
            call(&late.api, "POST", "/init/error", headers, b"{}")
                .await
                .0,
            403
        );
        assert_eq!(call(&late.api, "GET", "/nowhere", "", b"").await.0, 404);
    }
}
