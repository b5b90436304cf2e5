//! A source named in a request: files under the server's recordings folder,
//! never anywhere else. A token holder could otherwise have any file the
//! server can read taken as events, and its lines written out as rejected
//! events. A source outside it is refused as a setting that cannot be
//! taken (422).

use std::path::{Component, Path, PathBuf};

use materializer_core::ErrorClass;

use crate::api::error::{ApiError, ProblemKind};

/// The files a request's `source` names: `given`, relative to the server's
/// `recordings` folder; `None` when the request names none.
pub(crate) fn requested_source(
    recordings: &Path,
    given: Option<&str>,
) -> Result<Option<PathBuf>, ApiError> {
    let Some(given) = given else {
        return Ok(None);
    };
    let path = Path::new(given);
    let inside = !given.trim().is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !inside {
        return Err(ApiError::new(
            ProblemKind::Engine(ErrorClass::Config),
            format!(
                "source {given:?} is not a path inside the server's recordings folder {}: name a \
                 file or folder relative to it, without `..` (serve --recordings sets the folder)",
                recordings.display()
            ),
        ));
    }
    Ok(Some(recordings.join(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_inside_the_recordings_folder_are_taken() {
        let root = Path::new("/srv/recordings");
        assert_eq!(requested_source(root, None).unwrap(), None);
        assert_eq!(
            requested_source(root, Some("orders/today.jsonl")).unwrap(),
            Some(PathBuf::from("/srv/recordings/orders/today.jsonl"))
        );
        for outside in ["/etc/passwd", "../secrets", "orders/../../x", "", " "] {
            let err = requested_source(root, Some(outside)).unwrap_err();
            assert_eq!(
                err.status(),
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "{outside}"
            );
        }
    }
}
