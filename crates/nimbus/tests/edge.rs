//! The edge as a client sees it: internal endpoints, routing, error shapes and limits.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{Server, read_response};

#[test]
fn health_names_every_service_and_its_state() {
    let server = Server::start();
    let response =
        server.request("GET /_nimbus/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let health: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(health["status"], "running");
    assert_eq!(health["services"]["sts"], "running");
    assert_eq!(health["services"]["lambda"], "running");
    assert_eq!(health["services"]["s3"], "running");
    assert_eq!(health["services"]["ecr"], "running");
    for service in ["iam", "logs", "scheduler", "ecs"] {
        assert_eq!(health["services"][service], "running", "{service}");
    }
    assert_eq!(health["auth"], "strict");
}

#[test]
fn metrics_count_requests_by_service_operation_and_status() {
    let server = Server::start();
    let unsigned = "GET /?Action=GetCallerIdentity&Version=2011-06-15 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    server.request(unsigned);
    let metrics =
        server.request("GET /_nimbus/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains(
            r#"nimbus_requests_total{service="unknown",operation="unknown",status="403"} 1"#
        ),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("nimbus_request_duration_seconds_bucket")
    );
}

#[test]
fn unsigned_requests_get_missing_authentication_token_in_their_protocol() {
    let server = Server::start();
    let query = server.request("GET /?Action=GetCallerIdentity&Version=2011-06-15 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(query.status, 403);
    assert!(
        query
            .body
            .contains("<Code>MissingAuthenticationToken</Code>"),
        "{}",
        query.body
    );
    assert!(query.header("x-amzn-requestid").is_some());

    let unsigned = server.request(
        "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Logs_20140328.DescribeLogGroups\r\n\
         Content-Type: application/x-amz-json-1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    );
    assert_eq!(unsigned.status, 403, "{}", unsigned.body);
    assert!(
        unsigned
            .body
            .contains("MissingAuthenticationTokenException"),
        "{}",
        unsigned.body
    );
}

#[test]
fn unknown_services_and_internal_paths_get_clear_errors() {
    let server = Server::start();
    let signed_for_nothing = "GET / HTTP/1.1\r\nHost: x\r\nX-Amz-Date: 20260101T000000Z\r\n\
        Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/frobnicator/aws4_request, \
        SignedHeaders=host;x-amz-date, Signature=0000000000000000000000000000000000000000000000000000000000000000\r\n\
        Connection: close\r\n\r\n";
    let response = server.request(signed_for_nothing);
    assert_eq!(response.status, 400);
    assert!(
        response.body.contains("<Code>UnknownService</Code>"),
        "{}",
        response.body
    );
    assert!(response.body.contains("frobnicator"));

    let internal =
        server.request("GET /_nimbus/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(internal.status, 404);
    assert!(internal.body.contains("/_nimbus/nope"));
}

#[test]
fn malformed_signatures_are_incomplete_signature_errors() {
    let server = Server::start();
    let response = server.request(
        "GET /?Action=GetCallerIdentity HTTP/1.1\r\nHost: x\r\nX-Amz-Date: 20260101T000000Z\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/sts/aws4_request, Signature=00\r\n\
         Connection: close\r\n\r\n",
    );
    assert_eq!(response.status, 400);
    assert!(
        response.body.contains("<Code>IncompleteSignature</Code>"),
        "{}",
        response.body
    );
}

const ROOT_KEY: &str = "AKIDEXAMPLE000000000";

/// Date and timestamp of now, as SigV4 writes them.
fn amz_now() -> (String, String) {
    let now = time::OffsetDateTime::now_utc();
    let date = now
        .format(time::macros::format_description!("[year][month][day]"))
        .unwrap();
    let stamp = now
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap();
    (date, stamp)
}

/// A server whose root key is known, and the head of an STS request signed by that key
/// now (with a signature the body will never match): it passes every check the headers
/// decide, so the body is what the server looks at next.
fn server_and_signed_head(body_headers: &str) -> (Server, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(
        dir.path(),
        &[],
        &[
            ("NIMBUS_ROOT_ACCESS_KEY_ID", ROOT_KEY),
            ("NIMBUS_ROOT_SECRET_ACCESS_KEY", "secret"),
        ],
    )
    .unwrap();
    server.keep(dir);
    let (date, stamp) = amz_now();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Date: {stamp}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential={ROOT_KEY}/{date}/us-east-1/sts/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature={}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n{body_headers}Connection: close\r\n\r\n",
        "0".repeat(64)
    );
    (server, head)
}

#[test]
fn an_oversized_declared_body_is_refused_before_it_is_sent() {
    let (server, head) = server_and_signed_head("Content-Length: 104857600\r\n");
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Only the head: the server must answer without waiting for 100 MB.
    stream.write_all(head.as_bytes()).unwrap();
    let response = read_response(&mut stream);
    assert_eq!(response.status, 413, "{}", response.body);
    assert!(
        response.body.contains("<Code>RequestEntityTooLarge</Code>"),
        "{}",
        response.body
    );
}

#[test]
fn an_unknown_callers_body_is_never_read() {
    let server = Server::start();
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (date, stamp) = amz_now();
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Date: {stamp}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=AKIAUNKNOWN/{date}/us-east-1/lambda/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature={}\r\nContent-Length: 60000000\r\nConnection: close\r\n\r\n",
        "0".repeat(64)
    )
    .unwrap();
    let response = read_response(&mut stream);
    assert_eq!(response.status, 403, "{}", response.body);
    assert_eq!(
        response.header("x-amzn-errortype"),
        Some("UnrecognizedClientException")
    );
}

#[test]
fn an_oversized_chunked_body_is_cut_off_at_the_limit() {
    let (server, head) = server_and_signed_head("Transfer-Encoding: chunked\r\n");
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    for _ in 0..17 {
        if write!(stream, "{:x}\r\n", chunk.len()).is_err() {
            break;
        }
        let _ = stream.write_all(&chunk);
        let _ = stream.write_all(b"\r\n");
    }
    let response = read_response(&mut stream);
    assert_eq!(response.status, 413, "{}", response.body);
}
