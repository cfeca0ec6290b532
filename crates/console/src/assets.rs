//! The console's pages: the gzipped copies embedded at build time, or (for working
//! on the front end) the files of a directory named by `NIMBUS_CONSOLE_DIR`.

use std::io::Read;
use std::path::PathBuf;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// Pages may load only what this server sends; CodeMirror styles itself with
/// `<style>` elements, hence inline styles.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub enum Assets {
    Embedded,
    Directory(PathBuf),
}

impl Assets {
    /// The bytes embedded under `name` (a path below `console/dist`), gzipped.
    fn embedded(name: &str) -> Option<&'static [u8]> {
        EMBEDDED
            .iter()
            .find(|(path, _)| *path == name)
            .map(|(_, bytes)| *bytes)
    }

    /// The embedded pages' total size in the binary, for `nimbus status`-like reports.
    pub fn embedded_bytes() -> usize {
        EMBEDDED.iter().map(|(_, bytes)| bytes.len()).sum()
    }

    /// Answers `GET /console/<path>`.
    pub fn serve(&self, path: &str, request: &HeaderMap) -> Response {
        let name = if path.is_empty() { "index.html" } else { path };
        if name
            .split('/')
            .any(|segment| segment.is_empty() || segment.starts_with('.'))
        {
            return not_found();
        }
        let mut response = match self {
            Assets::Embedded if EMBEDDED.is_empty() => return not_built(),
            Assets::Embedded => match Self::embedded(name) {
                Some(gzipped) => gzip_or_plain(gzipped, request),
                None => return not_found(),
            },
            Assets::Directory(dir) => match std::fs::read(dir.join(name)) {
                Ok(bytes) => Body::from(bytes).into_response(),
                Err(_) => return not_found(),
            },
        };
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(name)),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        // Vite names everything under assets/ by its content hash.
        let cache = if name.starts_with("assets/") && matches!(self, Assets::Embedded) {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        if name.ends_with(".html") {
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            );
            headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            headers.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
        }
        response
    }
}

/// The gzipped bytes as they are when the client takes gzip, else inflated.
fn gzip_or_plain(gzipped: &'static [u8], request: &HeaderMap) -> Response {
    let takes_gzip = request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| coding.split(';').next().is_some_and(|c| c.trim() == "gzip"));
    if takes_gzip {
        return (
            [
                (header::CONTENT_ENCODING, "gzip"),
                (header::VARY, "accept-encoding"),
            ],
            gzipped,
        )
            .into_response();
    }
    let mut plain = Vec::new();
    match flate2::read::GzDecoder::new(gzipped).read_to_end(&mut plain) {
        Ok(_) => ([(header::VARY, "accept-encoding")], plain).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "an embedded console asset does not inflate");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no such console page\n").into_response()
}

fn not_built() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "This nimbus was built without the console's pages. Run `npm ci && npm run build` in \
         console/ and build nimbus again (scripts/server.sh does both).\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_leave_the_directory_are_not_served() {
        let assets = Assets::Directory(PathBuf::from("/"));
        for name in ["../etc/passwd", "assets/../../x", ".env", "a//b"] {
            let response = assets.serve(name, &HeaderMap::new());
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{name}");
        }
    }

    #[test]
    fn types_follow_extensions() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(
            content_type("assets/app-1a2b.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
    }
}
