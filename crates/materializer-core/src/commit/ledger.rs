//! The ledger: a topic's plans and manifests in its output location, each
//! written put-if-absent, the newest found from a hint.

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::{LedgerError, Manifest, Plan, Publication};
use crate::sink::{OutputLocation, TopicLayout};

/// Reads and writes a topic's plans and manifests.
#[derive(Clone)]
pub struct Ledger {
    location: OutputLocation,
    layout: TopicLayout,
    /// What is published beside each committed run.
    publications: Vec<&'static dyn Publication>,
}

impl Ledger {
    pub fn new(location: OutputLocation, topic: &str) -> Ledger {
        let layout = TopicLayout::new(&location.prefix, topic);
        Ledger {
            location,
            layout,
            publications: Vec::new(),
        }
    }

    /// The ledger that publishes `publications` beside each committed run.
    pub fn with_publications(
        mut self,
        publications: impl IntoIterator<Item = &'static dyn Publication>,
    ) -> Ledger {
        self.publications.extend(publications);
        self
    }

    pub(super) fn publications(&self) -> &[&'static dyn Publication] {
        &self.publications
    }

    pub fn layout(&self) -> &TopicLayout {
        &self.layout
    }

    pub fn location(&self) -> &OutputLocation {
        &self.location
    }

    pub(super) fn store(&self) -> &dyn ObjectStore {
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
        let Some(bytes) = self.read_bytes(path).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| LedgerError::Corrupt {
                path: path.to_string(),
                what,
                message: e.to_string(),
            })
    }

    /// The bytes of the object at `path`; `None` when there is none.
    async fn read_bytes(&self, path: &Path) -> Result<Option<bytes::Bytes>, LedgerError> {
        let reading = |source| LedgerError::Store {
            action: "reading",
            path: path.to_string(),
            source,
        };
        match self.store().get(path).await {
            Ok(result) => result.bytes().await.map(Some).map_err(reading),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(reading(source)),
        }
    }

    /// The objects under `dir`.
    pub(super) async fn list_under(
        &self,
        dir: &Path,
    ) -> Result<Vec<object_store::ObjectMeta>, LedgerError> {
        self.store()
            .list(Some(dir))
            .try_collect()
            .await
            .map_err(|source| LedgerError::Store {
                action: "listing",
                path: dir.to_string(),
                source,
            })
    }

    /// Deletes the object at `path`, if it is still there.
    pub(super) async fn delete_if_present(&self, path: &Path) -> Result<(), LedgerError> {
        match self.store().delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(LedgerError::Store {
                action: "removing",
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

    pub(super) async fn put(&self, path: &Path, body: Vec<u8>) -> Result<(), LedgerError> {
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
        let objects = self.list_under(&dir).await?;
        let mut seqs: Vec<u64> = objects
            .iter()
            .filter_map(|o| o.location.filename())
            .filter_map(|name| name.strip_suffix(".json"))
            .filter_map(|stem| stem.parse().ok())
            .collect();
        seqs.sort_unstable();
        Ok(seqs)
    }

    pub(super) async fn hinted_sequence(&self) -> Result<Option<u64>, LedgerError> {
        let bytes = self.read_bytes(&self.layout.latest_hint()).await?;
        Ok(bytes.and_then(|bytes| {
            std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        }))
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
}
