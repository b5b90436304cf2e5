//! Errors as problem documents (RFC 9457): one [`ApiError`] that every
//! handler returns, built from the engine's errors in one place.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use materializer_core::mapping::MappingError;

/// A problem document (RFC 9457).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Errors in SQL, with their position.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<SqlError>,
}

/// An error at a place in SQL.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct SqlError {
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub message: String,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) title: &'static str,
    pub(crate) detail: String,
    pub(crate) errors: Vec<SqlError>,
    pub(crate) headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            headers: Vec::new(),
        }
    }

    pub(crate) fn mapping(error: &MappingError) -> ApiError {
        let sql = match error {
            MappingError::At { at, message, .. } => SqlError {
                line: Some(at.line),
                column: Some(at.column),
                message: message.clone(),
            },
            other => SqlError {
                line: None,
                column: None,
                message: other.to_string(),
            },
        };
        ApiError {
            errors: vec![sql],
            ..ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "The mapping is not valid",
                error.to_string(),
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: format!("https://httpstatuses.io/{}", self.status.as_u16()),
            title: self.title.to_string(),
            status: self.status.as_u16(),
            detail: self.detail,
            errors: self.errors,
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
