//! Saving a topic's mapping back to its folder: the new text replaces
//! `mapping.sql` in one step, and the text it replaces is kept beside it.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{ConfigError, MAPPING_FILE};

/// The file a saved mapping's predecessor is kept in (one generation).
pub const PREVIOUS_MAPPING_FILE: &str = "mapping.sql.previous";

/// Where a mapping was saved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedMapping {
    pub path: PathBuf,
    /// The text it replaced, kept here (none when there was no file).
    pub previous: Option<PathBuf>,
}

/// Writes `text` to `dir/mapping.sql`. Readers (a reload, a run loading the
/// topic) see the old file or the new one, never a part: the text goes to a
/// temporary file in the same folder, is flushed to disk, then renamed over
/// the old one. The old text is first kept in `mapping.sql.previous` the
/// same way, so a save can be undone by hand.
pub fn save_mapping(dir: &Path, text: &str) -> Result<SavedMapping, ConfigError> {
    let path = dir.join(MAPPING_FILE);
    let previous = match std::fs::read(&path) {
        Ok(old) => {
            let kept = dir.join(PREVIOUS_MAPPING_FILE);
            replace(&kept, &old)?;
            Some(kept)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(ConfigError::Io { path, source }),
    };
    replace(&path, text.as_bytes())?;
    Ok(SavedMapping { path, previous })
}

/// Replaces `path` with `bytes` through a temporary file and a rename.
fn replace(path: &Path, bytes: &[u8]) -> Result<(), ConfigError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let temp = dir.join(format!(
        ".mapping-{}-{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let written = write_new(&temp, bytes).and_then(|()| std::fs::rename(&temp, path));
    if let Err(source) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(ConfigError::Io {
            path: path.to_path_buf(),
            source,
        });
    }
    // The rename is durable once the folder is.
    if let Ok(folder) = std::fs::File::open(dir) {
        let _ = folder.sync_all();
    }
    Ok(())
}

fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_text_is_kept_and_no_temporary_file_is_left() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MAPPING_FILE), "old").unwrap();
        let saved = save_mapping(dir.path(), "new").unwrap();
        assert_eq!(std::fs::read_to_string(&saved.path).unwrap(), "new");
        let previous = saved.previous.unwrap();
        assert_eq!(std::fs::read_to_string(previous).unwrap(), "old");
        save_mapping(dir.path(), "newer").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(PREVIOUS_MAPPING_FILE)).unwrap(),
            "new"
        );
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["mapping.sql", "mapping.sql.previous"]);
    }
}
