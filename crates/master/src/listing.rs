//! A directory listing as the namespace's one kind of write: what the UFS answered, with when,
//! applied in one transaction.
//!
//! With several masters a listing is a Raft log entry ([`crate::raft`]) that every member
//! applies to its own store, so applying must depend only on the store and the listing: the
//! time is the leader's (`listed_at`), new inode numbers come from the stored `next_ino` in
//! the listing's order, and a directory forgotten since (its parent re-listed without it) makes
//! the listing a no-op everywhere alike.

use crate::inode::*;
use crate::store::{decode, decode_u64, encode, DENTRIES, INODES, LISTED, META};
use crate::MetaError;
use redb::{ReadableTable, Table, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One directory's entries as its UFS listed them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub dir: Ino,
    pub mount: usize,
    /// Unix seconds, by the clock of whoever listed.
    pub listed_at: u64,
    pub entries: Vec<ListedEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedEntry {
    pub name: String,
    pub dir: bool,
    pub size: u64,
    pub mtime: (i64, u32),
    pub etag: Option<String>,
}

impl Listing {
    pub fn new(dir: Ino, mount: usize, listed_at: u64, entries: Vec<cistern_ufs::UfsEntry>) -> Listing {
        let entries = entries
            .into_iter()
            .map(|e| ListedEntry { name: e.name, dir: e.is_dir, size: e.size, mtime: to_mtime(e.mtime), etag: e.etag })
            .collect();
        Listing { dir, mount, listed_at, entries }
    }
}

pub(crate) fn db_err(e: impl std::fmt::Display) -> MetaError {
    MetaError { retryable: false, errno: cistern_rpc::Errno::Io, message: format!("metadata store: {e}") }
}

pub(crate) fn child_path(dir_path: &str, name: &str) -> String {
    if dir_path.is_empty() {
        name.to_string()
    } else {
        format!("{dir_path}/{name}")
    }
}

/// Replaces a directory's entries with `listing` inside `txn`: names still present keep their
/// inode number (when still of the same kind), new names take the next ones, and names gone
/// are forgotten with their subtrees.
pub(crate) fn apply_listing(txn: &WriteTransaction, listing: &Listing) -> Result<(), MetaError> {
    let mut meta = txn.open_table(META).map_err(db_err)?;
    let mut inodes = txn.open_table(INODES).map_err(db_err)?;
    let mut dentries = txn.open_table(DENTRIES).map_err(db_err)?;
    let mut listed = txn.open_table(LISTED).map_err(db_err)?;
    let Some(dir) = inodes.get(listing.dir).map_err(db_err)?.and_then(|v| decode(listing.dir, v.value())) else {
        return Ok(()); // forgotten since it was listed
    };
    if !dir.is_dir() {
        return Ok(());
    }
    let mut next = meta.get("next_ino").map_err(db_err)?.and_then(|v| decode_u64(v.value())).unwrap_or(ROOT_INO + 1);
    let mut old = BTreeMap::new();
    for entry in dentries.range((dir.ino, "")..(dir.ino + 1, "")).map_err(db_err)? {
        let (k, v) = entry.map_err(db_err)?;
        old.insert(k.value().1.to_string(), v.value());
    }
    let mut new = BTreeMap::new();
    for e in &listing.entries {
        let kind = if e.dir { Kind::Dir } else { Kind::File };
        let same_kind = |ino: Ino| -> Result<bool, MetaError> {
            Ok(inodes.get(ino).map_err(db_err)?.and_then(|v| decode(ino, v.value())).is_some_and(|n| n.kind == kind))
        };
        let ino = match old.get(&e.name) {
            Some(&ino) if same_kind(ino)? => ino,
            _ => {
                next += 1;
                next - 1
            }
        };
        let node = Inode {
            ino,
            parent: dir.ino,
            name: e.name.clone(),
            kind,
            size: e.size,
            mtime: e.mtime,
            etag: e.etag.clone(),
            mount: Some(listing.mount),
            ufs_path: if e.dir { child_path(&dir.ufs_path, &e.name) } else { String::new() },
            file_ref: None,
        };
        inodes.insert(ino, encode(&node).as_slice()).map_err(db_err)?;
        dentries.insert((dir.ino, e.name.as_str()), ino).map_err(db_err)?;
        new.insert(e.name.clone(), ino);
    }
    // Names gone from the UFS (or now of another kind): forget them and their subtrees.
    for (name, ino) in &old {
        if new.get(name) != Some(ino) {
            if !new.contains_key(name) {
                dentries.remove((dir.ino, name.as_str())).map_err(db_err)?;
            }
            forget_subtree(&mut inodes, &mut dentries, &mut listed, *ino)?;
        }
    }
    listed.insert(dir.ino, listing.listed_at).map_err(db_err)?;
    meta.insert("next_ino", next.to_le_bytes().as_slice()).map_err(db_err)?;
    Ok(())
}

fn forget_subtree(
    inodes: &mut Table<u64, &[u8]>,
    dentries: &mut Table<(u64, &str), u64>,
    listed: &mut Table<u64, u64>,
    ino: Ino,
) -> Result<(), MetaError> {
    inodes.remove(ino).map_err(db_err)?;
    listed.remove(ino).map_err(db_err)?;
    let mut children = Vec::new();
    for entry in dentries.range((ino, "")..(ino + 1, "")).map_err(db_err)? {
        let (k, v) = entry.map_err(db_err)?;
        children.push((k.value().1.to_string(), v.value()));
    }
    for (name, child) in children {
        dentries.remove((ino, name.as_str())).map_err(db_err)?;
        forget_subtree(inodes, dentries, listed, child)?;
    }
    Ok(())
}

/// The root, the made-up directories above mounts, and each mount's root directory (`paths`:
/// where each mount appears), every one with `mtime`.
pub(crate) fn build_mount_dirs(txn: &WriteTransaction, paths: &[&str], mtime: (i64, u32)) -> Result<(), MetaError> {
    let mut inodes = txn.open_table(INODES).map_err(db_err)?;
    let mut dentries = txn.open_table(DENTRIES).map_err(db_err)?;
    let mut meta = txn.open_table(META).map_err(db_err)?;
    txn.open_table(LISTED).map_err(db_err)?; // (re)created empty
    let root = Inode {
        ino: ROOT_INO,
        parent: ROOT_INO,
        name: String::new(),
        kind: Kind::Dir,
        size: 0,
        mtime,
        etag: None,
        mount: None,
        file_ref: None,
        ufs_path: String::new(),
    };
    let mut nodes: BTreeMap<Ino, Inode> = BTreeMap::from([(ROOT_INO, root.clone())]);
    let mut children: BTreeMap<(Ino, String), Ino> = BTreeMap::new();
    let mut next = ROOT_INO + 1;
    for (i, path) in paths.iter().enumerate() {
        let mut dir = ROOT_INO;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            dir = *children.entry((dir, part.to_string())).or_insert_with(|| {
                let ino = next;
                next += 1;
                nodes.insert(ino, Inode { ino, parent: dir, name: part.to_string(), ..root.clone() });
                ino
            });
        }
        nodes.get_mut(&dir).expect("mount dir").mount = Some(i);
    }
    for (ino, node) in &nodes {
        inodes.insert(*ino, encode(node).as_slice()).map_err(db_err)?;
    }
    for ((parent, name), ino) in &children {
        dentries.insert((*parent, name.as_str()), *ino).map_err(db_err)?;
    }
    meta.insert("next_ino", next.to_le_bytes().as_slice()).map_err(db_err)?;
    Ok(())
}

/// The quorum's mount table replaced (a master leads whose configuration names other mounts):
/// the namespace starts again from the mount directories, alike on every master. A table
/// equal to the stored one changes nothing.
pub(crate) fn apply_mounts(txn: &WriteTransaction, table: &[(String, String)], root_mtime: (i64, u32)) -> Result<(), MetaError> {
    let json = serde_json::to_vec(table).map_err(db_err)?;
    {
        let meta = txn.open_table(META).map_err(db_err)?;
        if meta.get("mounts").map_err(db_err)?.is_some_and(|v| v.value() == json.as_slice()) {
            return Ok(());
        }
    }
    txn.delete_table(INODES).map_err(db_err)?;
    txn.delete_table(LISTED).map_err(db_err)?;
    txn.delete_table(DENTRIES).map_err(db_err)?;
    {
        let mut meta = txn.open_table(META).map_err(db_err)?;
        meta.remove("summary").map_err(db_err)?;
        meta.insert("mounts", json.as_slice()).map_err(db_err)?;
    }
    let paths: Vec<&str> = table.iter().map(|(_, p)| p.as_str()).collect();
    build_mount_dirs(txn, &paths, root_mtime)
}
