//! Errors as problem documents (RFC 9457): one [`ApiError`] that every
//! handler returns, built from the engine's errors here and nowhere else.
//!
//! The `type` of a problem is `/problems/<kind>`: the engine's error classes
//! (the same as the command line's exit codes) and the HTTP-level kinds
//! below. `GET /problems/<kind>` describes each.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use materializer_core::commit::LedgerError;
use materializer_core::config::ConfigError;
use materializer_core::mapping::MappingError;
use materializer_core::preview::PreviewError;
use materializer_core::run::{RunError, SetupError};
use materializer_core::source::SourceError;
use materializer_core::warehouse::WarehouseError;
use materializer_core::{ErrorClass, report};

/// A problem document (RFC 9457).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// `/problems/<kind>`: what kind of problem it is (see `GET /problems/{kind}`).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Errors in SQL, with their position.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<SqlError>,
    /// A save refused because the mapping's file changed since the text it
    /// replaces was loaded: the file's text and version now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<CurrentMapping>,
}

/// A mapping file's text and version, as they are now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct CurrentMapping {
    pub mapping: String,
    pub version: String,
}

/// An error at a place in SQL.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct SqlError {
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub message: String,
}

/// What kind of problem an answer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// A failure of the engine, by class.
    Engine(ErrorClass),
    Unauthorized,
    Forbidden,
    NotFound,
    BadRequest,
    TooLarge,
    Timeout,
    Unavailable,
}

impl ProblemKind {
    /// Every kind, for the descriptions served under `/problems/`.
    pub fn all() -> Vec<ProblemKind> {
        let mut kinds: Vec<ProblemKind> = ErrorClass::ALL
            .iter()
            .map(|c| ProblemKind::Engine(*c))
            .collect();
        kinds.extend([
            ProblemKind::Unauthorized,
            ProblemKind::Forbidden,
            ProblemKind::NotFound,
            ProblemKind::BadRequest,
            ProblemKind::TooLarge,
            ProblemKind::Timeout,
            ProblemKind::Unavailable,
        ]);
        kinds
    }

    pub fn slug(self) -> &'static str {
        match self {
            ProblemKind::Engine(class) => class.slug(),
            ProblemKind::Unauthorized => "unauthorized",
            ProblemKind::Forbidden => "forbidden",
            ProblemKind::NotFound => "not-found",
            ProblemKind::BadRequest => "bad-request",
            ProblemKind::TooLarge => "too-large",
            ProblemKind::Timeout => "timeout",
            ProblemKind::Unavailable => "unavailable",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            ProblemKind::Engine(class) => class.title(),
            ProblemKind::Unauthorized => "Unauthorized",
            ProblemKind::Forbidden => "Forbidden",
            ProblemKind::NotFound => "Not found",
            ProblemKind::BadRequest => "Bad request",
            ProblemKind::TooLarge => "Too large",
            ProblemKind::Timeout => "Timed out",
            ProblemKind::Unavailable => "Unavailable",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            ProblemKind::Engine(class) => class.advice(),
            ProblemKind::Unauthorized => {
                "Send `Authorization: Bearer <token>` with a token the server accepts."
            }
            ProblemKind::Forbidden => {
                "The token is not accepted, or the action is not allowed on this server."
            }
            ProblemKind::NotFound => "No such topic, run or route.",
            ProblemKind::BadRequest => {
                "The request is malformed: its body is not the JSON the route documents, or a parameter is wrong."
            }
            ProblemKind::TooLarge => {
                "The request asks for more than the server allows (sample events, body size)."
            }
            ProblemKind::Timeout => "The work took longer than the server allows; make it smaller.",
            ProblemKind::Unavailable => "The server is shutting down and accepts no new runs.",
        }
    }

    pub fn from_slug(slug: &str) -> Option<ProblemKind> {
        ProblemKind::all().into_iter().find(|k| k.slug() == slug)
    }

    /// The status an answer of this kind has unless a route says otherwise.
    pub fn status(self) -> StatusCode {
        match self {
            ProblemKind::Engine(ErrorClass::Config | ErrorClass::Data) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ProblemKind::Engine(ErrorClass::SourceUnavailable | ErrorClass::SinkUnavailable) => {
                StatusCode::BAD_GATEWAY
            }
            ProblemKind::Engine(ErrorClass::Conflict | ErrorClass::Stopped) => StatusCode::CONFLICT,
            ProblemKind::Engine(ErrorClass::Internal) => StatusCode::INTERNAL_SERVER_ERROR,
            ProblemKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ProblemKind::Forbidden => StatusCode::FORBIDDEN,
            ProblemKind::NotFound => StatusCode::NOT_FOUND,
            ProblemKind::BadRequest => StatusCode::BAD_REQUEST,
            ProblemKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProblemKind::Timeout => StatusCode::REQUEST_TIMEOUT,
            ProblemKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn uri(self) -> String {
        format!("/problems/{}", self.slug())
    }
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: ProblemKind,
    title: &'static str,
    detail: String,
    errors: Vec<SqlError>,
    current: Option<CurrentMapping>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An answer of `kind` with its usual status and title.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> ApiError {
        ApiError {
            status: kind.status(),
            kind,
            title: kind.title(),
            detail: detail.into(),
            errors: Vec::new(),
            current: None,
            headers: Vec::new(),
        }
    }

    /// An engine failure of `class`.
    pub fn class(class: ErrorClass, detail: impl Into<String>) -> ApiError {
        ApiError::new(ProblemKind::Engine(class), detail)
    }

    /// A more precise title than the kind's.
    pub fn titled(mut self, title: &'static str) -> ApiError {
        self.title = title;
        self
    }

    /// With the mapping file as it is now (a save that found it changed).
    pub fn with_current(mut self, current: CurrentMapping) -> ApiError {
        self.current = Some(current);
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }

    pub fn kind(&self) -> ProblemKind {
        self.kind
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<MappingError> for ApiError {
    fn from(error: MappingError) -> Self {
        let sql = match &error {
            MappingError::At { at, message, .. } => SqlError {
                line: Some(at.line),
                column: Some(at.column),
                message: message.clone(),
            },
            other => SqlError {
                line: None,
                column: None,
                message: report(other),
            },
        };
        ApiError {
            errors: vec![sql],
            ..ApiError::class(error.class(), report(&error)).titled("The mapping is not valid")
        }
    }
}

impl From<PreviewError> for ApiError {
    fn from(error: PreviewError) -> Self {
        match error {
            PreviewError::Mapping(e) => e.into(),
            other => ApiError::class(other.class(), report(&other)).titled("The preview failed"),
        }
    }
}

impl From<RunError> for ApiError {
    fn from(error: RunError) -> Self {
        ApiError::class(error.class(), report(&error))
    }
}

impl From<ConfigError> for ApiError {
    fn from(error: ConfigError) -> Self {
        match error {
            // With the place in the SQL, for an editor to mark.
            ConfigError::Mapping(e) => e.into(),
            other => ApiError::class(other.class(), report(&other)),
        }
    }
}

impl From<WarehouseError> for ApiError {
    fn from(error: WarehouseError) -> Self {
        ApiError::class(error.class(), report(&error))
    }
}

impl From<SetupError> for ApiError {
    fn from(error: SetupError) -> Self {
        match &error {
            // What would give the topic a source, as the API and the server take it.
            SetupError::NoSource {
                looked_at,
                settings,
                ..
            } => {
                let recordings = looked_at.parent().unwrap_or(looked_at);
                ApiError::class(
                    error.class(),
                    format!(
                        "{}. Give one: \"source\" in the request, a file or folder under the \
                         server's recordings folder {} (events, one JSON event per line, or \
                         recorded Nakadi batches); `[source] recording = \"PATH\"` in {}; or \
                         start serve with --nakadi-url URL (NAKADI_URL) for a live Nakadi",
                        report(&error),
                        recordings.display(),
                        settings.display()
                    ),
                )
                .titled("No source")
            }
            _ => ApiError::class(error.class(), report(&error)),
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(error: LedgerError) -> Self {
        ApiError::class(error.class(), report(&error))
    }
}

impl From<SourceError> for ApiError {
    fn from(error: SourceError) -> Self {
        ApiError::class(error.class(), report(&error))
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
            ProblemKind::TooLarge
        } else {
            ProblemKind::BadRequest
        };
        ApiError {
            status: if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
                status
            } else {
                kind.status()
            },
            ..ApiError::new(kind, rejection.body_text())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: self.kind.uri(),
            title: self.title.to_string(),
            status: self.status.as_u16(),
            detail: self.detail,
            errors: self.errors,
            current: self.current,
        };
        let mut response = (self.status, Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// Answers a panic in a handler with a problem document instead of a dropped
/// connection; the server goes on.
pub(crate) async fn catch_panics(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use futures::FutureExt;
    let route = request.uri().path().to_string();
    match std::panic::AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(_) => {
            tracing::error!(route, "a handler panicked; the server goes on");
            ApiError::class(
                ErrorClass::Internal,
                "the server failed while answering this request; nothing was changed",
            )
            .into_response()
        }
    }
}

/// A route that does not exist.
pub(crate) async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::new(ProblemKind::NotFound, format!("no route {}", uri.path()))
}

/// A route that exists, asked with a method it does not answer.
pub(crate) async fn no_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        ..ApiError::new(
            ProblemKind::BadRequest,
            format!("{} does not answer {method}", uri.path()),
        )
    }
}

/// Turns the plain-text answers of the web framework's own rejections (a
/// query string or a path that does not parse, a body that is not JSON) into
/// problem documents like every other error.
pub(crate) async fn plain_errors_as_problems(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .unwrap_or_default();
    let kind = match status {
        StatusCode::NOT_FOUND => ProblemKind::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE => ProblemKind::TooLarge,
        s if s.is_server_error() => ProblemKind::Engine(ErrorClass::Internal),
        _ => ProblemKind::BadRequest,
    };
    let detail = String::from_utf8_lossy(&text).trim().to_string();
    let mut problem = ApiError::new(
        kind,
        if detail.is_empty() {
            status.canonical_reason().unwrap_or("error").to_string()
        } else {
            detail
        },
    );
    problem.status = parts.status;
    problem.headers = parts
        .headers
        .iter()
        .filter(|(name, _)| *name != header::CONTENT_TYPE && *name != header::CONTENT_LENGTH)
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    problem.into_response()
}
