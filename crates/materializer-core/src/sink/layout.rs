//! Names of everything a topic keeps in its output location.
//!
//! ```text
//! <output>/<topic>/
//!   _manifests/0000000007.json        a committed run (the commit point)
//!   _manifests/_latest                hint: the newest committed sequence number
//!   _plans/0000000007.json            cursors of run 7, fixed before it reads
//!   _redshift/main-0000000007.json    Redshift COPY manifests of committed runs
//!   main/run=0000000007/[col=value/]main-0000000007-p0.csv     (+ _SUCCESS once committed)
//!   correction/run=0000000007/[col=value/]correction-0000000007-p0.csv
//!   rejected/run=0000000007/rejected-0000000007-p0.ndjson
//!   older/run=0000000007/older-0000000007-p0.csv   (with a warehouse history)
//!   keys/run=0000000007/keys-0000000007-p0.csv
//! ```

use object_store::path::Path;

/// What a data file holds.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Main,
    Correction,
    Rejected,
    /// Older versions of the run's keys, for the warehouse's history.
    Older,
    /// The keys whose versions a run decided (see the warehouse contract).
    Keys,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Main => "main",
            FileKind::Correction => "correction",
            FileKind::Rejected => "rejected",
            FileKind::Older => "older",
            FileKind::Keys => "keys",
        }
    }
}

/// Paths of one topic under an output location.
#[derive(Clone, Debug)]
pub struct TopicLayout {
    root: Path,
}

/// Sequence numbers are zero-padded so that names sort in run order.
pub fn seq_name(seq: u64) -> String {
    format!("{seq:010}")
}

impl TopicLayout {
    pub fn new(prefix: &Path, topic: &str) -> TopicLayout {
        TopicLayout {
            root: prefix.clone().join(topic),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A path relative to the topic root, as manifests record it.
    pub fn relative(&self, path: &Path) -> String {
        let root = self.root.as_ref();
        let full = path.as_ref();
        full.strip_prefix(root)
            .map(|s| s.trim_start_matches('/'))
            .unwrap_or(full)
            .to_string()
    }

    /// The full path of a path relative to the topic root (as manifests record
    /// them: already escaped, so taken as it is).
    pub fn resolve(&self, relative: &str) -> Path {
        let joined = format!(
            "{}/{}",
            self.root.as_ref(),
            relative.trim_start_matches('/')
        );
        Path::parse(&joined).unwrap_or_else(|_| {
            let mut path = self.root.clone();
            for part in relative.split('/').filter(|p| !p.is_empty()) {
                path = path.join(part);
            }
            path
        })
    }

    pub fn manifests(&self) -> Path {
        self.root.clone().join("_manifests")
    }

    pub fn manifest(&self, seq: u64) -> Path {
        self.manifests().join(format!("{}.json", seq_name(seq)))
    }

    pub fn latest_hint(&self) -> Path {
        self.manifests().join("_latest")
    }

    pub fn plan(&self, seq: u64) -> Path {
        self.root
            .clone()
            .join("_plans")
            .join(format!("{}.json", seq_name(seq)))
    }

    /// Where the tasks of a run on workers put their counters while the
    /// run goes (see `run::remote::board`); nothing in it is data.
    pub fn progress(&self, seq: u64) -> Path {
        self.root
            .clone()
            .join("_progress")
            .join(format!("run={}", seq_name(seq)))
    }

    pub fn redshift_manifest(&self, kind: FileKind, seq: u64) -> Path {
        self.root.clone().join("_redshift").join(format!(
            "{}-{}.json",
            kind.as_str(),
            seq_name(seq)
        ))
    }

    /// Everything a run wrote of one kind lives under this folder.
    pub fn run_root(&self, kind: FileKind, seq: u64) -> Path {
        self.root
            .clone()
            .join(kind.as_str())
            .join(format!("run={}", seq_name(seq)))
    }

    /// The folder of a run's files of one kind and output partition.
    pub fn run_dir(&self, kind: FileKind, seq: u64, output_partition: &[(String, String)]) -> Path {
        let mut path = self.run_root(kind, seq).as_ref().to_string();
        for (column, value) in output_partition {
            path.push('/');
            path.push_str(&escape_part(column));
            path.push('=');
            path.push_str(&escape_part(value));
        }
        // Every segment is escaped above, so the path is valid as it stands.
        Path::parse(&path).unwrap_or_else(|_| Path::from(path.as_str()))
    }

    pub fn data_file(
        &self,
        kind: FileKind,
        seq: u64,
        partition: &str,
        output_partition: &[(String, String)],
        extension: &str,
    ) -> Path {
        let name = format!(
            "{}-{}-p{}.{extension}",
            kind.as_str(),
            seq_name(seq),
            escape_part(partition)
        );
        let dir = self.run_dir(kind, seq, output_partition);
        Path::parse(format!("{}/{name}", dir.as_ref())).unwrap_or_else(|_| dir.join(name))
    }

    pub fn success_marker(&self, dir: &Path) -> Path {
        dir.clone().join("_SUCCESS")
    }
}

/// Keeps a value usable as one path segment, as Hive escapes partition
/// values: `%XX` for `/`, `=`, `%`, quotes, control characters and the other
/// characters object stores advise against; letters (any script), digits,
/// spaces and the rest stay as they are. An empty value stays empty.
pub fn escape_part(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        let escape = c.is_control()
            || matches!(
                c,
                '"' | '#'
                    | '%'
                    | '\''
                    | '*'
                    | '/'
                    | ':'
                    | '='
                    | '?'
                    | '\\'
                    | '{'
                    | '}'
                    | '['
                    | ']'
                    | '^'
                    | '`'
                    | '<'
                    | '>'
                    | '|'
                    | '~'
            );
        if escape {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    if out == "." || out == ".." {
        out = out.replace('.', "%2E");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_and_escaped() {
        let layout = TopicLayout::new(&Path::from("exports"), "article-stock-changed");
        let p = layout.data_file(
            FileKind::Main,
            7,
            "0",
            &[("day".into(), "2024-06-03".into())],
            "csv",
        );
        assert_eq!(
            p.as_ref(),
            "exports/article-stock-changed/main/run=0000000007/day=2024-06-03/main-0000000007-p0.csv"
        );
        assert_eq!(
            layout.relative(&p),
            "main/run=0000000007/day=2024-06-03/main-0000000007-p0.csv"
        );
        assert_eq!(layout.resolve(&layout.relative(&p)), p);
        assert_eq!(escape_part("a/b c=d"), "a%2Fb c%3Dd");
        assert_eq!(escape_part("Fjällräven \"x\""), "Fjällräven %22x%22");
        let odd = layout.data_file(
            FileKind::Main,
            1,
            "0",
            &[("b".into(), "%/..".into())],
            "csv",
        );
        assert_eq!(
            odd.as_ref(),
            "exports/article-stock-changed/main/run=0000000001/b=%25%2F../main-0000000001-p0.csv"
        );
        assert_eq!(
            layout.manifest(12).as_ref(),
            "exports/article-stock-changed/_manifests/0000000012.json"
        );
    }
}
