//! Epoch-aware prefetch: a reader going through a directory's files (a training epoch reads
//! every file once, in any order) gets the files it has yet to read fetched ahead of it.
//!
//! - **Trigger.** The third distinct file read (from its start) in one directory: one or two
//!   are a look at a few files, not a walk; and reads count, not opens (a tool that opens
//!   every file to drop its page cache reads none).
//! - **What and in which order.** The directory's other files (from its listing, which the
//!   first lookup there brought), minus those already opened: in name order from the last one
//!   opened when the opens so far came in name order, else in listing order.
//! - **Bounds.** [`PREFETCH_FILES`] files in flight per client; at most [`MAX_FILES`] files per
//!   directory; never more bytes than the cache has free, less a tenth of its capacity, at the
//!   start: prefetch never evicts what the epoch has yet to read, so a dataset larger than the
//!   cache does not thrash. A file the reader opens meanwhile is skipped.
//! - **Random access** inside files never triggers it (only opens of distinct files count).
//! - Each file is asked of its owner with `ReadRequest.prefetch`: the worker fetches and keeps
//!   it and answers without the bytes.
//! - **Opt-in** for now: `CISTERN_EPOCH_PREFETCH=1` in the FUSE client's environment (on
//!   Kubernetes, the runtime's `fuse.env`).

use crate::{file_ref, ClientError};
use cistern_master::{Ino, Inode};
use cistern_rpc::pb;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Distinct files opened in a directory before its other files are prefetched.
pub const TRIGGER: usize = 3;
/// Prefetches in flight per client. Against a far store each file costs a round trip or two
/// before its bytes flow, so it takes many at once to keep the link busy (the far bench's
/// small files: 4 in flight gained 1.21 over none, while the peers stayed at the store's rate
/// for 8 readers).
pub const PREFETCH_FILES: usize = 16;
/// Files prefetched for one directory at most.
pub const MAX_FILES: usize = 65_536;
/// Directories tracked at once (the oldest are forgotten past this).
const MAX_DIRS: usize = 4096;

#[derive(Default)]
struct Dir {
    opened: HashSet<Ino>,
    /// Names in the order opened (the first [`TRIGGER`] are enough to see an order).
    names: Vec<String>,
    started: bool,
}

/// What a client remembers of the directories being walked.
#[derive(Default)]
pub struct Epochs {
    dirs: Mutex<HashMap<Ino, Dir>>,
    /// Files opened by readers while a prefetch runs: skipped by it.
    pub(crate) opened: Arc<Mutex<HashSet<Ino>>>,
}

impl Epochs {
    /// Notes that `node` was opened; `Some((dir, names so far))` when its directory's prefetch
    /// should start now.
    pub fn opened(&self, node: &Inode) -> Option<(Ino, Vec<String>)> {
        if node.is_dir() {
            return None;
        }
        {
            let mut opened = self.opened.lock().expect("opened lock");
            if opened.len() >= MAX_FILES {
                opened.clear();
            }
            opened.insert(node.ino);
        }
        let mut dirs = self.dirs.lock().expect("dirs lock");
        if dirs.len() >= MAX_DIRS && !dirs.contains_key(&node.parent) {
            dirs.clear();
        }
        let dir = dirs.entry(node.parent).or_default();
        if dir.started || !dir.opened.insert(node.ino) {
            return None;
        }
        dir.names.push(node.name.clone());
        if dir.opened.len() < TRIGGER {
            return None;
        }
        dir.started = true;
        Some((node.parent, std::mem::take(&mut dir.names)))
    }
}

/// The files of a directory to prefetch, in order: in name order after the last one opened
/// (then from the start) when the opens came in name order, else as listed.
pub fn plan(listing: Vec<Inode>, opened_names: &[String], opened: &HashSet<Ino>) -> Vec<Inode> {
    let mut files: Vec<Inode> = listing.into_iter().filter(|n| !n.is_dir() && n.size > 0 && !opened.contains(&n.ino)).collect();
    let ascending = opened_names.windows(2).all(|w| w[0] < w[1]);
    if ascending {
        files.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(last) = opened_names.last() {
            let split = files.partition_point(|n| n.name < *last);
            files.rotate_left(split);
        }
    }
    files.truncate(MAX_FILES);
    files
}

impl crate::Client {
    /// Notes the first read (offset 0) of file `ino` (the FUSE layer calls this): the third
    /// distinct file read in a directory starts the prefetch of its other files on `rt`
    /// ([`epoch`]). Reads count, not opens: a tool that opens every file without reading it
    /// (to drop its page cache, to check it exists) is no epoch.
    pub fn note_first_read(self: &Arc<Self>, ino: Ino, rt: &tokio::runtime::Handle) {
        if self.epochs.is_none() {
            return;
        }
        let node = self.inodes.lock().expect("inodes lock").get(&ino).map(|(_, n)| n.clone());
        if let Some(node) = node {
            self.note_open(&node, rt);
        }
    }

    fn note_open(self: &Arc<Self>, node: &Inode, rt: &tokio::runtime::Handle) {
        let Some((dir, names)) = self.epochs.as_ref().and_then(|e| e.opened(node)) else { return };
        let me = self.clone();
        rt.spawn(async move { me.prefetch_dir(dir, names).await });
    }

    async fn prefetch_dir(self: Arc<Self>, dir: Ino, names: Vec<String>) {
        let Some(epochs) = &self.epochs else { return };
        let Ok(listing) = self.readdir(dir).await else { return };
        let opened = epochs.opened.lock().expect("opened lock").clone();
        let files = plan(listing, &names, &opened);
        if files.is_empty() {
            return;
        }
        // Never more than the cache has free (less a tenth): prefetch evicts nothing the epoch
        // has yet to read.
        let Ok((stats, _)) = self.stats().await else { return };
        let mut budget = stats.capacity.saturating_sub(stats.cached).saturating_sub(stats.capacity / 10);
        let (mut count, mut bytes) = (0u64, 0u64);
        for node in files {
            if node.size > budget {
                break;
            }
            if epochs.opened.lock().expect("opened lock").contains(&node.ino) {
                continue; // the reader got there first
            }
            let Ok(permit) = self.prefetching.clone().acquire_owned().await else { return };
            budget -= node.size;
            (count, bytes) = (count + 1, bytes + node.size);
            let me = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(e) = me.prefetch_file(&node).await {
                    tracing::debug!(file = %node.name, "epoch prefetch: {}", e.message);
                }
            });
        }
        tracing::debug!(dir, files = count, bytes, "epoch prefetch");
    }

    async fn prefetch_file(&self, node: &Inode) -> Result<(), ClientError> {
        let file = file_ref(node)?;
        self.with_worker("prefetch", &file, |w| {
            let r = pb::ReadRequest { file: Some(file.clone()), prefetch: true, client_node: self.node.clone(), ..Default::default() };
            async move { w.read(r).await }
        })
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(ino: Ino, name: &str) -> Inode {
        let kind = cistern_master::Kind::File;
        Inode { ino, parent: 1, name: name.into(), kind, size: 10, mtime: (0, 0), etag: None, mount: Some(0), ufs_path: name.into(), file_ref: None }
    }

    #[test]
    fn the_third_distinct_file_in_a_directory_starts_it_once() {
        let e = Epochs::default();
        assert!(e.opened(&file(2, "a")).is_none());
        assert!(e.opened(&file(2, "a")).is_none(), "the same file again is no walk");
        assert!(e.opened(&file(3, "b")).is_none());
        assert_eq!(e.opened(&file(4, "c")), Some((1, vec!["a".to_string(), "b".into(), "c".into()])));
        assert!(e.opened(&file(5, "d")).is_none(), "started once");
    }

    #[test]
    fn a_walk_in_name_order_goes_on_from_where_it_is() {
        let listing: Vec<Inode> = ["a", "b", "c", "d", "e", "f"].iter().enumerate().map(|(i, n)| file(i as Ino + 2, n)).collect();
        let opened: HashSet<Ino> = [2, 3, 5].into();
        let order: Vec<String> = plan(listing.clone(), &["a".into(), "b".into(), "d".into()], &opened).into_iter().map(|n| n.name).collect();
        assert_eq!(order, ["e", "f", "c"], "after the last opened, then the rest");
        let shuffled: Vec<String> = plan(listing, &["d".into(), "a".into(), "b".into()], &opened).into_iter().map(|n| n.name).collect();
        assert_eq!(shuffled, ["c", "e", "f"], "no order seen: as listed");
    }
}
