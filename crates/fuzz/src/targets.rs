//! The targets. Text inputs are read as lossy UTF-8, so every byte string is a
//! valid input and the parsers see the invalid-looking text a client can send.

use std::io::Cursor;
use std::path::Path;

use http::{HeaderMap, HeaderName, HeaderValue};
use nimbus_auth::chunked::{ChunkSigner, ChunkedDecoder};
use nimbus_auth::policy::{self, Policy, PolicyKind, PrincipalRef};
use nimbus_auth::sigv4::{self, Keys, PathStyle, RequestParts, SignatureV4};
use nimbus_edge::protocol::query::QueryRequest;
use nimbus_edge::protocol::xml::{self, XmlWriter};
use nimbus_edge::service::ServiceRequest;
use nimbus_logs::filter::Filter;
use nimbus_scheduler::expression::{self, Expression};
use time::OffsetDateTime;
use time::macros::datetime;

use crate::Target;

pub static TARGETS: &[Target] = &[
    Target {
        name: "sigv4",
        run: sigv4,
        dictionary: &[
            "AWS4-HMAC-SHA256 ",
            "Credential=",
            "SignedHeaders=",
            "Signature=",
            "/aws4_request",
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=",
            "X-Amz-Date=",
            "X-Amz-Expires=",
            "X-Amz-SignedHeaders=",
            "X-Amz-Signature=",
            "X-Amz-Security-Token=",
            "x-amz-date: ",
            "x-amz-content-sha256: ",
            "UNSIGNED-PAYLOAD",
            "host;x-amz-date",
            "%2F",
            "%",
            "/../",
            "//",
            "\n",
            "&",
            "=",
        ],
    },
    Target {
        name: "chunked",
        run: chunked,
        dictionary: &[
            ";chunk-signature=",
            "\r\n",
            "0\r\n",
            "x-amz-checksum-crc32:",
            "x-amz-trailer-signature:",
            "ffffffffffffffff",
            "4000000",
        ],
    },
    Target {
        name: "query",
        run: query,
        dictionary: &[
            "Action=",
            "Version=2011-06-15",
            "&",
            "=",
            "%",
            "+",
            "X-Amz-",
            "\n",
            "Policy.member.1=",
        ],
    },
    Target {
        name: "xml",
        run: xml,
        dictionary: &[
            "<Part>",
            "</Part>",
            "<PartNumber>",
            "</PartNumber>",
            "<ETag>",
            "</ETag>",
            "<Object>",
            "</Object>",
            "<Key>",
            "</Key>",
            "&amp;",
            "&lt;",
            "&#13;",
            "&#x41;",
            "<![CDATA[",
            "]]>",
            "<!--",
            "-->",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
            " xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"",
            "<LambdaFunctionConfiguration>",
            "<Filter><S3Key><FilterRule><Name>prefix</Name><Value>",
        ],
    },
    Target {
        name: "policy",
        run: policy,
        dictionary: &[
            "\"Version\":\"2012-10-17\"",
            "\"Statement\":",
            "\"Effect\":\"Allow\"",
            "\"Effect\":\"Deny\"",
            "\"Action\":",
            "\"NotAction\":",
            "\"Resource\":",
            "\"NotResource\":",
            "\"Principal\":",
            "\"NotPrincipal\":",
            "\"Condition\":",
            "\"StringLike\"",
            "\"ForAnyValue:StringEquals\"",
            "\"IpAddress\"",
            "\"DateLessThan\"",
            "\"NumericGreaterThan\"",
            "\"Bool\"",
            "IfExists",
            "${aws:username}",
            "${",
            "*",
            "?",
            "arn:aws:s3:::",
            "\"AWS\":",
            "\"Service\":",
            "[",
            "]",
            "{",
            "}",
        ],
    },
    Target {
        name: "zip",
        run: zip,
        dictionary: &[
            "PK\x03\x04",
            "PK\x01\x02",
            "PK\x05\x06",
            "../",
            "/",
            "..",
            "\\",
        ],
    },
    Target {
        name: "tar",
        run: tar,
        dictionary: &[".wh.", ".wh..wh..opq", "../", "ustar", "00000000000"],
    },
    Target {
        name: "manifest",
        run: manifest,
        dictionary: &[
            "\"schemaVersion\":2",
            "\"mediaType\":",
            "\"application/vnd.oci.image.manifest.v1+json\"",
            "\"application/vnd.oci.image.index.v1+json\"",
            "\"config\":",
            "\"layers\":",
            "\"manifests\":",
            "\"subject\":",
            "\"urls\":[]",
            "\"size\":",
            "\"digest\":\"sha256:",
            "sha512:",
            "\"annotations\":{}",
            "\"artifactType\":",
        ],
    },
    Target {
        name: "range",
        run: range,
        dictionary: &["bytes=", "-", ",", " ", "\n"],
    },
    Target {
        name: "schedule",
        run: schedule,
        dictionary: &[
            "rate(",
            "cron(",
            "at(",
            ")",
            " minutes",
            " hours",
            " days",
            "?",
            "*",
            "L",
            "W",
            "#",
            "/",
            "-",
            ",",
            "MON-FRI",
            "JAN",
            "2026-11-25T09:00:00",
            "\nEurope/Berlin",
        ],
    },
    Target {
        name: "filter",
        run: filter,
        dictionary: &[
            "{",
            "}",
            "$.",
            "[0]",
            "&&",
            "||",
            "(",
            ")",
            "=",
            "!=",
            "<=",
            ">",
            "\"",
            "*",
            "IS NULL",
            "NOT EXISTS",
            "true",
            "null",
            "?",
            "-",
            "\n",
        ],
    },
];

/// The secret every signed seed was made with (`AKIDEXAMPLE`, as in AWS's test suite).
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// When the fuzz targets sign: the day the seeds were signed for.
const NOW: OffsetDateTime = datetime!(2026-11-25 12:00:00 UTC);

/// `METHOD PATH?QUERY` on the first line, `name: value` headers until an empty line,
/// then the body. Headers that HTTP could not carry are left out.
fn http_request(data: &[u8]) -> (String, String, String, HeaderMap, &[u8]) {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &data[data.len()..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split('\n');
    let request_line = lines.next().unwrap_or_default();
    let (method, target) = request_line.split_once(' ').unwrap_or((request_line, "/"));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim()),
        ) {
            headers.append(name, value);
        }
    }
    (
        method.to_owned(),
        path.to_owned(),
        query.to_owned(),
        headers,
        body,
    )
}

fn style_of(signature: &SignatureV4) -> PathStyle {
    if signature.scope.service == "s3" {
        PathStyle::AsSent
    } else {
        PathStyle::Normalized
    }
}

/// The payload hash a request is verified with, as nimbus's authenticator takes it:
/// the declared one, an unsigned payload for a presigned S3 URL, else the body's.
fn payload_hash(signature: &SignatureV4, headers: &HeaderMap, body: &[u8]) -> String {
    match headers.get(sigv4::CONTENT_SHA256) {
        Some(value) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
        None if signature.is_presigned() && style_of(signature) == PathStyle::AsSent => {
            sigv4::UNSIGNED_PAYLOAD.to_owned()
        }
        None => sigv4::payload_sha256(body),
    }
}

/// An Authorization header or presigned query, read and verified; then the same
/// request signed by nimbus's own signer must verify (signer and verifier agree on
/// the canonical request whatever the path, query and headers).
fn sigv4(data: &[u8]) {
    let (method, path, query, mut headers, body) = http_request(data);
    let parts = RequestParts {
        method: &method,
        path: &path,
        query: &query,
        headers: &headers,
    };
    let _ = sigv4::scope_service(&parts);
    if let Ok(Some(signature)) = SignatureV4::from_request(&parts) {
        let _ = signature.check_time(NOW);
        let key = sigv4::signing_key(SECRET, &signature.scope);
        let payload = payload_hash(&signature, &headers, body);
        let _ = signature.verify(&key, &parts, style_of(&signature), &payload);
    }

    if query
        .split('&')
        .any(|pair| pair.split('=').next() == Some("X-Amz-Algorithm"))
    {
        return;
    }
    headers.remove(http::header::AUTHORIZATION);
    if !headers.contains_key(http::header::HOST) {
        headers.insert(http::header::HOST, HeaderValue::from_static("localhost"));
    }
    let keys = Keys {
        access_key_id: "AKIDEXAMPLE".into(),
        secret: SECRET.into(),
        session_token: None,
    };
    for (service, style) in [("sts", PathStyle::Normalized), ("s3", PathStyle::AsSent)] {
        let target = sigv4::Target {
            method: &method,
            path: &path,
            query: &query,
            service,
            region: "us-east-1",
            style,
        };
        if sigv4::sign(&keys, &target, &mut headers, sigv4::UNSIGNED_PAYLOAD, NOW).is_err() {
            return;
        }
        let parts = RequestParts {
            method: &method,
            path: &path,
            query: &query,
            headers: &headers,
        };
        let signature = SignatureV4::from_request(&parts)
            .expect("a signed request reads back")
            .expect("a signed request has a signature");
        let key = sigv4::signing_key(SECRET, &signature.scope);
        signature
            .verify(&key, &parts, style, sigv4::UNSIGNED_PAYLOAD)
            .expect("a request nimbus signed verifies");
        signature.check_time(NOW).expect("signed just now");
    }
}

/// The signature a signed aws-chunked body chains from: this request, signed at
/// [`NOW`] (the chunked seeds were signed after it).
fn chunk_signer() -> ChunkSigner {
    let mut headers = HeaderMap::new();
    headers.insert(http::header::HOST, HeaderValue::from_static("localhost"));
    let keys = Keys {
        access_key_id: "AKIDEXAMPLE".into(),
        secret: SECRET.into(),
        session_token: None,
    };
    let target = sigv4::Target {
        method: "PUT",
        path: "/bucket/key",
        query: "",
        service: "s3",
        region: "us-east-1",
        style: PathStyle::AsSent,
    };
    let mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
    sigv4::sign(&keys, &target, &mut headers, mode, NOW).expect("signs");
    let parts = RequestParts {
        method: target.method,
        path: target.path,
        query: target.query,
        headers: &headers,
    };
    let signature = SignatureV4::from_request(&parts)
        .expect("reads back")
        .expect("signed");
    let key = sigv4::signing_key(SECRET, &signature.scope);
    ChunkSigner::new(&signature, key)
}

const CHUNKED_MODES: [&str; 3] = [
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
    "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
];

type Decoded = Result<(Vec<u8>, u64, Vec<(String, String)>), String>;

/// Decodes an aws-chunked `body` in `mode` fed in pieces of `piece` bytes.
fn decode_chunked(mode: &str, body: &[u8], piece: usize) -> Decoded {
    let mut decoder = ChunkedDecoder::for_mode(mode, Some(chunk_signer()))
        .expect("an aws-chunked mode")
        .expect("a signer was given");
    let mut out = Vec::new();
    for part in body.chunks(piece) {
        decoder
            .feed(part, &mut out)
            .map_err(|err| err.to_string())?;
    }
    let (length, trailers) = decoder.finish().map_err(|err| err.to_string())?;
    Ok((out, length, trailers))
}

/// The first byte picks the mode and the second how the body is cut into pieces;
/// the rest is the body. Fed whole or in pieces, it must decode the same.
fn chunked(data: &[u8]) {
    let [mode, step, body @ ..] = data else {
        return;
    };
    let mode = CHUNKED_MODES[usize::from(*mode) % CHUNKED_MODES.len()];
    let whole = decode_chunked(mode, body, body.len().max(1));
    let pieces = decode_chunked(mode, body, usize::from(*step % 16) + 1);
    if let Ok((out, length, _)) = &whole {
        assert_eq!(
            out.len() as u64,
            *length,
            "the decoded length counts the output"
        );
    }
    assert_eq!(whole, pieces, "decoding depends on how the body is cut");
}

/// A query-protocol request: the query string on the first line, the form body
/// after it, sent as a POST form.
fn query(data: &[u8]) {
    let (url_query, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &data[data.len()..]),
    };
    let uri = format!("/?{}", String::from_utf8_lossy(url_query));
    let Ok(request) = http::Request::post(uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(())
    else {
        return;
    };
    let (parts, ()) = request.into_parts();
    let request = ServiceRequest {
        parts,
        body: bytes::Bytes::copy_from_slice(body),
    };
    if let Ok(parsed) = QueryRequest::parse(&request) {
        assert_eq!(parsed.param("Action"), Some(parsed.action.as_str()));
    }
}

/// Writes records of `fields` inside `element` as nimbus writes XML.
fn write_records(element: &str, fields: &[&str], records: &[Vec<String>]) -> String {
    let mut writer = XmlWriter::new();
    writer.open("Root");
    for record in records {
        writer.open(element);
        for (field, text) in fields.iter().zip(record) {
            writer.leaf(field, text);
        }
        writer.close(element);
    }
    writer.close("Root");
    writer.finish()
}

/// S3's XML readers (CompleteMultipartUpload's parts, DeleteObjects' keys, bucket
/// notifications). What the reader reads, the writer must write back so that the
/// reader reads it again unchanged; and the input as text, written by the writer
/// (as an SDK escapes a key), must read back as itself.
fn xml(data: &[u8]) {
    let _ = nimbus_s3::notifications::parse(data);
    let text = String::from_utf8_lossy(data).into_owned();
    let written = write_records("Object", &["Key"], &[vec![text.clone()]]);
    let reread = xml::records(written.as_bytes(), "Object", &["Key"]);
    assert_eq!(reread.ok(), Some(vec![vec![text]]), "{written}");
    for (element, fields) in [
        ("Part", &["PartNumber", "ETag"][..]),
        ("Object", &["Key"][..]),
    ] {
        let Ok(records) = xml::records(data, element, fields) else {
            continue;
        };
        let _ = xml::first_record(data, element, fields);
        let written = write_records(element, fields, &records);
        let reread = xml::records(written.as_bytes(), element, fields)
            .expect("what the writer wrote reads back");
        assert_eq!(records, reread, "{written}");
    }
}

/// A policy document of each kind, evaluated when it parses; its compact JSON
/// form must parse too and decide the same.
fn policy(data: &[u8]) {
    let document = String::from_utf8_lossy(data);
    let aws = ["arn:aws:iam::000000000000:user/alice".to_owned()];
    let principal = PrincipalRef {
        aws: &aws,
        account: "000000000000",
        service: None,
    };
    let context = [
        ("aws:username".to_owned(), vec!["alice".to_owned()]),
        ("aws:SourceIp".to_owned(), vec!["10.1.2.3".to_owned()]),
        (
            "aws:CurrentTime".to_owned(),
            vec!["2026-11-25T12:00:00Z".to_owned()],
        ),
        ("s3:prefix".to_owned(), vec!["home/alice/".to_owned()]),
    ];
    let requests = [
        ("s3:GetObject", "arn:aws:s3:::bucket/home/alice/a.txt"),
        ("s3:ListBucket", "arn:aws:s3:::bucket"),
        ("sts:AssumeRole", "arn:aws:iam::000000000000:role/r"),
        ("lambda:InvokeFunction", "*"),
    ]
    .map(|(action, resource)| policy::Request {
        action,
        resource,
        principal: &principal,
        context: &context,
    });
    let compact = serde_json::from_str::<serde_json::Value>(&document)
        .ok()
        .map(|value| value.to_string());
    for kind in [
        PolicyKind::Identity,
        PolicyKind::Resource,
        PolicyKind::Trust,
    ] {
        let Ok(parsed) = Policy::parse(&document, kind) else {
            continue;
        };
        let decisions: Vec<_> = requests.iter().map(|r| parsed.evaluate(r)).collect();
        let compact = compact.as_deref().expect("a parsed policy is JSON");
        let reparsed = Policy::parse(compact, kind).expect("its compact form parses");
        let again: Vec<_> = requests.iter().map(|r| reparsed.evaluate(r)).collect();
        assert_eq!(decisions, again, "{compact}");
        for request in &requests {
            let _ = policy::evaluate(&[&parsed], Some(&parsed), request);
        }
    }
}

/// What an unpacker wrote must stay in its directory: nothing may appear beside it.
fn contained(scratch: &Path) {
    let beside: Vec<_> = std::fs::read_dir(scratch)
        .expect("scratch dir")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert_eq!(
        beside,
        ["root"],
        "an entry was written outside its directory"
    );
}

/// A function's code zip, unpacked under a small limit (the real one is 250 MB).
fn zip(data: &[u8]) {
    const LIMIT: u64 = 64 << 10;
    let scratch = tempfile::tempdir().expect("scratch dir");
    let root = scratch.path().join("root");
    std::fs::create_dir(&root).expect("root");
    if let Ok(written) = nimbus_lambda::code::unpack(Cursor::new(data), &root, LIMIT) {
        assert!(written <= LIMIT, "unpacked {written} bytes past the limit");
    }
    contained(scratch.path());
}

/// An image layer unpacked into a snapshot directory, whiteouts and all, under a
/// small bound (the real one is 4 GiB).
fn tar(data: &[u8]) {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let root = scratch.path().join("root");
    std::fs::create_dir(&root).expect("root");
    let limits = nimbus_ecs::images::Limits {
        layer_bytes: 1 << 20,
        ..Default::default()
    };
    let _ = nimbus_ecs::images::unpack_layer(Cursor::new(data), data.len() as u64, &root, &limits);
    contained(scratch.path());
}

/// An image manifest or index, sent with each of the content types a client sends.
fn manifest(data: &[u8]) {
    use nimbus_registry::store::{
        DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, parse_manifest,
    };
    for content_type in [
        None,
        Some(OCI_MANIFEST),
        Some(OCI_INDEX),
        Some(DOCKER_MANIFEST),
        Some(DOCKER_LIST),
        Some("application/json; charset=utf-8"),
    ] {
        let _ = parse_manifest(data, content_type);
    }
}

/// A `Range` header (the first line) over an object of the length the second line
/// gives (S3 and the registry read it with one parser): a range inside the object.
fn range(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (header, len) = text.split_once('\n').unwrap_or((&text, "1000"));
    let Ok(len) = len.trim().parse::<u64>() else {
        return;
    };
    if let Some((start, end)) = nimbus_edge::protocol::range::byte_range(header, len) {
        assert!(start <= end && end < len, "{start}-{end} outside {len}");
    }
}

/// A schedule expression (the first line) in a time zone (the second), and its
/// next few times after a fixed instant.
fn schedule(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (expression, zone) = match text.split_once('\n') {
        Some((expression, zone)) => (expression, Some(zone)),
        None => (&*text, None),
    };
    let Ok(zone) = expression::time_zone(zone) else {
        return;
    };
    let Ok(parsed) = Expression::parse(expression) else {
        return;
    };
    let _ = parsed.is_one_time();
    let anchor = NOW.unix_timestamp() * 1000;
    let mut from = anchor - 86_400_000;
    for _ in 0..3 {
        let Some(next) = parsed.next(from, false, anchor, &zone) else {
            return;
        };
        assert!(next > from, "the next time {next} is not after {from}");
        from = next;
    }
}

/// A filter pattern (the first line) matched against the rest as a log message,
/// and against a few fixed ones.
fn filter(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (pattern, message) = text.split_once('\n').unwrap_or((&text, ""));
    let Ok(filter) = Filter::parse(pattern) else {
        return;
    };
    for message in [
        message,
        "[ERROR] disk full",
        r#"{"level":"error","latency":250,"user":{"id":7,"tags":["a","b"]},"ok":false,"n":null}"#,
    ] {
        let _ = filter.matches(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sigv4 seeds were signed by botocore: each verifies, so mutants start from
    /// requests that get past every check.
    #[test]
    fn the_signed_seeds_verify() {
        for seed in crate::seeds("sigv4").unwrap() {
            let (method, path, query, headers, body) = http_request(&seed);
            let parts = RequestParts {
                method: &method,
                path: &path,
                query: &query,
                headers: &headers,
            };
            let signature = SignatureV4::from_request(&parts).unwrap().unwrap();
            let payload = payload_hash(&signature, &headers, body);
            let key = sigv4::signing_key(SECRET, &signature.scope);
            signature
                .verify(&key, &parts, style_of(&signature), &payload)
                .unwrap_or_else(|err| panic!("{}: {err}", String::from_utf8_lossy(&seed)));
            signature.check_time(NOW).unwrap();
        }
    }

    /// The chunked seeds carry valid chunk and trailer signatures.
    #[test]
    fn the_chunked_seeds_decode() {
        for seed in crate::seeds("chunked").unwrap() {
            let mode = CHUNKED_MODES[usize::from(seed[0]) % CHUNKED_MODES.len()];
            let (out, _, _) = decode_chunked(mode, &seed[2..], 7).unwrap();
            assert!(!out.is_empty() || seed.len() < 64);
        }
    }
}
