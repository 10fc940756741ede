//! The Raft state machine is the namespace's own redb store: a committed listing is applied
//! with [`crate::listing::apply_listing`] in the same transaction that records the log id it
//! came from, so a master killed at any moment restarts with the two in step.
//!
//! The current snapshot is kept in `<meta-dir>/raft-snapshot.bin` (its metadata as a JSON
//! first line, then [`super::snapshot`]'s body), written to a temporary file and renamed.

use super::{snapshot, Command, TypeConfig};
use crate::listing::apply_listing;
use crate::store::META;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use redb::{Database, ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub const APPLIED: &str = "raft_applied";
pub const MEMBERSHIP: &str = "raft_membership";
pub const SNAPSHOT_FILE: &str = "raft-snapshot.bin";

/// What applying an entry answers: nothing beyond "it is in".
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Applied;

type Result<T> = std::result::Result<T, StorageError<u64>>;

fn sm_err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::<u64>::write_state_machine(&std::io::Error::other(e.to_string())).into()
}

#[derive(Clone)]
pub struct StateMachine {
    db: Arc<Database>,
    /// Where the snapshot file goes; `None` keeps it in memory (tests).
    dir: Option<PathBuf>,
    current: Arc<Mutex<Option<(SnapshotMeta<u64, openraft::BasicNode>, Arc<Vec<u8>>)>>>,
}

impl StateMachine {
    pub fn new(db: Arc<Database>, dir: Option<PathBuf>, wipe: bool) -> StateMachine {
        if let (Some(dir), true) = (&dir, wipe) {
            let _ = std::fs::remove_file(dir.join(SNAPSHOT_FILE));
        }
        StateMachine { db, dir, current: Arc::default() }
    }

    fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&StateMachine) -> Result<T> + Send + 'static) -> impl std::future::Future<Output = Result<T>> {
        let sm = self.clone();
        async move { tokio::task::spawn_blocking(move || f(&sm)).await.map_err(sm_err)? }
    }

    fn read_meta<T: serde::de::DeserializeOwned>(table: &impl ReadableTable<&'static str, &'static [u8]>, key: &str) -> Result<Option<T>> {
        match table.get(key).map_err(sm_err)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(v.value()).map(Some).map_err(|e| sm_err(format!("namespace.redb {key}: {e}"))),
        }
    }

    fn save_file(&self, meta: &SnapshotMeta<u64, openraft::BasicNode>, body: &[u8]) -> Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(sm_err)?;
        let mut head = serde_json::to_vec(meta).map_err(sm_err)?;
        head.push(b'\n');
        f.write_all(&head).and_then(|_| f.write_all(body)).and_then(|_| f.sync_all()).map_err(sm_err)?;
        std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE)).map_err(sm_err)
    }

    /// The snapshot kept in memory, else the one on disk (after a restart).
    fn load_current(&self) -> Result<Option<(SnapshotMeta<u64, openraft::BasicNode>, Arc<Vec<u8>>)>> {
        if let Some(c) = self.current.lock().expect("snapshot lock").clone() {
            return Ok(Some(c));
        }
        let Some(dir) = &self.dir else { return Ok(None) };
        let bytes = match std::fs::read(dir.join(SNAPSHOT_FILE)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(sm_err(e)),
        };
        let Some(nl) = bytes.iter().position(|&b| b == b'\n') else { return Err(sm_err("raft-snapshot.bin: no metadata line")) };
        let meta: SnapshotMeta<u64, openraft::BasicNode> = serde_json::from_slice(&bytes[..nl]).map_err(|e| sm_err(format!("raft-snapshot.bin: {e}")))?;
        let body = Arc::new(bytes[nl + 1..].to_vec());
        *self.current.lock().expect("snapshot lock") = Some((meta.clone(), body.clone()));
        Ok(Some((meta, body)))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        let (meta, body) = self
            .blocking(|sm| {
                let txn = sm.db.begin_read().map_err(sm_err)?;
                let (applied, membership) = {
                    let meta = txn.open_table(META).map_err(sm_err)?;
                    let applied: Option<LogId<u64>> = StateMachine::read_meta(&meta, APPLIED)?;
                    let membership: StoredMembership<u64, openraft::BasicNode> = StateMachine::read_meta(&meta, MEMBERSHIP)?.unwrap_or_default();
                    (applied, membership)
                };
                let body = snapshot::dump(&txn).map_err(|e| sm_err(e.message))?;
                let id = applied.map_or("0-0".to_string(), |l| format!("{}-{}", l.leader_id.term, l.index));
                let meta = SnapshotMeta { last_log_id: applied, last_membership: membership, snapshot_id: id };
                sm.save_file(&meta, &body)?;
                Ok((meta, Arc::new(body)))
            })
            .await?;
        *self.current.lock().expect("snapshot lock") = Some((meta.clone(), body.clone()));
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(body.to_vec())) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId<u64>>, StoredMembership<u64, openraft::BasicNode>)> {
        self.blocking(|sm| {
            let txn = sm.db.begin_read().map_err(sm_err)?;
            let meta = txn.open_table(META).map_err(sm_err)?;
            Ok((StateMachine::read_meta(&meta, APPLIED)?, StateMachine::read_meta(&meta, MEMBERSHIP)?.unwrap_or_default()))
        })
        .await
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        self.blocking(move |sm| {
            let txn = sm.db.begin_write().map_err(sm_err)?;
            let mut out = Vec::with_capacity(entries.len());
            let mut last = None;
            let mut membership = None;
            for e in &entries {
                match &e.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(Command::Listing(l)) => apply_listing(&txn, l).map_err(|e| sm_err(e.message))?,
                    EntryPayload::Normal(Command::Mounts { table, root_mtime }) => {
                        crate::listing::apply_mounts(&txn, table, *root_mtime).map_err(|e| sm_err(e.message))?
                    }
                    EntryPayload::Membership(m) => membership = Some(StoredMembership::new(Some(e.log_id), m.clone())),
                }
                last = Some(e.log_id);
                out.push(Applied);
            }
            {
                let mut meta = txn.open_table(META).map_err(sm_err)?;
                if let Some(last) = last {
                    meta.insert(APPLIED, serde_json::to_vec(&Some(last)).map_err(sm_err)?.as_slice()).map_err(sm_err)?;
                }
                if let Some(m) = membership {
                    meta.insert(MEMBERSHIP, serde_json::to_vec(&m).map_err(sm_err)?.as_slice()).map_err(sm_err)?;
                }
            }
            txn.commit().map_err(sm_err)?;
            Ok(out)
        })
        .await
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta<u64, openraft::BasicNode>, snapshot: Box<Cursor<Vec<u8>>>) -> Result<()> {
        let body = Arc::new(snapshot.into_inner());
        let meta = meta.clone();
        let (m, b) = (meta.clone(), body.clone());
        self.blocking(move |sm| {
            let parsed = snapshot::parse(&b).map_err(|e| sm_err(e.message))?;
            let txn = sm.db.begin_write().map_err(sm_err)?;
            snapshot::restore(&txn, &parsed).map_err(|e| sm_err(e.message))?;
            {
                let mut table = txn.open_table(META).map_err(sm_err)?;
                table.insert(APPLIED, serde_json::to_vec(&m.last_log_id).map_err(sm_err)?.as_slice()).map_err(sm_err)?;
                table.insert(MEMBERSHIP, serde_json::to_vec(&m.last_membership).map_err(sm_err)?.as_slice()).map_err(sm_err)?;
            }
            txn.commit().map_err(sm_err)?;
            sm.save_file(&m, &b)
        })
        .await?;
        tracing::info!(snapshot = %meta.snapshot_id, "namespace installed from the leader's snapshot");
        *self.current.lock().expect("snapshot lock") = Some((meta, body));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        let sm = self.clone();
        let current = tokio::task::spawn_blocking(move || sm.load_current()).await.map_err(sm_err)??;
        Ok(current.map(|(meta, body)| Snapshot { meta, snapshot: Box::new(Cursor::new(body.to_vec())) }))
    }
}
