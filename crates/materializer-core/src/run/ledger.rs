//! The commit protocol: plans, manifests and what follows a commit.
//!
//! - A run's *plan* (`_plans/<seq>.json`) fixes its cursors before it reads. It
//!   is written put-if-absent; a retry of an uncommitted run, or a racing
//!   process, finds it and reads exactly the same events. A recording's plan
//!   fixes its files' sizes instead of end cursors: the same bytes hold the
//!   same events, and the read finds the end cursors without a pass of its own. Output is a pure
//!   function of the plan and the configuration, so racing attempts write the
//!   same bytes under the same names.
//! - A run is committed when, and only when, its *manifest*
//!   (`_manifests/<seq>.json`) is written put-if-absent. Readers trust only
//!   manifests; files of an uncommitted run are invisible garbage that a retry
//!   overwrites.
//! - After the commit: `_SUCCESS` markers, Redshift COPY manifests and the
//!   `_latest` hint. These are idempotent; a run that finds them missing for
//!   the newest manifest writes them before doing anything else.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::config::Format;
use crate::sink::layout::seq_name;
use crate::sink::{FileKind, OutputLocation, TopicLayout};
use crate::source::{Offset, RecordingExtent, partition_cmp};

use crate::state::{CommittedState, STATE_FOLDER, StateFile, StateIndex, written_by_run};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("{action} {path}")]
    Store {
        action: &'static str,
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{action} {path}")]
    Local {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid {what}: {message}")]
    Corrupt {
        path: String,
        what: &'static str,
        message: String,
    },
    #[error(
        "run {seq} of this topic was committed by another process first; this attempt's output is not visible"
    )]
    LostRace { seq: u64 },
}

impl LedgerError {
    pub fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass;
        match self {
            LedgerError::Store { .. } | LedgerError::Local { .. } => ErrorClass::SinkUnavailable,
            LedgerError::Corrupt { .. } => ErrorClass::Data,
            LedgerError::LostRace { .. } => ErrorClass::Conflict,
        }
    }
}

/// Cursors of one partition in a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionCursors {
    pub partition: String,
    /// Exclusive: the run reads the events after it.
    pub start: Offset,
    /// Inclusive: the newest offset when the run was planned.
    pub end: Offset,
    /// Events the run read from this partition (manifests only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<u64>,
}

/// A run's cursors, fixed before it reads anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub topic: String,
    pub event_type: String,
    pub sequence: u64,
    pub created_at: DateTime<Utc>,
    /// Hash of the topic's configuration when the run was planned.
    pub fingerprint: String,
    /// The cursors. A plan of a recording holds its start cursors only (each
    /// `end` equals its `start`): the read finds the ends.
    pub partitions: Vec<PartitionCursors>,
    /// A recording's files and sizes to read, instead of end cursors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingExtent>,
}

impl Plan {
    /// The plan of a recording with the ends its read found: `reached`, the
    /// newest offset read per partition; a partition read for the first
    /// time starts at `BEGIN`.
    pub fn with_ends(mut self, reached: &BTreeMap<String, Offset>) -> Plan {
        for p in &mut self.partitions {
            if let Some(end) = reached.get(&p.partition) {
                p.end = end.clone();
            }
        }
        for (partition, end) in reached {
            if !self.partitions.iter().any(|p| &p.partition == partition) {
                self.partitions.push(PartitionCursors {
                    partition: partition.clone(),
                    start: Offset::begin(),
                    end: end.clone(),
                    events: None,
                });
            }
        }
        self.partitions
            .sort_by(|a, b| partition_cmp(&a.partition, &b.partition));
        self
    }
}

/// One file of a committed run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Path relative to the topic's folder.
    pub path: String,
    pub kind: FileKind,
    /// Nakadi partition whose events the file holds.
    pub partition: String,
    /// `[column, value]` pairs of the output partition, when the topic has one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_partition: Vec<(String, String)>,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// Counts of a run; `events_read = main_input + superseded + correction_events + events_rejected`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    pub events_read: u64,
    pub events_rejected: u64,
    /// Events kept by compaction: the latest version per key.
    pub main_input: u64,
    /// Older versions compaction removed.
    pub superseded: u64,
    /// Events that arrived after a newer version of their key.
    pub correction_events: u64,
    /// Rows the mapping produced from `main_input`.
    pub main_rows: u64,
    /// Rows the mapping produced from the correction events.
    pub correction_rows: u64,
    /// Rows the mapping produced from the older versions kept for the
    /// warehouse's history (part of `superseded`).
    #[serde(default)]
    pub older_rows: u64,
    /// MAIN and CORRECTION events that delete their key (the mapping does not
    /// see them; the KEYS file records them).
    #[serde(default)]
    pub deletes: u64,
}

impl RunCounts {
    pub fn add(&mut self, other: &RunCounts) {
        self.events_read += other.events_read;
        self.events_rejected += other.events_rejected;
        self.main_input += other.main_input;
        self.superseded += other.superseded;
        self.correction_events += other.correction_events;
        self.main_rows += other.main_rows;
        self.correction_rows += other.correction_rows;
        self.older_rows += other.older_rows;
        self.deletes += other.deletes;
    }

    /// Share of the decoded events that compaction found superseded by a
    /// newer version of their key in the same run. Corrections are not
    /// counted: they reach the warehouse.
    pub fn compaction_rate(&self) -> f64 {
        let decoded = self.main_input + self.superseded + self.correction_events;
        if decoded == 0 {
            0.0
        } else {
            self.superseded as f64 / decoded as f64
        }
    }
}

/// A committed run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub topic: String,
    pub event_type: String,
    pub sequence: u64,
    pub run_id: String,
    /// Random id of the attempt that wrote the manifest: tells a retried
    /// commit request that succeeded apart from a lost race.
    pub attempt: String,
    pub started_at: DateTime<Utc>,
    pub committed_at: DateTime<Utc>,
    pub fingerprint: String,
    pub output_format: Format,
    pub partitions: Vec<PartitionCursors>,
    pub files: Vec<ManifestFile>,
    pub counts: RunCounts,
    /// The topic's key state after this run, in the single-file form
    /// manifests of format 1 name (read, no longer written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateFile>,
    /// The topic's key state after this run: its segments (format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_state: Option<StateIndex>,
    /// The recording's files and sizes the run read to their end, when its
    /// source is a recording: the next run finds nothing new without
    /// reading while they stay as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingExtent>,
}

impl Manifest {
    pub fn end_cursors(&self) -> std::collections::BTreeMap<String, Offset> {
        self.partitions
            .iter()
            .map(|p| (p.partition.clone(), p.end.clone()))
            .collect()
    }

    /// The key state this run left.
    pub fn committed_state(&self) -> CommittedState {
        CommittedState::named(self.key_state.as_ref(), self.state.as_ref())
    }
}

/// Reads and writes a topic's plans and manifests.
#[derive(Clone)]
pub struct Ledger {
    location: OutputLocation,
    layout: TopicLayout,
}

impl Ledger {
    pub fn new(location: OutputLocation, topic: &str) -> Ledger {
        let layout = TopicLayout::new(&location.prefix, topic);
        Ledger { location, layout }
    }

    pub fn layout(&self) -> &TopicLayout {
        &self.layout
    }

    pub fn location(&self) -> &OutputLocation {
        &self.location
    }

    fn store(&self) -> &dyn ObjectStore {
        self.location.store.as_ref()
    }

    /// URL of a path inside the topic's folder, as a warehouse loader sees it.
    pub fn url_of(&self, relative: &str) -> String {
        let path = self.layout.resolve(relative);
        let base = self.location.url.trim_end_matches('/');
        let prefix = self.location.prefix.as_ref();
        let within = path
            .as_ref()
            .strip_prefix(prefix)
            .unwrap_or(path.as_ref())
            .trim_start_matches('/');
        format!("{base}/{within}")
    }

    async fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        path: &Path,
        what: &'static str,
    ) -> Result<Option<T>, LedgerError> {
        match self.store().get(path).await {
            Ok(result) => {
                let bytes = result.bytes().await.map_err(|source| LedgerError::Store {
                    action: "reading",
                    path: path.to_string(),
                    source,
                })?;
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| LedgerError::Corrupt {
                        path: path.to_string(),
                        what,
                        message: e.to_string(),
                    })
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(LedgerError::Store {
                action: "reading",
                path: path.to_string(),
                source,
            }),
        }
    }

    async fn exists(&self, path: &Path) -> Result<bool, LedgerError> {
        match self.store().head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(LedgerError::Store {
                action: "checking",
                path: path.to_string(),
                source,
            }),
        }
    }

    /// Writes `value` at `path` only if nothing is there; `false` when something was.
    async fn create_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<bool, LedgerError> {
        let body = serde_json::to_vec_pretty(value).expect("ledger records serialize");
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store()
            .put_opts(path, PutPayload::from(body), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(source) => Err(LedgerError::Store {
                action: "writing",
                path: path.to_string(),
                source,
            }),
        }
    }

    async fn put(&self, path: &Path, body: Vec<u8>) -> Result<(), LedgerError> {
        self.store()
            .put(path, PutPayload::from(Bytes::from(body)))
            .await
            .map(|_| ())
            .map_err(|source| LedgerError::Store {
                action: "writing",
                path: path.to_string(),
                source,
            })
    }

    pub async fn manifest(&self, seq: u64) -> Result<Option<Manifest>, LedgerError> {
        self.read_json(&self.layout.manifest(seq), "manifest").await
    }

    /// Sequence numbers of all committed runs, in order.
    pub async fn committed_sequences(&self) -> Result<Vec<u64>, LedgerError> {
        let dir = self.layout.manifests();
        let objects: Vec<_> =
            self.store()
                .list(Some(&dir))
                .try_collect()
                .await
                .map_err(|source| LedgerError::Store {
                    action: "listing",
                    path: dir.to_string(),
                    source,
                })?;
        let mut seqs: Vec<u64> = objects
            .iter()
            .filter_map(|o| o.location.filename())
            .filter_map(|name| name.strip_suffix(".json"))
            .filter_map(|stem| stem.parse().ok())
            .collect();
        seqs.sort_unstable();
        Ok(seqs)
    }

    async fn hinted_sequence(&self) -> Result<Option<u64>, LedgerError> {
        let path = self.layout.latest_hint();
        match self.store().get(&path).await {
            Ok(result) => {
                let bytes = result.bytes().await.map_err(|source| LedgerError::Store {
                    action: "reading",
                    path: path.to_string(),
                    source,
                })?;
                Ok(std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|s| s.trim().parse().ok()))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(LedgerError::Store {
                action: "reading",
                path: path.to_string(),
                source,
            }),
        }
    }

    /// The newest committed run: from the hint, then probing the sequence
    /// numbers after it (the hint may lag behind a crashed post-commit).
    pub async fn latest(&self) -> Result<Option<Manifest>, LedgerError> {
        let mut seq = match self.hinted_sequence().await? {
            Some(hint) if hint == 0 || self.exists(&self.layout.manifest(hint)).await? => hint,
            _ => self
                .committed_sequences()
                .await?
                .last()
                .copied()
                .unwrap_or(0),
        };
        while self.exists(&self.layout.manifest(seq + 1)).await? {
            seq += 1;
        }
        if seq == 0 {
            return Ok(None);
        }
        self.manifest(seq)
            .await?
            .map(Some)
            .ok_or_else(|| LedgerError::Corrupt {
                path: self.layout.manifest(seq).to_string(),
                what: "manifest",
                message: "vanished while being read".into(),
            })
    }

    /// Whether the post-commit steps of `manifest` are done.
    pub async fn post_commit_done(&self, manifest: &Manifest) -> Result<bool, LedgerError> {
        Ok(self.hinted_sequence().await? >= Some(manifest.sequence))
    }

    pub async fn plan(&self, seq: u64) -> Result<Option<Plan>, LedgerError> {
        self.read_json(&self.layout.plan(seq), "plan").await
    }

    /// Saves `plan` unless one exists for its sequence number; returns the plan
    /// that is in force.
    pub async fn fix_plan(&self, plan: Plan) -> Result<Plan, LedgerError> {
        let path = self.layout.plan(plan.sequence);
        if self.create_json(&path, &plan).await? {
            return Ok(plan);
        }
        self.read_json(&path, "plan")
            .await?
            .ok_or_else(|| LedgerError::Corrupt {
                path: path.to_string(),
                what: "plan",
                message: "exists but cannot be read".into(),
            })
    }

    /// Replaces the plan of an uncommitted run (its cursors no longer follow
    /// the committed ones).
    pub async fn replace_plan(&self, plan: &Plan) -> Result<(), LedgerError> {
        let body = serde_json::to_vec_pretty(plan).expect("plans serialize");
        self.put(&self.layout.plan(plan.sequence), body).await
    }

    /// Removes the plan of a run that found nothing to read, so that the
    /// next run plans afresh.
    pub async fn drop_plan(&self, seq: u64) -> Result<(), LedgerError> {
        let path = self.layout.plan(seq);
        match self.store().delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(LedgerError::Store {
                action: "removing",
                path: path.to_string(),
                source,
            }),
        }
    }

    /// The commit: writes the manifest put-if-absent.
    pub async fn commit(&self, manifest: &Manifest) -> Result<(), LedgerError> {
        let path = self.layout.manifest(manifest.sequence);
        if self.create_json(&path, manifest).await? {
            return Ok(());
        }
        // The store refused: another attempt committed first, or a retry of our
        // own request found the manifest our first request wrote.
        match self.manifest(manifest.sequence).await? {
            Some(existing) if existing.attempt == manifest.attempt => Ok(()),
            _ => Err(LedgerError::LostRace {
                seq: manifest.sequence,
            }),
        }
    }

    /// Removes the half-written files a killed upload to a local folder left
    /// (`<name>#<n>`, which the object store's listings do not show): a
    /// loader globbing the folder must find only committed files.
    fn remove_staged_uploads(&self, root: &Path) -> Result<(), LedgerError> {
        let Some(local) = &self.location.local_root else {
            return Ok(());
        };
        let folder = local.join(root.as_ref());
        let mut pending = vec![folder];
        while let Some(dir) = pending.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(LedgerError::Local {
                        action: "listing",
                        path: dir.display().to_string(),
                        source,
                    });
                }
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    pending.push(path);
                } else if entry.file_name().to_string_lossy().contains('#') {
                    // Our file names never hold '#' (it is escaped in partition values).
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(source) => {
                            return Err(LedgerError::Local {
                                action: "removing",
                                path: path.display().to_string(),
                                source,
                            });
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes what earlier, uncommitted attempts of a committed run left in
    /// the run's folders (files no manifest lists).
    async fn remove_leftovers(&self, manifest: &Manifest) -> Result<(), LedgerError> {
        let listed: BTreeSet<Path> = manifest
            .files
            .iter()
            .map(|f| self.layout.resolve(&f.path))
            .collect();
        for kind in [
            FileKind::Main,
            FileKind::Correction,
            FileKind::Rejected,
            FileKind::Older,
            FileKind::Keys,
        ] {
            let root = self.layout.run_root(kind, manifest.sequence);
            self.remove_staged_uploads(&root)?;
            let objects: Vec<_> =
                self.store()
                    .list(Some(&root))
                    .try_collect()
                    .await
                    .map_err(|source| LedgerError::Store {
                        action: "listing",
                        path: root.to_string(),
                        source,
                    })?;
            for object in objects {
                if listed.contains(&object.location)
                    || object.location.filename() == Some("_SUCCESS")
                {
                    continue;
                }
                match self.store().delete(&object.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(source) => {
                        return Err(LedgerError::Store {
                            action: "removing",
                            path: object.location.to_string(),
                            source,
                        });
                    }
                }
            }
        }
        self.remove_unlisted_state(manifest).await
    }

    /// Removes key state files no manifest needs any more: other attempts',
    /// and those the runs up to `manifest` compacted away.
    async fn remove_unlisted_state(&self, manifest: &Manifest) -> Result<(), LedgerError> {
        let mut keep: BTreeSet<Path> = BTreeSet::new();
        keep.extend(manifest.state.iter().map(|s| self.layout.resolve(&s.path)));
        keep.extend(
            manifest
                .key_state
                .iter()
                .flat_map(|index| &index.segments)
                .map(|s| self.layout.resolve(&s.path)),
        );
        let dir = self.layout.root().clone().join(STATE_FOLDER);
        let objects: Vec<_> =
            self.store()
                .list(Some(&dir))
                .try_collect()
                .await
                .map_err(|source| LedgerError::Store {
                    action: "listing",
                    path: dir.to_string(),
                    source,
                })?;
        for object in objects {
            // Later runs' files (a run under way elsewhere) are not ours to judge.
            let seq = object.location.filename().and_then(written_by_run);
            if seq.is_some_and(|s| s <= manifest.sequence) && !keep.contains(&object.location) {
                match self.store().delete(&object.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(source) => {
                        return Err(LedgerError::Store {
                            action: "removing",
                            path: object.location.to_string(),
                            source,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Leftovers of uncommitted attempts removed, `_SUCCESS` per output folder,
    /// Redshift COPY manifests, then the hint.
    pub async fn post_commit(&self, manifest: &Manifest) -> Result<(), LedgerError> {
        self.remove_leftovers(manifest).await?;
        let mut folders: BTreeSet<String> = BTreeSet::new();
        for file in &manifest.files {
            if let Some((dir, _)) = file.path.rsplit_once('/') {
                folders.insert(dir.to_string());
            }
        }
        for dir in folders {
            let marker = self.layout.resolve(&format!("{dir}/_SUCCESS"));
            self.put(&marker, Vec::new()).await?;
        }
        for kind in [
            FileKind::Main,
            FileKind::Correction,
            FileKind::Older,
            FileKind::Keys,
        ] {
            let entries: Vec<serde_json::Value> = manifest
                .files
                .iter()
                .filter(|f| f.kind == kind)
                .map(|f| {
                    serde_json::json!({
                        "url": self.url_of(&f.path),
                        "mandatory": true,
                        "meta": {"content_length": f.bytes}
                    })
                })
                .collect();
            let body = serde_json::to_vec_pretty(&serde_json::json!({ "entries": entries }))
                .expect("json");
            self.put(
                &self.layout.redshift_manifest(kind, manifest.sequence),
                body,
            )
            .await?;
        }
        self.put(
            &self.layout.latest_hint(),
            seq_name(manifest.sequence).into_bytes(),
        )
        .await
    }
}
