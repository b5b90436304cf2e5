//! Bearer tokens for the HTTP API, compared in constant time.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::error::{ApiError, ProblemKind};

/// The tokens the API accepts.
#[derive(Clone, Default)]
pub struct Tokens {
    tokens: Vec<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.tokens.len())
    }
}

/// Why the API's tokens could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the API token file {path}", path = path.display())]
pub struct TokenError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

impl Tokens {
    /// Tokens given directly, plus one per non-empty line of `file`.
    pub fn load(given: &[String], file: Option<&PathBuf>) -> Result<Tokens, TokenError> {
        let mut tokens: Vec<String> = given
            .iter()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| TokenError {
                path: path.clone(),
                source,
            })?;
            tokens.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
        }
        Ok(Tokens { tokens })
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Whether `candidate` is one of the tokens.
    pub fn accepts(&self, candidate: &str) -> bool {
        self.find(candidate).is_some()
    }

    /// Which token `candidate` is: its number (from 1) in the order given
    /// (flags, then the file's lines). Every token is compared in full, so
    /// the time taken does not tell how much of one matched.
    pub fn find(&self, candidate: &str) -> Option<usize> {
        let mut found = None;
        for (index, token) in self.tokens.iter().enumerate() {
            if constant_time_eq(token.as_bytes(), candidate.as_bytes()) {
                found = Some(index + 1);
            }
        }
        found
    }
}

/// Who made a request, as far as logs may tell: the number of the token it
/// carried, never the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// `None` on a server without tokens.
    pub token: Option<usize>,
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.token {
            Some(n) => write!(f, "token #{n}"),
            None => f.write_str("no token (a server without tokens)"),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= (x ^ y) as u64;
    }
    diff == 0
}

/// Checks the bearer token against `tokens` (the server's): 401 without
/// one, 403 with a wrong one.
pub(crate) async fn require_token(
    State(tokens): State<Arc<Tokens>>,
    mut request: Request,
    next: Next,
) -> Response {
    if tokens.is_empty() {
        // Loopback without tokens, announced at start.
        request.extensions_mut().insert(Caller { token: None });
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(given) = given else {
        return ApiError::new(ProblemKind::Unauthorized, "a bearer token is required")
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
            .into_response();
    };
    match tokens.find(given.trim()) {
        None => ApiError::new(ProblemKind::Forbidden, "the bearer token is not accepted")
            .into_response(),
        Some(number) => {
            request.extensions_mut().insert(Caller {
                token: Some(number),
            });
            next.run(request).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_whole() {
        let tokens = Tokens::load(&["alpha".into(), " beta ".into()], None).unwrap();
        assert!(tokens.accepts("alpha"));
        assert!(tokens.accepts("beta"));
        assert!(!tokens.accepts("alph"));
        assert!(!tokens.accepts("alphaa"));
        assert!(!tokens.accepts(""));
        assert_eq!(tokens.find("beta"), Some(2));
        assert_eq!(Caller { token: Some(2) }.to_string(), "token #2");
        assert_eq!(format!("{tokens:?}"), "Tokens(2 configured)");
    }
}
