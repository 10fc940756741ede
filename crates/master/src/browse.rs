//! The file browser of the master's page (Alluxio's "browse"): a directory's entries with how
//! much of each is cached, asked of the workers (`Cached`), and for each subdirectory the same
//! summed over the files under it, up to [`WALK_BUDGET`] entries walked per request (past
//! that, a directory's figures say they are partial).

use crate::rpc::WorkerRegistry;
use crate::{Inode, MetaError, Namespace, ROOT_INO};
use cistern_rpc::{pb, Errno, RefKey};
use std::collections::VecDeque;

/// Entries (files and directories) read below one listing's subdirectories, at most.
pub const WALK_BUDGET: usize = 4096;
/// The longest path a browse request may name.
pub const MAX_PATH: usize = 4096;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    pub name: String,
    pub dir: bool,
    /// Bytes: of the file, or of the files under the directory that were walked.
    pub size: u64,
    pub cached: u64,
    /// Files counted (1 for a file).
    pub files: u64,
    /// False when the walk budget ran out inside this directory.
    pub complete: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Listing {
    /// The directory listed, normalised (`/`, `/train`).
    pub path: String,
    pub entries: Vec<Entry>,
}

/// Lists `path` with cached figures; an unknown or malformed path is an error naming it.
pub async fn browse(ns: &Namespace, refs: &RefKey, registry: &WorkerRegistry, path: &str) -> Result<Listing, MetaError> {
    let dir = resolve(ns, path).await?;
    if !dir.is_dir() {
        return Err(MetaError { retryable: false, errno: Errno::NotADirectory, message: format!("{path}: not a directory") });
    }
    let children = ns.readdir(dir.ino).await?;
    // Every file to ask about, with the index of the entry it counts for.
    let mut files: Vec<(usize, pb::FileRef)> = Vec::new();
    let mut entries = Vec::with_capacity(children.len());
    let mut budget = WALK_BUDGET;
    for (i, child) in children.iter().enumerate() {
        let mut e = Entry { name: child.name.clone(), dir: child.is_dir(), size: 0, cached: 0, files: 0, complete: true };
        if child.is_dir() {
            e.complete = walk(ns, refs, child, i, &mut budget, &mut e, &mut files).await?;
        } else {
            count_file(refs, child, i, &mut e, &mut files);
        }
        entries.push(e);
    }
    let refs_only: Vec<pb::FileRef> = files.iter().map(|(_, f)| f.clone()).collect();
    let cached = registry.cached(&refs_only).await;
    for ((i, f), c) in files.iter().zip(cached) {
        entries[*i].cached += c.min(f.size);
    }
    let path = if path.trim_matches('/').is_empty() { "/".to_string() } else { format!("/{}", path.trim_matches('/')) };
    Ok(Listing { path, entries })
}

fn count_file(refs: &RefKey, file: &Inode, i: usize, e: &mut Entry, files: &mut Vec<(usize, pb::FileRef)>) {
    e.size += file.size;
    e.files += 1;
    if let Some(r) = file.sign_ref(refs) {
        files.push((i, r));
    }
}

/// Counts the files under `dir` into `e`; false when the budget ran out first.
async fn walk(ns: &Namespace, refs: &RefKey, dir: &Inode, i: usize, budget: &mut usize, e: &mut Entry, files: &mut Vec<(usize, pb::FileRef)>) -> Result<bool, MetaError> {
    let mut queue = VecDeque::from([dir.ino]);
    while let Some(ino) = queue.pop_front() {
        for child in ns.readdir(ino).await? {
            if *budget == 0 {
                return Ok(false);
            }
            *budget -= 1;
            if child.is_dir() {
                queue.push_back(child.ino);
            } else {
                count_file(refs, &child, i, e, files);
            }
        }
    }
    Ok(true)
}

/// The inode at `path` (components separated by `/`), looked up from the root.
async fn resolve(ns: &Namespace, path: &str) -> Result<Inode, MetaError> {
    let invalid = |why: &str| MetaError { retryable: false, errno: Errno::InvalidArgument, message: format!("path {path:?}: {why}; give a directory of the Dataset such as / or /train") };
    if path.len() > MAX_PATH {
        return Err(invalid("too long"));
    }
    let mut node = ns.getattr(ROOT_INO)?;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if part == "." || part == ".." || part.contains('\0') {
            return Err(invalid("`.`, `..` and NUL are not names"));
        }
        node = ns.lookup(node.ino, part).await?;
    }
    Ok(node)
}

/// Size and cached bytes of everything at `path` (a file, or the files under a directory up
/// to the walk budget): a DataLoad's progress on one of its targets.
pub async fn usage(ns: &Namespace, refs: &RefKey, registry: &WorkerRegistry, path: &str) -> Result<Entry, MetaError> {
    let node = resolve(ns, path).await?;
    let mut e = Entry { name: node.name.clone(), dir: node.is_dir(), size: 0, cached: 0, files: 0, complete: true };
    let mut files = Vec::new();
    if node.is_dir() {
        let mut budget = WALK_BUDGET;
        e.complete = walk(ns, refs, &node, 0, &mut budget, &mut e, &mut files).await?;
    } else {
        count_file(refs, &node, 0, &mut e, &mut files);
    }
    let refs_only: Vec<pb::FileRef> = files.iter().map(|(_, f)| f.clone()).collect();
    for (f, c) in refs_only.iter().zip(registry.cached(&refs_only).await) {
        e.cached += c.min(f.size);
    }
    Ok(e)
}
