//! The namespace: inodes for every path of the Dataset, loaded lazily from the UFS and kept in
//! the master's persistent store ([`crate::store`]).
//!
//! Inode numbers are handed out once and kept for as long as the path exists (across restarts
//! too, since they are stored), so a FUSE daemon that restarts, or the kernel holding a node
//! ID, still means the same file. A directory is listed from its UFS the first time it is
//! looked into, and again once its listing is older than the sync TTL (only when
//! `metadataSyncPolicy.autoSync` is on). A re-listing keeps the inode number of every name
//! still present and updates size, mtime and etag, so a changed object gets a new cache key
//! (see [`Inode::version`]). A re-listing that fails (UFS unreachable) keeps serving the last
//! listing rather than failing readers.
//!
//! Several mounts appear under their `path`; the directories above them are made up here and
//! never listed. The mount table is stored with the namespace: a master started with a
//! different one drops the stored namespace and lists again.

use crate::inode::*;
use crate::listing::{apply_listing, child_path, db_err, Listing};
use crate::store::{self, decode, decode_u64, DENTRIES, INODES, LISTED, META};
use crate::MetaError;
use cistern_ufs::Ufs;
use redb::{Database, ReadableDatabase, ReadableTable};
use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A mount as the namespace needs it: its UFS and where it appears.
#[derive(Debug, Clone)]
pub struct NsMount {
    pub ufs: Ufs,
    pub path: String,
}

/// The namespace's link to the other masters when there are several (see [`crate::raft`]).
pub trait Replica: Send + Sync {
    /// Whether this master leads: it lists the UFS and commits listings.
    fn is_leader(&self) -> bool;
    /// Commits a listing through the log; returns once this master has applied it.
    fn commit(&self, listing: Listing) -> BoxFuture<'_, Result<(), MetaError>>;
    /// Asks the leader to list directory `ino` (as a lookup or a `sync` read would); returns
    /// once this master has applied the result. [`Forwarded::Leading`] when this master leads
    /// by now and should list itself.
    fn forward(&self, ino: Ino, sync: bool) -> BoxFuture<'_, Result<Forwarded, MetaError>>;
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarded {
    Applied,
    Leading,
}

pub struct Namespace {
    mounts: Vec<NsMount>,
    db: Arc<Database>,
    /// Set once when this master is one of several.
    replica: OnceLock<Arc<dyn Replica>>,
    /// The stored namespace was dropped at open (a new mount table): a Raft log beside it no
    /// longer describes it either.
    reset: bool,
    /// One listing at a time per directory: concurrent lookups wait for it rather than list too.
    /// Each gate holds when its last listing started (a `sync` read asked before that one
    /// started takes its result rather than list again).
    listing: Mutex<HashMap<Ino, Arc<tokio::sync::Mutex<Option<std::time::Instant>>>>>,
    /// Re-list a directory older than this; `None` never re-lists.
    sync_ttl: Option<Duration>,
    /// Mounts whose UFS failed a re-listing, with when to try again: until then, stale
    /// listings are served at once instead of each directory waiting out the UFS's retries.
    unreachable: Mutex<HashMap<usize, std::time::Instant>>,
    /// A follower that found no leader: until then, stale listings are served at once.
    no_leader_until: Mutex<Option<std::time::Instant>>,
}

/// How long a UFS that failed is left alone before the next re-listing tries it again.
pub const UFS_RETRY_AFTER: Duration = Duration::from_secs(10);

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Namespace {
    /// A namespace kept in memory only.
    pub fn new(mounts: Vec<NsMount>, sync_ttl: Option<Duration>) -> Namespace {
        Namespace::with_db(store::in_memory(), mounts, sync_ttl).expect("a fresh in-memory namespace")
    }

    /// The namespace stored in `meta_dir` (created if new).
    pub fn open(meta_dir: &Path, mounts: Vec<NsMount>, sync_ttl: Option<Duration>) -> Result<Namespace, MetaError> {
        Namespace::with_db(store::open(meta_dir)?, mounts, sync_ttl)
    }

    /// The namespace of one master of several: a stored namespace is kept even when this
    /// master's mount table differs, since the quorum's table is the one in the store, changed
    /// only through the log (the leader commits its own when they differ; see
    /// [`crate::raft`]).
    pub fn open_replicated(meta_dir: &Path, mounts: Vec<NsMount>, sync_ttl: Option<Duration>) -> Result<Namespace, MetaError> {
        Namespace::with_db_as(store::open(meta_dir)?, mounts, sync_ttl, true)
    }

    fn with_db(db: Database, mounts: Vec<NsMount>, sync_ttl: Option<Duration>) -> Result<Namespace, MetaError> {
        Namespace::with_db_as(db, mounts, sync_ttl, false)
    }

    fn with_db_as(db: Database, mounts: Vec<NsMount>, sync_ttl: Option<Duration>, replicated: bool) -> Result<Namespace, MetaError> {
        let table = mount_table_of(&mounts)?;
        let txn = db.begin_write().map_err(db_err)?;
        let stored = txn.open_table(META).map_err(db_err)?.get("mounts").map_err(db_err)?.map(|v| v.value().to_vec());
        let reset = stored.as_deref() != Some(table.as_slice()) && !(replicated && stored.is_some());
        if reset {
            if stored.is_some() {
                tracing::info!("the mount table changed since the last run; the namespace is listed again");
            }
            txn.delete_table(INODES).map_err(db_err)?;
            txn.delete_table(LISTED).map_err(db_err)?;
            txn.delete_table(DENTRIES).map_err(db_err)?;
            {
                let mut meta = txn.open_table(META).map_err(db_err)?;
                meta.remove("summary").map_err(db_err)?;
                meta.remove(crate::raft::state_machine::APPLIED).map_err(db_err)?;
                meta.remove(crate::raft::state_machine::MEMBERSHIP).map_err(db_err)?;
                meta.insert("mounts", table.as_slice()).map_err(db_err)?;
            }
            let paths: Vec<&str> = mounts.iter().map(|m| m.path.as_str()).collect();
            crate::listing::build_mount_dirs(&txn, &paths, to_mtime(Some(SystemTime::now())))?;
        }
        txn.commit().map_err(db_err)?;
        Ok(Namespace { mounts, db: Arc::new(db), replica: OnceLock::new(), reset, listing: Mutex::default(), sync_ttl, unreachable: Mutex::default(), no_leader_until: Mutex::default() })
    }

    /// This master's mount table as the store records it (URIs without options, and paths).
    pub fn mount_table(&self) -> Vec<(String, String)> {
        self.mounts.iter().map(|m| (m.ufs.display.clone(), m.path.clone())).collect()
    }

    /// Whether the stored namespace was made for this master's mount table.
    pub fn serves_own_mount_table(&self) -> Result<bool, MetaError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let stored = txn.open_table(META).map_err(db_err)?.get("mounts").map_err(db_err)?.map(|v| v.value().to_vec());
        Ok(stored == Some(mount_table_of(&self.mounts)?))
    }

    /// The store, for the Raft state machine that applies listings to it.
    pub(crate) fn db(&self) -> Arc<Database> {
        self.db.clone()
    }

    /// Whether the stored namespace was dropped when opened (a new store, or a new mount table).
    pub fn was_reset(&self) -> bool {
        self.reset
    }

    /// Lists directory `ino` unless its listing is fresh (what a follower asks the leader).
    pub async fn list(&self, ino: Ino, sync: bool) -> Result<(), MetaError> {
        self.ensure_listed(ino, sync).await.map(|_| ())
    }

    /// Makes this namespace one replica of several: listings go through `replica`.
    pub fn set_replica(&self, replica: Arc<dyn Replica>) {
        let _ = self.replica.set(replica);
    }

    pub fn mounts(&self) -> &[NsMount] {
        &self.mounts
    }

    /// The UFS of a mount index.
    pub fn ufs(&self, mount: usize) -> &Ufs {
        &self.mounts[mount].ufs
    }

    pub fn getattr(&self, ino: Ino) -> Result<Inode, MetaError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let inodes = txn.open_table(INODES).map_err(db_err)?;
        let get = |ino: Ino| -> Result<Option<Inode>, MetaError> {
            Ok(inodes.get(ino).map_err(db_err)?.and_then(|v| decode(ino, v.value())))
        };
        let mut node = get(ino)?.ok_or_else(|| MetaError::stale(ino))?;
        if !node.is_dir() {
            let dir = get(node.parent)?.ok_or_else(|| MetaError::stale(node.parent))?;
            node.ufs_path = child_path(&dir.ufs_path, &node.name);
        }
        Ok(node)
    }

    pub async fn lookup(&self, parent: Ino, name: &str) -> Result<Inode, MetaError> {
        let dir = self.ensure_listed(parent, false).await?;
        let txn = self.db.begin_read().map_err(db_err)?;
        let dentries = txn.open_table(DENTRIES).map_err(db_err)?;
        let ino = dentries.get((parent, name)).map_err(db_err)?.map(|v| v.value()).ok_or_else(|| MetaError::not_found(name))?;
        let inodes = txn.open_table(INODES).map_err(db_err)?;
        let mut node = inodes.get(ino).map_err(db_err)?.and_then(|v| decode(ino, v.value())).ok_or_else(|| MetaError::stale(ino))?;
        if !node.is_dir() {
            node.ufs_path = child_path(&dir.ufs_path, &node.name);
        }
        Ok(node)
    }

    /// The children of a directory, sorted by name.
    pub async fn readdir(&self, ino: Ino) -> Result<Vec<Inode>, MetaError> {
        self.readdir_synced(ino, false).await
    }

    /// The children of a directory; with `sync`, as the UFS lists them now (a listing that
    /// started after this call did is taken as it is: concurrent readers list a directory once),
    /// whatever the sync interval.
    pub async fn readdir_synced(&self, ino: Ino, sync: bool) -> Result<Vec<Inode>, MetaError> {
        let dir = self.ensure_listed(ino, sync).await?;
        let txn = self.db.begin_read().map_err(db_err)?;
        let dentries = txn.open_table(DENTRIES).map_err(db_err)?;
        let inodes = txn.open_table(INODES).map_err(db_err)?;
        let mut out = Vec::new();
        for entry in dentries.range((ino, "")..(ino + 1, "")).map_err(db_err)? {
            let (_, child) = entry.map_err(db_err)?;
            let child = child.value();
            let Some(mut node) = inodes.get(child).map_err(db_err)?.and_then(|v| decode(child, v.value())) else { continue };
            if !node.is_dir() {
                node.ufs_path = child_path(&dir.ufs_path, &node.name);
            }
            out.push(node);
        }
        Ok(out)
    }

    /// The UFS total size and file count, when a previous count stored them.
    pub fn stored_summary(&self) -> Option<(u64, u64)> {
        let txn = self.db.begin_read().ok()?;
        let meta = txn.open_table(META).ok()?;
        let v = meta.get("summary").ok()??;
        let v = v.value();
        Some((decode_u64(v.get(..8)?)?, decode_u64(v.get(8..16)?)?))
    }

    pub fn store_summary(&self, total_bytes: u64, files: u64) -> Result<(), MetaError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut v = total_bytes.to_le_bytes().to_vec();
            v.extend_from_slice(&files.to_le_bytes());
            txn.open_table(META).map_err(db_err)?.insert("summary", v.as_slice()).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)
    }

    /// Lists `ino` from its UFS unless its listing is fresh; returns the directory.
    async fn ensure_listed(&self, ino: Ino, sync: bool) -> Result<Inode, MetaError> {
        let node = self.getattr(ino)?;
        if !node.is_dir() {
            return Err(MetaError::not_dir(ino));
        }
        let Some(mount) = node.mount else { return Ok(node) }; // made up: nothing to list
        let asked = std::time::Instant::now();
        let listed = self.listed_at(ino)?;
        if !sync && self.fresh(listed) {
            return Ok(node);
        }
        if let Some(replica) = self.replica.get().filter(|r| !r.is_leader()) {
            // No leader a moment ago: serve what is stored at once rather than each directory
            // waiting out the search for one.
            if listed.is_some() && self.no_leader_until.lock().expect("no-leader lock").is_some_and(|t| std::time::Instant::now() < t) {
                return Ok(node);
            }
            match replica.forward(ino, sync).await {
                Ok(Forwarded::Applied) => return Ok(node),
                Ok(Forwarded::Leading) => {}
                // No leader to list it (no quorum): the last listing, when there is one, is
                // served as an unreachable UFS's would be.
                Err(e) if listed.is_some() && e.retryable => {
                    tracing::warn!(dir = %node.ufs_path, error = %e.message, "no leader to re-list; serving the last listings for {UFS_RETRY_AFTER:?}");
                    *self.no_leader_until.lock().expect("no-leader lock") = Some(std::time::Instant::now() + UFS_RETRY_AFTER);
                    return Ok(node);
                }
                Err(e) => return Err(e),
            }
        }
        let gate = self.listing.lock().expect("listing lock").entry(ino).or_default().clone();
        let mut last_started = gate.lock().await;
        let listed = self.listed_at(ino)?;
        let fresh = if sync { listed.is_some() && last_started.is_some_and(|at| at >= asked) } else { self.fresh(listed) };
        if fresh {
            return Ok(node); // listed by whoever held the gate before us
        }
        *last_started = Some(std::time::Instant::now());
        if listed.is_some() && self.is_unreachable(mount) {
            return Ok(node);
        }
        match self.mounts[mount].ufs.list(&node.ufs_path).await {
            Ok(entries) => {
                self.commit_listing(&node, mount, entries).await?;
                self.unreachable.lock().expect("unreachable lock").remove(&mount);
            }
            Err(e) if listed.is_some() => {
                tracing::warn!(dir = %node.ufs_path, error = %e.message, "cannot re-list a directory; serving the last listings of this mount for {UFS_RETRY_AFTER:?}");
                self.mark_unreachable(mount);
            }
            Err(e) => return Err(e.into()),
        }
        Ok(node)
    }

    /// Serves the stored listings of `mount` without trying its UFS for [`UFS_RETRY_AFTER`]
    /// (the UFS was found unreachable).
    pub fn mark_unreachable(&self, mount: usize) {
        self.unreachable.lock().expect("unreachable lock").insert(mount, std::time::Instant::now() + UFS_RETRY_AFTER);
    }

    fn is_unreachable(&self, mount: usize) -> bool {
        self.unreachable.lock().expect("unreachable lock").get(&mount).is_some_and(|until| std::time::Instant::now() < *until)
    }

    fn listed_at(&self, ino: Ino) -> Result<Option<u64>, MetaError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let listed = txn.open_table(LISTED).map_err(db_err)?;
        Ok(listed.get(ino).map_err(db_err)?.map(|v| v.value()))
    }

    fn fresh(&self, listed_at: Option<u64>) -> bool {
        match listed_at {
            None => false,
            Some(at) => self.sync_ttl.is_none_or(|ttl| now_secs().saturating_sub(at) < ttl.as_secs()),
        }
    }

    /// Puts a listing into the namespace: through the Raft log when there are several masters
    /// (every member then applies it identically), else in one local transaction.
    async fn commit_listing(&self, dir: &Inode, mount: usize, entries: Vec<cistern_ufs::UfsEntry>) -> Result<(), MetaError> {
        let listing = Listing::new(dir.ino, mount, now_secs(), entries);
        match self.replica.get() {
            Some(replica) => replica.commit(listing).await,
            None => {
                let txn = self.db.begin_write().map_err(db_err)?;
                apply_listing(&txn, &listing)?;
                txn.commit().map_err(db_err)
            }
        }
    }
}

fn mount_table_of(mounts: &[NsMount]) -> Result<Vec<u8>, MetaError> {
    let table: Vec<(&str, &str)> = mounts.iter().map(|m| (m.ufs.display.as_str(), m.path.as_str())).collect();
    serde_json::to_vec(&table).map_err(db_err)
}
