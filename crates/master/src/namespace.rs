//! The namespace: inodes for every path of the Dataset, loaded lazily from the UFS.
//!
//! Inode numbers are handed out once and kept for as long as the path exists, so a FUSE daemon
//! that restarts, or the kernel holding a node ID, still means the same file. A directory is
//! listed from its UFS the first time it is looked into, and again once its listing is older
//! than the sync TTL (only when `metadataSyncPolicy.autoSync` is on). A re-listing keeps the
//! inode number of every name still present and updates size, mtime and etag, so a changed
//! object gets a new cache key (see [`Inode::version`]).
//!
//! Several mounts appear under their `path`; the directories above them are made up here and
//! never listed.

use crate::inode::*;
use crate::MetaError;
use cistern_ufs::Ufs;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// A mount as the namespace needs it: its UFS and where it appears.
#[derive(Debug, Clone)]
pub struct NsMount {
    pub ufs: Ufs,
    pub path: String,
}

struct DirState {
    entries: BTreeMap<String, Ino>,
    /// When the entries were last listed from the UFS; `None` for made-up directories.
    listed_at: Option<Instant>,
}

#[derive(Default)]
struct State {
    inodes: HashMap<Ino, Inode>,
    dirs: HashMap<Ino, DirState>,
    next_ino: Ino,
}

pub struct Namespace {
    mounts: Vec<NsMount>,
    state: RwLock<State>,
    /// One listing at a time per directory: concurrent lookups wait for it rather than list too.
    listing: Mutex<HashMap<Ino, Arc<tokio::sync::Mutex<()>>>>,
    /// Re-list a directory older than this; `None` never re-lists.
    sync_ttl: Option<Duration>,
}

impl Namespace {
    pub fn new(mounts: Vec<NsMount>, sync_ttl: Option<Duration>) -> Namespace {
        let mut st = State { next_ino: ROOT_INO + 1, ..State::default() };
        let root = Inode {
            ino: ROOT_INO,
            parent: ROOT_INO,
            name: String::new(),
            kind: Kind::Dir,
            size: 0,
            mtime: to_mtime(Some(std::time::SystemTime::now())),
            etag: None,
            mount: None,
            ufs_path: String::new(),
        };
        st.inodes.insert(ROOT_INO, root.clone());
        st.dirs.insert(ROOT_INO, DirState { entries: BTreeMap::new(), listed_at: None });
        for (i, m) in mounts.iter().enumerate() {
            let mut dir = ROOT_INO;
            let parts: Vec<&str> = m.path.split('/').filter(|p| !p.is_empty()).collect();
            for (depth, part) in parts.iter().enumerate() {
                let last = depth + 1 == parts.len();
                let existing = st.dirs[&dir].entries.get(*part).copied();
                dir = match existing {
                    Some(ino) => ino,
                    None => {
                        let ino = st.next_ino;
                        st.next_ino += 1;
                        let node = Inode {
                            ino,
                            parent: dir,
                            name: part.to_string(),
                            mount: last.then_some(i),
                            ..root.clone()
                        };
                        st.inodes.insert(ino, node);
                        st.dirs.insert(ino, DirState { entries: BTreeMap::new(), listed_at: None });
                        st.dirs.get_mut(&dir).expect("parent dir").entries.insert(part.to_string(), ino);
                        ino
                    }
                };
            }
            if parts.is_empty() {
                st.inodes.get_mut(&ROOT_INO).expect("root").mount = Some(i);
            }
        }
        Namespace { mounts, state: RwLock::new(st), listing: Mutex::default(), sync_ttl }
    }

    pub fn mounts(&self) -> &[NsMount] {
        &self.mounts
    }

    pub fn getattr(&self, ino: Ino) -> Result<Inode, MetaError> {
        self.state.read().expect("namespace lock").inodes.get(&ino).cloned().ok_or_else(|| MetaError::stale(ino))
    }

    pub async fn lookup(&self, parent: Ino, name: &str) -> Result<Inode, MetaError> {
        self.ensure_listed(parent).await?;
        let st = self.state.read().expect("namespace lock");
        let dir = st.dirs.get(&parent).ok_or_else(|| MetaError::not_dir(parent))?;
        let ino = dir.entries.get(name).ok_or_else(|| MetaError::not_found(name))?;
        Ok(st.inodes[ino].clone())
    }

    /// The children of a directory, sorted by name.
    pub async fn readdir(&self, ino: Ino) -> Result<Vec<Inode>, MetaError> {
        self.ensure_listed(ino).await?;
        let st = self.state.read().expect("namespace lock");
        let dir = st.dirs.get(&ino).ok_or_else(|| MetaError::not_dir(ino))?;
        Ok(dir.entries.values().map(|i| st.inodes[i].clone()).collect())
    }

    /// The UFS of a mount index.
    pub fn ufs(&self, mount: usize) -> &Ufs {
        &self.mounts[mount].ufs
    }

    async fn ensure_listed(&self, ino: Ino) -> Result<(), MetaError> {
        let node = self.getattr(ino)?;
        if !node.is_dir() {
            return Err(MetaError::not_dir(ino));
        }
        let Some(mount) = node.mount else { return Ok(()) }; // made up: nothing to list
        if self.fresh(ino) {
            return Ok(());
        }
        let gate = self.listing.lock().expect("listing lock").entry(ino).or_default().clone();
        let _one = gate.lock().await;
        if self.fresh(ino) {
            return Ok(()); // listed by whoever held the gate before us
        }
        let entries = self.mounts[mount].ufs.list(&node.ufs_path).await.map_err(MetaError::from)?;
        self.merge_listing(&node, mount, entries);
        Ok(())
    }

    fn fresh(&self, ino: Ino) -> bool {
        let st = self.state.read().expect("namespace lock");
        match st.dirs.get(&ino).and_then(|d| d.listed_at) {
            None => false,
            Some(at) => self.sync_ttl.is_none_or(|ttl| at.elapsed() < ttl),
        }
    }

    fn merge_listing(&self, dir: &Inode, mount: usize, entries: Vec<cistern_ufs::UfsEntry>) {
        let mut st = self.state.write().expect("namespace lock");
        let old = st.dirs.remove(&dir.ino).map(|d| d.entries).unwrap_or_default();
        let mut new = BTreeMap::new();
        for e in entries {
            let kind = if e.is_dir { Kind::Dir } else { Kind::File };
            let ufs_path = if dir.ufs_path.is_empty() { e.name.clone() } else { format!("{}/{}", dir.ufs_path, e.name) };
            let ino = match old.get(&e.name) {
                Some(ino) if st.inodes.get(ino).is_some_and(|n| n.kind == kind) => *ino,
                _ => {
                    let ino = st.next_ino;
                    st.next_ino += 1;
                    ino
                }
            };
            let node = Inode {
                ino,
                parent: dir.ino,
                name: e.name.clone(),
                kind,
                size: e.size,
                mtime: to_mtime(e.mtime),
                etag: e.etag,
                mount: Some(mount),
                ufs_path,
            };
            if kind == Kind::Dir {
                st.dirs.entry(ino).or_insert_with(|| DirState { entries: BTreeMap::new(), listed_at: None });
            }
            st.inodes.insert(ino, node);
            new.insert(e.name, ino);
        }
        // Names gone from the UFS: forget them (and their subtrees) unless they come back.
        for (name, ino) in &old {
            if new.get(name) != Some(ino) {
                forget_subtree(&mut st, *ino);
            }
        }
        st.dirs.insert(dir.ino, DirState { entries: new, listed_at: Some(Instant::now()) });
    }
}

fn forget_subtree(st: &mut State, ino: Ino) {
    st.inodes.remove(&ino);
    if let Some(d) = st.dirs.remove(&ino) {
        for child in d.entries.into_values() {
            forget_subtree(st, child);
        }
    }
}
