//! Bearer tokens for Nakadi, from an environment variable or from a file that
//! is re-read when it changes (how platform credentials are mounted and
//! rotated). Tokens never appear in logs, errors or `Debug` output.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read the token file {path}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the token file {path} is empty")]
    Empty { path: String },
}

/// Where the token comes from.
pub enum TokenSource {
    /// No token (a Nakadi without authentication, e.g. on a developer machine).
    None,
    /// A fixed token (read once from an environment variable).
    Static(String),
    /// A file holding the token; re-read when its modification time changes.
    File {
        path: PathBuf,
        cached: Mutex<Option<(SystemTime, String)>>,
    },
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::None => f.write_str("TokenSource::None"),
            TokenSource::Static(_) => f.write_str("TokenSource::Static(<redacted>)"),
            TokenSource::File { path, .. } => write!(f, "TokenSource::File({})", path.display()),
        }
    }
}

impl TokenSource {
    pub fn file(path: impl Into<PathBuf>) -> TokenSource {
        TokenSource::File {
            path: path.into(),
            cached: Mutex::new(None),
        }
    }

    /// The current token, if any.
    pub fn token(&self) -> Result<Option<String>, AuthError> {
        match self {
            TokenSource::None => Ok(None),
            TokenSource::Static(token) => Ok(Some(token.clone())),
            TokenSource::File { path, cached } => {
                let shown = path.display().to_string();
                let io = |source| AuthError::File {
                    path: shown.clone(),
                    source,
                };
                let modified = std::fs::metadata(path)
                    .and_then(|m| m.modified())
                    .map_err(io)?;
                let mut cached = cached.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((at, token)) = cached.as_ref()
                    && *at == modified
                {
                    return Ok(Some(token.clone()));
                }
                let token = std::fs::read_to_string(path)
                    .map_err(io)?
                    .trim()
                    .to_string();
                if token.is_empty() {
                    return Err(AuthError::Empty { path: shown });
                }
                *cached = Some((modified, token.clone()));
                Ok(Some(token))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_is_re_read_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let source = TokenSource::file(&path);
        assert_eq!(source.token().unwrap().as_deref(), Some("first"));
        std::fs::write(&path, "second").unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(source.token().unwrap().as_deref(), Some("second"));
        assert!(!format!("{source:?}").contains("second"));
        assert_eq!(
            format!("{:?}", TokenSource::Static("secret".into())),
            "TokenSource::Static(<redacted>)"
        );
    }
}
