//! The master's persistent store: the mount table and the namespace in one redb file,
//! `<namespace.meta-dir>/namespace.redb`, so that a master killed at any moment comes back with
//! every entry it had listed and without listing the UFS again (seeds 000 and 002).
//!
//! Tables:
//! - `meta`: `format` (the on-disk format version), `next_ino`, `mounts` (the mount table:
//!   UFS URIs without any option or secret, and where each appears), `summary` (the UFS total
//!   and file count, so a restart does not recount);
//! - `inodes`: inode number → compact binary record ([`encode`]);
//! - `dentries`: (parent inode, name) → inode number; a directory's listing is one range scan;
//! - `listed`: directory inode → when it was last listed from the UFS (Unix seconds).
//!
//! Every directory listing is merged in one write transaction, so a crash leaves either the old
//! listing or the new one, never half of it.

use crate::inode::{Ino, Inode, Kind};
use crate::MetaError;
use redb::{Database, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};

pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const INODES: TableDefinition<u64, &[u8]> = TableDefinition::new("inodes");
pub(crate) const DENTRIES: TableDefinition<(u64, &str), u64> = TableDefinition::new("dentries");
pub(crate) const LISTED: TableDefinition<u64, u64> = TableDefinition::new("listed");

/// The on-disk format this build writes and reads. Bump it when the records or tables change,
/// and add the upgrade from the previous version to [`open`].
pub const FORMAT_VERSION: u32 = 1;
pub const STORE_FILE: &str = "namespace.redb";

/// Opens (or creates) the store in `meta_dir`.
pub fn open(meta_dir: &Path) -> Result<Database, MetaError> {
    let bad = |what: String| MetaError { retryable: false, errno: cistern_rpc::Errno::Io, message: what };
    std::fs::create_dir_all(meta_dir).map_err(|e| {
        bad(format!(
            "namespace.meta-dir {}: cannot create it ({e}); give a writable directory in master.properties[\"namespace.meta-dir\"]",
            meta_dir.display()
        ))
    })?;
    let path = meta_dir.join(STORE_FILE);
    restrict(meta_dir, &path);
    let db = Database::create(&path).map_err(|e| open_error(&path, e))?;
    check_format(&db, &path)?;
    Ok(db)
}

/// The namespace names every file of the Dataset: readable by the master's user only (the
/// directory 0700, the store 0600, made so before redb first writes to it).
fn restrict(meta_dir: &Path, store: &Path) {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let private = |p: &Path, mode: u32| {
        if let Err(e) = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)) {
            tracing::warn!(path = %p.display(), error = %e, "cannot restrict permissions");
        }
    };
    private(meta_dir, 0o700);
    let _ = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(store);
    private(store, 0o600);
}

/// A store in memory (tests, and runs without a meta dir).
pub fn in_memory() -> Database {
    let db = Database::builder()
        .create_with_backend(redb::backends::InMemoryBackend::new())
        .expect("an in-memory redb database");
    check_format(&db, Path::new(":memory:")).expect("a fresh in-memory store");
    db
}

fn open_error(path: &Path, e: redb::DatabaseError) -> MetaError {
    let fix = format!("`cistern format --meta-dir {}` wipes it (the metadata is then reloaded from the UFS)", parent(path).display());
    let message = match e {
        redb::DatabaseError::DatabaseAlreadyOpen => {
            format!("{}: already open by another cistern master; stop that one first", path.display())
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => match io.raw_os_error() {
            Some(libc_errno::EROFS) | Some(libc_errno::EACCES) | Some(libc_errno::EPERM) => format!(
                "{}: cannot write the metadata store ({io}); give a writable namespace.meta-dir in master.properties",
                path.display()
            ),
            _ if io.kind() == std::io::ErrorKind::InvalidData => {
                format!("{}: the metadata store is damaged or not a cistern store ({io}); {fix}", path.display())
            }
            _ => format!("{}: cannot open the metadata store ({io}); if it is damaged, {fix}", path.display()),
        },
        other => format!("{}: the metadata store is damaged or not a cistern store ({other}); {fix}", path.display()),
    };
    MetaError { retryable: false, errno: cistern_rpc::Errno::Io, message }
}

fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Stamps a new store with [`FORMAT_VERSION`]; refuses one written by a newer version.
fn check_format(db: &Database, path: &Path) -> Result<(), MetaError> {
    let err = |e: String| MetaError { retryable: false, errno: cistern_rpc::Errno::Io, message: format!("{}: {e}", path.display()) };
    let txn = db.begin_write().map_err(|e| err(e.to_string()))?;
    {
        let mut meta = txn.open_table(META).map_err(|e| err(e.to_string()))?;
        let found = meta.get("format").map_err(|e| err(e.to_string()))?.map(|v| decode_u32(v.value()));
        match found {
            None => {
                meta.insert("format", FORMAT_VERSION.to_le_bytes().as_slice()).map_err(|e| err(e.to_string()))?;
            }
            Some(Some(v)) if v == FORMAT_VERSION => {}
            Some(Some(v)) if v > FORMAT_VERSION => {
                return Err(err(format!(
                    "written by a newer cistern (metadata format {v}; this one reads up to {FORMAT_VERSION}); run that version, or wipe the metadata with `cistern format --meta-dir {}`",
                    parent(path).display()
                )))
            }
            Some(v) => {
                return Err(err(format!(
                    "unknown metadata format {v:?}; wipe it with `cistern format --meta-dir {}`",
                    parent(path).display()
                )))
            }
        }
        txn.open_table(INODES).map_err(|e| err(e.to_string()))?;
        txn.open_table(DENTRIES).map_err(|e| err(e.to_string()))?;
        txn.open_table(LISTED).map_err(|e| err(e.to_string()))?;
    }
    txn.commit().map_err(|e| err(e.to_string()))
}

/// Removes the store of `meta_dir` (`cistern format`). Refuses while a master has it open.
pub fn format(meta_dir: &Path) -> Result<bool, MetaError> {
    let path = meta_dir.join(STORE_FILE);
    if !path.exists() {
        return Ok(false);
    }
    // Opening takes redb's lock: it fails while a master holds the store.
    match Database::open(&path) {
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(open_error(&path, redb::DatabaseError::DatabaseAlreadyOpen)),
        Ok(db) => drop(db),
        Err(_) => {} // damaged: wiping it is the point
    }
    std::fs::remove_file(&path).map_err(|e| MetaError { retryable: false, errno: cistern_rpc::Errno::Io, message: format!("{}: cannot remove it: {e}", path.display()) })?;
    // One master of several: its Raft log and snapshot go too (it catches up from the others).
    for raft_file in [crate::raft::log_store::LOG_FILE, crate::raft::state_machine::SNAPSHOT_FILE] {
        match std::fs::remove_file(meta_dir.join(raft_file)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(MetaError { retryable: false, errno: cistern_rpc::Errno::Io, message: format!("{}: cannot remove it: {e}", meta_dir.join(raft_file).display()) })
            }
            _ => {}
        }
    }
    Ok(true)
}

pub(crate) fn decode_u32(v: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(v.try_into().ok()?))
}
pub(crate) fn decode_u64(v: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(v.try_into().ok()?))
}

/// The stored record of an inode: kind, mount, parent, size, mtime, name, etag, and for
/// directories their UFS path (a file's is its directory's plus its name, so it is not stored).
pub(crate) fn encode(n: &Inode) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + n.name.len() + n.etag.as_ref().map_or(0, String::len));
    out.push(match n.kind {
        Kind::File => 0,
        Kind::Dir => 1,
    });
    out.extend_from_slice(&n.mount.map_or(u16::MAX, |m| m as u16).to_le_bytes());
    put_varint(&mut out, n.parent);
    put_varint(&mut out, n.size);
    put_varint(&mut out, n.mtime.0.max(0) as u64);
    put_varint(&mut out, n.mtime.1 as u64);
    put_str(&mut out, &n.name);
    match &n.etag {
        None => out.push(0),
        Some(e) => {
            out.push(1);
            put_str(&mut out, e);
        }
    }
    if n.kind == Kind::Dir {
        put_str(&mut out, &n.ufs_path);
    }
    out
}

/// The inverse of [`encode`]; a file's `ufs_path` is left empty for the caller to fill.
pub(crate) fn decode(ino: Ino, mut b: &[u8]) -> Option<Inode> {
    let kind = match take(&mut b, 1)?[0] {
        0 => Kind::File,
        1 => Kind::Dir,
        _ => return None,
    };
    let mount = u16::from_le_bytes(take(&mut b, 2)?.try_into().ok()?);
    let parent = get_varint(&mut b)?;
    let size = get_varint(&mut b)?;
    let secs = get_varint(&mut b)? as i64;
    let nanos = get_varint(&mut b)? as u32;
    let name = get_str(&mut b)?;
    let etag = match take(&mut b, 1)?[0] {
        0 => None,
        _ => Some(get_str(&mut b)?),
    };
    let ufs_path = if kind == Kind::Dir { get_str(&mut b)? } else { String::new() };
    Some(Inode {
        ino,
        parent,
        name,
        kind,
        size,
        mtime: (secs, nanos),
        etag,
        mount: (mount != u16::MAX).then_some(mount as usize),
        ufs_path,
                    file_ref: None,
    })
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = take(b, 1)?[0];
        v |= ((byte & 0x7f) as u64) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn get_str(b: &mut &[u8]) -> Option<String> {
    let len = get_varint(b)? as usize;
    String::from_utf8(take(b, len)?.to_vec()).ok()
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Some(head)
}

mod libc_errno {
    pub const EPERM: i32 = 1;
    pub const EACCES: i32 = 13;
    pub const EROFS: i32 = 30;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let file = Inode {
            ino: 42,
            parent: 7,
            name: "données.bin".into(),
            kind: Kind::File,
            size: 1 << 40,
            mtime: (1_700_000_000, 123_456_789),
            etag: Some("\"abc\"".into()),
            mount: Some(3),
                    file_ref: None,
            ufs_path: String::new(),
        };
        assert_eq!(decode(42, &encode(&file)), Some(file.clone()));
        let dir = Inode { kind: Kind::Dir, etag: None, mount: None, ufs_path: "a/b".into(), ..file };
        assert_eq!(decode(42, &encode(&dir)), Some(dir.clone()));
        assert_eq!(decode(42, &encode(&dir)[..5]), None, "a truncated record is refused");
    }

    #[test]
    fn a_newer_format_is_refused_and_format_wipes() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()).unwrap());
        {
            let db = Database::create(dir.path().join(STORE_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META).unwrap().insert("format", 99u32.to_le_bytes().as_slice()).unwrap();
            txn.commit().unwrap();
        }
        let err = open(dir.path()).err().unwrap().message;
        assert!(err.contains("newer cistern") && err.contains("format 99") && err.contains("cistern format --meta-dir"), "{err}");
        assert!(format(dir.path()).unwrap());
        assert!(open(dir.path()).is_ok());
    }

    #[test]
    fn a_damaged_store_says_how_to_recover() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STORE_FILE), vec![0x5a; 64 * 1024]).unwrap();
        let err = open(dir.path()).err().unwrap().message;
        assert!(err.contains("damaged") && err.contains("cistern format --meta-dir"), "{err}");
    }

    #[test]
    fn a_store_in_use_is_refused_by_a_second_opener_and_by_format() {
        let dir = tempfile::tempdir().unwrap();
        let _db = open(dir.path()).unwrap();
        assert!(open(dir.path()).err().unwrap().message.contains("already open"));
        assert!(format(dir.path()).err().unwrap().message.contains("already open"));
    }
}
