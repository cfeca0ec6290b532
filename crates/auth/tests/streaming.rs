//! AWS's published aws-chunked upload example, from its request headers: the seed
//! signature verifies over the streaming mode, and every chunk chains from it.

use http::{HeaderMap, HeaderValue};
use nimbus_auth::sigv4::{PathStyle, RequestParts, SignatureV4, signing_key};
use nimbus_auth::{ChunkSigner, ChunkedDecoder};
use time::macros::datetime;

const MODE: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";

#[test]
fn the_documented_chunked_upload_verifies_end_to_end() {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("host", "s3.amazonaws.com"),
        ("x-amz-date", "20130524T000000Z"),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("x-amz-content-sha256", MODE),
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", "66560"),
        ("content-length", "66824"),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;\
             x-amz-decoded-content-length;x-amz-storage-class,\
             Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    let parts = RequestParts {
        method: "PUT",
        path: "/examplebucket/chunkObject.txt",
        query: "",
        headers: &headers,
    };
    let signature = SignatureV4::from_request(&parts).unwrap().unwrap();
    signature
        .check_time(datetime!(2013-05-24 00:00:00 UTC))
        .unwrap();
    let key = signing_key("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", &signature.scope);
    signature
        .verify(&key, &parts, PathStyle::AsSent, MODE)
        .unwrap();

    let mut body = Vec::new();
    for (size, chunk_signature) in [
        (
            65_536,
            "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
        ),
        (
            1024,
            "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
        ),
        (
            0,
            "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
        ),
    ] {
        body.extend_from_slice(
            format!("{size:x};chunk-signature={chunk_signature}\r\n").as_bytes(),
        );
        body.extend(std::iter::repeat_n(b'a', size));
        body.extend_from_slice(b"\r\n");
    }
    assert_eq!(body.len(), 66_824);
    let mut decoder = ChunkedDecoder::for_mode(MODE, Some(ChunkSigner::new(&signature, key)))
        .unwrap()
        .unwrap();
    let mut payload = Vec::new();
    decoder.feed(&body, &mut payload).unwrap();
    assert_eq!(decoder.finish().unwrap().0, 66_560);
    assert_eq!(payload, vec![b'a'; 66_560]);
}
