//! aws-chunked request bodies, decoded as they stream in: the signed form
//! (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`), where every chunk carries a
//! signature chained from the request's own, and the unsigned form with trailing
//! checksums (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`) that current SDKs send by default.
//!
//! Decoded bytes come out before their chunk's signature is checked (a chunk can be
//! megabytes); the caller commits nothing until [`ChunkedDecoder::finish`] succeeds.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AuthError;
use crate::sigv4::{Scope, SignatureV4};

/// The largest chunk accepted; SDKs send 64 KiB to 8 MiB.
const MAX_CHUNK: u64 = 64 << 20;
/// The longest chunk header or trailer line accepted.
const MAX_LINE: usize = 4096;
/// The most trailers a body may carry (SDKs send a checksum): they are kept in
/// memory, and a body is otherwise as long as its sender likes.
const MAX_TRAILERS: usize = 16;
/// The sha256 of nothing, part of every chunk's string to sign.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The key and context chunk signatures are checked with.
pub struct ChunkSigner {
    key: [u8; 32],
    amz_date: String,
    scope: String,
    previous: [u8; 32],
}

impl ChunkSigner {
    /// Chunks chained from the request's verified seed signature.
    pub fn new(seed: &SignatureV4, key: [u8; 32]) -> Self {
        let (signature, amz_date, scope) = seed.seed();
        Self::from_parts(key, amz_date, scope, signature)
    }

    fn from_parts(key: [u8; 32], amz_date: &str, scope: &Scope, previous: [u8; 32]) -> Self {
        Self {
            key,
            amz_date: amz_date.to_owned(),
            scope: format!(
                "{}/{}/{}/aws4_request",
                scope.date, scope.region, scope.service
            ),
            previous,
        }
    }

    fn check(&mut self, kind: &str, hashes: &str, presented: &[u8; 32]) -> Result<(), AuthError> {
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256-{kind}\n{}\n{}\n{}\n{hashes}",
            self.amz_date,
            self.scope,
            hex::encode(self.previous)
        );
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("any key length");
        mac.update(string_to_sign.as_bytes());
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        if !bool::from(expected.ct_eq(presented)) {
            return Err(AuthError::SignatureMismatch);
        }
        self.previous = expected;
        Ok(())
    }
}

enum State {
    /// Reading a chunk header line.
    Header,
    /// Passing `remaining` bytes of chunk data through.
    Data {
        remaining: u64,
    },
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
    Done,
}

/// Decodes one aws-chunked body fed to it in pieces of any size.
pub struct ChunkedDecoder {
    signer: Option<ChunkSigner>,
    /// Whether trailers follow the last chunk.
    trailer: bool,
    state: State,
    line: Vec<u8>,
    chunk_signature: Option<[u8; 32]>,
    chunk_hash: Sha256,
    /// Trailing headers, lower-cased names, in order.
    trailers: Vec<(String, String)>,
    decoded: u64,
}

fn malformed(message: &str) -> AuthError {
    AuthError::Incomplete(format!("malformed aws-chunked body: {message}"))
}

impl ChunkedDecoder {
    /// A decoder for `x-amz-content-sha256: <mode>`; `signer` is required for the
    /// signed modes. `None` when the mode is not an aws-chunked one.
    pub fn for_mode(mode: &str, signer: Option<ChunkSigner>) -> Option<Result<Self, AuthError>> {
        let (signed, trailer) = match mode {
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" => (true, false),
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER" => (true, true),
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER" => (false, true),
            _ => return None,
        };
        if signed && signer.is_none() {
            return Some(Err(AuthError::UnsupportedPayload(format!(
                "{mode} needs a header-signed request"
            ))));
        }
        Some(Ok(Self {
            signer: if signed { signer } else { None },
            trailer,
            state: State::Header,
            line: Vec::new(),
            chunk_signature: None,
            chunk_hash: Sha256::new(),
            trailers: Vec::new(),
            decoded: 0,
        }))
    }

    /// Decodes `input`, appending payload bytes to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), AuthError> {
        while !input.is_empty() {
            match self.state {
                State::Header | State::Trailers => {
                    let Some(end) = input.iter().position(|b| *b == b'\n') else {
                        self.push_line(input)?;
                        return Ok(());
                    };
                    self.push_line(&input[..=end])?;
                    input = &input[end + 1..];
                    let line = std::mem::take(&mut self.line);
                    let line = line
                        .strip_suffix(b"\r\n")
                        .ok_or_else(|| malformed("lines must end with CRLF"))?;
                    let line =
                        std::str::from_utf8(line).map_err(|_| malformed("line is not text"))?;
                    if matches!(self.state, State::Header) {
                        self.header(line)?;
                    } else {
                        self.trailer_line(line)?;
                    }
                }
                State::Data { remaining } => {
                    let take = remaining.min(input.len() as u64) as usize;
                    let (data, rest) = input.split_at(take);
                    out.extend_from_slice(data);
                    self.chunk_hash.update(data);
                    self.decoded += take as u64;
                    input = rest;
                    self.state = if remaining == take as u64 {
                        State::DataEnd
                    } else {
                        State::Data {
                            remaining: remaining - take as u64,
                        }
                    };
                }
                State::DataEnd => {
                    self.push_line(&input[..1])?;
                    input = &input[1..];
                    if self.line.len() == 2 {
                        if self.line != b"\r\n" {
                            return Err(malformed("chunk data must end with CRLF"));
                        }
                        self.line.clear();
                        self.end_chunk()?;
                        self.state = State::Header;
                    }
                }
                State::Done => return Err(malformed("bytes after the end of the body")),
            }
        }
        Ok(())
    }

    fn push_line(&mut self, bytes: &[u8]) -> Result<(), AuthError> {
        if self.line.len() + bytes.len() > MAX_LINE {
            return Err(malformed("line too long"));
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn header(&mut self, line: &str) -> Result<(), AuthError> {
        let mut parts = line.split(';');
        let size = parts.next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size, 16).map_err(|_| malformed("bad chunk size"))?;
        if size > MAX_CHUNK {
            return Err(malformed("chunk too large"));
        }
        self.chunk_signature = None;
        for extension in parts {
            if let Some(signature) = extension.trim().strip_prefix("chunk-signature=") {
                let mut bytes = [0u8; 32];
                hex::decode_to_slice(signature, &mut bytes)
                    .map_err(|_| malformed("bad chunk signature"))?;
                self.chunk_signature = Some(bytes);
            }
        }
        if self.signer.is_some() && self.chunk_signature.is_none() {
            return Err(malformed("a signed chunk has no chunk-signature"));
        }
        self.chunk_hash = Sha256::new();
        if size > 0 {
            self.state = State::Data { remaining: size };
            return Ok(());
        }
        self.end_chunk()?;
        // The last chunk: trailer lines follow (none without a trailer mode), then
        // an empty line.
        self.state = State::Trailers;
        Ok(())
    }

    /// Checks the signature of the chunk just read.
    fn end_chunk(&mut self) -> Result<(), AuthError> {
        let hash = std::mem::replace(&mut self.chunk_hash, Sha256::new()).finalize();
        if let (Some(signer), Some(presented)) = (self.signer.as_mut(), self.chunk_signature.take())
        {
            signer.check(
                "PAYLOAD",
                &format!("{EMPTY_SHA256}\n{}", hex::encode(hash)),
                &presented,
            )?;
        }
        Ok(())
    }

    fn trailer_line(&mut self, line: &str) -> Result<(), AuthError> {
        if line.is_empty() {
            self.state = State::Done;
            return Ok(());
        }
        if !self.trailer {
            return Err(malformed("trailers in a body whose mode has none"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| malformed("bad trailer"))?;
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
        if name == "x-amz-trailer-signature" {
            let mut presented = [0u8; 32];
            hex::decode_to_slice(&value, &mut presented)
                .map_err(|_| malformed("bad trailer signature"))?;
            let canonical: String = self
                .trailers
                .iter()
                .map(|(name, value)| format!("{name}:{value}\n"))
                .collect();
            let signer = self
                .signer
                .as_mut()
                .ok_or_else(|| malformed("unexpected trailer signature"))?;
            signer.check(
                "TRAILER",
                &hex::encode(Sha256::digest(canonical.as_bytes())),
                &presented,
            )?;
        } else if self.trailers.len() == MAX_TRAILERS {
            return Err(malformed("too many trailers"));
        } else {
            self.trailers.push((name, value));
        }
        Ok(())
    }

    /// Ends the body: it must have been complete, with its trailer signed when the
    /// mode signs it. Returns the decoded length and the trailers.
    pub fn finish(self) -> Result<(u64, Vec<(String, String)>), AuthError> {
        if !matches!(self.state, State::Done) {
            return Err(malformed("the body ended before its last chunk"));
        }
        Ok((self.decoded, self.trailers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sigv4::signing_key;

    /// AWS's published example (sigv4-streaming): 66560 bytes of `a` in chunks of
    /// 64 KiB and 1 KiB, seeded from the Authorization header's signature.
    fn example_signer() -> ChunkSigner {
        let scope = Scope {
            date: "20130524".into(),
            region: "us-east-1".into(),
            service: "s3".into(),
        };
        let key = signing_key("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", &scope);
        let mut seed = [0u8; 32];
        hex::decode_to_slice(
            "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
            &mut seed,
        )
        .unwrap();
        ChunkSigner::from_parts(key, "20130524T000000Z", &scope, seed)
    }

    fn example_body(last_signature: &str) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n");
        body.extend(std::iter::repeat_n(b'a', 65_536));
        body.extend_from_slice(b"\r\n400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n");
        body.extend(std::iter::repeat_n(b'a', 1024));
        body.extend_from_slice(
            format!("\r\n0;chunk-signature={last_signature}\r\n\r\n").as_bytes(),
        );
        body
    }

    fn decode(
        decoder: &mut ChunkedDecoder,
        body: &[u8],
        piece: usize,
    ) -> Result<Vec<u8>, AuthError> {
        let mut out = Vec::new();
        for part in body.chunks(piece) {
            decoder.feed(part, &mut out)?;
        }
        Ok(out)
    }

    #[test]
    fn aws_streaming_example_verifies_in_pieces_of_any_size() {
        let body = example_body("b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9");
        assert_eq!(body.len(), 66_824);
        for piece in [1, 7, 4096, body.len()] {
            let mut decoder = ChunkedDecoder::for_mode(
                "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                Some(example_signer()),
            )
            .unwrap()
            .unwrap();
            let out = decode(&mut decoder, &body, piece).unwrap();
            assert_eq!(out, vec![b'a'; 66_560]);
            assert_eq!(decoder.finish().unwrap().0, 66_560);
        }
    }

    #[test]
    fn a_wrong_or_missing_chunk_signature_or_a_cut_body_is_refused() {
        let forged = example_body(&"0".repeat(64));
        let mut decoder =
            ChunkedDecoder::for_mode("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", Some(example_signer()))
                .unwrap()
                .unwrap();
        assert_eq!(
            decode(&mut decoder, &forged, 4096),
            Err(AuthError::SignatureMismatch)
        );

        let good = example_body("b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9");
        let mut decoder =
            ChunkedDecoder::for_mode("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", Some(example_signer()))
                .unwrap()
                .unwrap();
        decode(&mut decoder, &good[..good.len() - 100], 4096).unwrap();
        assert!(decoder.finish().is_err());

        let mut decoder =
            ChunkedDecoder::for_mode("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", Some(example_signer()))
                .unwrap()
                .unwrap();
        assert!(decode(&mut decoder, b"10000\r\n", 64).is_err());
        assert!(
            ChunkedDecoder::for_mode("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", None)
                .unwrap()
                .is_err()
        );
    }

    #[test]
    fn unsigned_bodies_with_trailers_decode_and_bound_their_sizes() {
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n";
        let mut decoder = ChunkedDecoder::for_mode("STREAMING-UNSIGNED-PAYLOAD-TRAILER", None)
            .unwrap()
            .unwrap();
        assert_eq!(decode(&mut decoder, body, 3).unwrap(), b"hello world");
        let (len, trailers) = decoder.finish().unwrap();
        assert_eq!(len, 11);
        assert_eq!(
            trailers,
            vec![("x-amz-checksum-crc32".to_owned(), "NhCmhg==".to_owned())]
        );

        let mut huge = ChunkedDecoder::for_mode("STREAMING-UNSIGNED-PAYLOAD-TRAILER", None)
            .unwrap()
            .unwrap();
        assert!(decode(&mut huge, b"ffffffffff\r\n", 64).is_err());
        let mut endless = ChunkedDecoder::for_mode("STREAMING-UNSIGNED-PAYLOAD-TRAILER", None)
            .unwrap()
            .unwrap();
        assert!(decode(&mut endless, &vec![b'1'; MAX_LINE + 1], 512).is_err());
        assert!(ChunkedDecoder::for_mode("UNSIGNED-PAYLOAD", None).is_none());
    }

    /// Seen writing the chunked fuzz target: trailers were kept without limit, so a
    /// body of trailer lines grew memory as long as it streamed.
    #[test]
    fn trailers_are_bounded() {
        let body = |count: usize| {
            let mut body = b"0\r\n".to_vec();
            for i in 0..count {
                body.extend_from_slice(format!("x-amz-meta-{i}:v\r\n").as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            body
        };
        let mode = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
        let mut decoder = ChunkedDecoder::for_mode(mode, None).unwrap().unwrap();
        decode(&mut decoder, &body(MAX_TRAILERS), 5).unwrap();
        assert_eq!(decoder.finish().unwrap().1.len(), MAX_TRAILERS);
        let mut decoder = ChunkedDecoder::for_mode(mode, None).unwrap().unwrap();
        assert!(decode(&mut decoder, &body(MAX_TRAILERS + 1), 5).is_err());
    }
}
