//! The web console: the built files of `web/dist`, embedded in the
//! binary (building the crate needs no Node), served at `/` and `/assets/`.
//!
//! The page needs no token to load; it asks for one and sends it with each
//! API call. Nothing comes from another host: the Content-Security-Policy
//! allows only this origin (inline styles too: the SQL editor sets them).
//! Asset names carry no hash, so browsers revalidate them with the ETag.
//! Each file is also kept gzipped (made once, on first use): a browser that
//! accepts gzip gets a third of the script's bytes.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use sha2::{Digest, Sha256};

/// What the console's page may load and do.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    bytes: &'static [u8],
    content_type: &'static str,
    etag: HeaderValue,
    /// The file gzipped, and the ETag of that form (another representation,
    /// so another tag); none when compressing failed or did not pay.
    gzipped: Option<(Bytes, HeaderValue)>,
}

impl Asset {
    fn new(bytes: &'static [u8], content_type: &'static str) -> Asset {
        let digest = hex::encode(Sha256::digest(bytes));
        // Hex digits, dashes and quotes are always a valid header value.
        let tag = |suffix: &str| {
            HeaderValue::from_str(&format!("\"{}{suffix}\"", &digest[..32]))
                .unwrap_or_else(|_| HeaderValue::from_static("\"\""))
        };
        Asset {
            bytes,
            content_type,
            etag: tag(""),
            gzipped: gzip(bytes)
                .filter(|z| z.len() < bytes.len())
                .map(|z| (z, tag("-gzip"))),
        }
    }

    /// The file, gzipped when the browser accepts it, or `304 Not Modified`
    /// when the browser holds this version.
    fn answer(&self, request: &HeaderMap) -> Response {
        let gzipped = self.gzipped.as_ref().filter(|_| accepts_gzip(request));
        let etag = gzipped.map_or(&self.etag, |(_, tag)| tag);
        let fresh = request
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| {
                tags.split(',')
                    .map(str::trim)
                    .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
            });
        let headers = [
            (header::ETAG, etag.clone()),
            (header::VARY, HeaderValue::from_static("accept-encoding")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (
                HeaderName::from_static("cross-origin-opener-policy"),
                HeaderValue::from_static("same-origin"),
            ),
        ];
        if fresh {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        if let Some((body, _)) = gzipped {
            return (
                headers,
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(self.content_type),
                    ),
                    (header::CONTENT_ENCODING, HeaderValue::from_static("gzip")),
                ],
                body.clone(),
            )
                .into_response();
        }
        (
            headers,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            )],
            self.bytes,
        )
            .into_response()
    }
}

/// `bytes` gzipped at the best level.
fn gzip(bytes: &[u8]) -> Option<Bytes> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).ok()?;
    encoder.finish().ok().map(Bytes::from)
}

/// Whether the request accepts gzip (`Accept-Encoding`, a `q` of 0 refuses it).
fn accepts_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

static INDEX: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_bytes!("web/dist/index.html"),
        "text/html; charset=utf-8",
    )
});
static SCRIPT: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_bytes!("web/dist/app.js"),
        "text/javascript; charset=utf-8",
    )
});
static STYLE: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_bytes!("web/dist/app.css"),
        "text/css; charset=utf-8",
    )
});

/// `/`, `/assets/app.js` and `/assets/app.css`. They are not in the OpenAPI
/// document: they are the console, not the API it uses.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|h: HeaderMap| async move { INDEX.answer(&h) }))
        .route(
            "/assets/app.js",
            get(|h: HeaderMap| async move { SCRIPT.answer(&h) }),
        )
        .route(
            "/assets/app.css",
            get(|h: HeaderMap| async move { STYLE.answer(&h) }),
        )
}
