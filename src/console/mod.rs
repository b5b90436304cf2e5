//! The web console: the built files of `web/dist`, embedded in the
//! binary (building the crate needs no Node), served at `/` and `/assets/`.
//!
//! The page needs no token to load; it asks for one and sends it with each
//! API call. Nothing comes from another host: the Content-Security-Policy
//! allows only this origin (inline styles too: the SQL editor sets them).
//! Asset names carry no hash, so browsers revalidate them with the ETag.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
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
}

impl Asset {
    fn new(bytes: &'static [u8], content_type: &'static str) -> Asset {
        let digest = hex::encode(Sha256::digest(bytes));
        Asset {
            bytes,
            content_type,
            // Hex digits and quotes are always a valid header value.
            etag: HeaderValue::from_str(&format!("\"{}\"", &digest[..32]))
                .unwrap_or_else(|_| HeaderValue::from_static("\"\"")),
        }
    }

    /// The file, or `304 Not Modified` when the browser holds this version.
    fn answer(&self, request: &HeaderMap) -> Response {
        let fresh = request
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| {
                tags.split(',')
                    .map(str::trim)
                    .any(|tag| tag == "*" || tag.trim_start_matches("W/") == self.etag)
            });
        let headers = [
            (header::ETAG, self.etag.clone()),
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
