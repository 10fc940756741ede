//! A snapshot of the namespace: its four tables dumped in one read transaction, in a compact
//! binary form, and restored in one write transaction. What a master whose store was wiped, or
//! a new member, starts from; and what lets the log be compacted.
//!
//! Layout: `CSNAP1\n`, then the `meta` rows (key, value), the `inodes` rows (inode, record),
//! the `dentries` rows (parent, name, inode) and the `listed` rows (inode, Unix seconds), each
//! section a row count then the rows; integers little-endian, strings and bytes u32-length
//! prefixed. Reading checks every length against what is left: a damaged or hostile snapshot
//! is refused whole, never half-restored.

use crate::listing::db_err;
use crate::store::{DENTRIES, INODES, LISTED, META};
use crate::MetaError;
use redb::{ReadableTable, ReadTransaction, WriteTransaction};

const MAGIC: &[u8] = b"CSNAP1\n";
/// Meta rows that describe this master rather than the namespace: never sent, never replaced.
/// (The mount table is the quorum's: it travels with the namespace it describes.)
pub(crate) const LOCAL_META: [&str; 4] = ["format", "summary", super::state_machine::APPLIED, super::state_machine::MEMBERSHIP];

/// The namespace as one byte string.
pub(crate) fn dump(txn: &ReadTransaction) -> Result<Vec<u8>, MetaError> {
    let mut out = MAGIC.to_vec();
    let meta = txn.open_table(META).map_err(db_err)?;
    let rows: Vec<_> = meta.iter().map_err(db_err)?.collect::<Result<_, _>>().map_err(db_err)?;
    let rows: Vec<_> = rows.iter().filter(|(k, _)| !LOCAL_META.contains(&k.value())).collect();
    put_u64(&mut out, rows.len() as u64);
    for (k, v) in rows {
        put_bytes(&mut out, k.value().as_bytes());
        put_bytes(&mut out, v.value());
    }
    let inodes = txn.open_table(INODES).map_err(db_err)?;
    let rows: Vec<_> = inodes.iter().map_err(db_err)?.collect::<Result<_, _>>().map_err(db_err)?;
    put_u64(&mut out, rows.len() as u64);
    for (k, v) in rows {
        put_u64(&mut out, k.value());
        put_bytes(&mut out, v.value());
    }
    let dentries = txn.open_table(DENTRIES).map_err(db_err)?;
    let rows: Vec<_> = dentries.iter().map_err(db_err)?.collect::<Result<_, _>>().map_err(db_err)?;
    put_u64(&mut out, rows.len() as u64);
    for (k, v) in rows {
        let (parent, name) = k.value();
        put_u64(&mut out, parent);
        put_bytes(&mut out, name.as_bytes());
        put_u64(&mut out, v.value());
    }
    let listed = txn.open_table(LISTED).map_err(db_err)?;
    let rows: Vec<_> = listed.iter().map_err(db_err)?.collect::<Result<_, _>>().map_err(db_err)?;
    put_u64(&mut out, rows.len() as u64);
    for (k, v) in rows {
        put_u64(&mut out, k.value());
        put_u64(&mut out, v.value());
    }
    Ok(out)
}

/// The applied log index and the SHA-256 (hex) of the namespace at that index.
pub(crate) fn digest(db: &redb::Database) -> Result<(u64, String), MetaError> {
    use redb::ReadableDatabase;
    let txn = db.begin_read().map_err(db_err)?;
    let applied = {
        let meta = txn.open_table(META).map_err(db_err)?;
        let v = meta.get(super::state_machine::APPLIED).map_err(db_err)?;
        v.and_then(|v| serde_json::from_slice::<Option<openraft::LogId<u64>>>(v.value()).ok()).flatten().map_or(0, |l| l.index)
    };
    let body = dump(&txn)?;
    let hash = ring::digest::digest(&ring::digest::SHA256, &body);
    Ok((applied, hash.as_ref().iter().map(|b| format!("{b:02x}")).collect()))
}

/// A snapshot read back, checked whole before anything is written.
pub(crate) struct Parsed<'a> {
    meta: Vec<(&'a str, &'a [u8])>,
    inodes: Vec<(u64, &'a [u8])>,
    dentries: Vec<(u64, &'a str, u64)>,
    listed: Vec<(u64, u64)>,
}

pub(crate) fn parse(mut b: &[u8]) -> Result<Parsed<'_>, MetaError> {
    let bad = |what: &str| MetaError { retryable: false, errno: cistern_rpc::Errno::Io, message: format!("namespace snapshot: {what}") };
    if take(&mut b, MAGIC.len()) != Some(MAGIC) {
        return Err(bad("not a cistern snapshot (no CSNAP1 header)"));
    }
    let short = || bad("truncated or damaged");
    fn text(v: &[u8]) -> Result<&str, MetaError> {
        std::str::from_utf8(v).map_err(|_| MetaError { retryable: false, errno: cistern_rpc::Errno::Io, message: "namespace snapshot: a name is not UTF-8".into() })
    }
    let mut p = Parsed { meta: Vec::new(), inodes: Vec::new(), dentries: Vec::new(), listed: Vec::new() };
    for _ in 0..count(&mut b).ok_or_else(short)? {
        let k = text(get_bytes(&mut b).ok_or_else(short)?)?;
        p.meta.push((k, get_bytes(&mut b).ok_or_else(short)?));
    }
    for _ in 0..count(&mut b).ok_or_else(short)? {
        p.inodes.push((get_u64(&mut b).ok_or_else(short)?, get_bytes(&mut b).ok_or_else(short)?));
    }
    for _ in 0..count(&mut b).ok_or_else(short)? {
        let parent = get_u64(&mut b).ok_or_else(short)?;
        let name = text(get_bytes(&mut b).ok_or_else(short)?)?;
        p.dentries.push((parent, name, get_u64(&mut b).ok_or_else(short)?));
    }
    for _ in 0..count(&mut b).ok_or_else(short)? {
        p.listed.push((get_u64(&mut b).ok_or_else(short)?, get_u64(&mut b).ok_or_else(short)?));
    }
    if !b.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(p)
}

/// Replaces the namespace with `p` inside `txn` (this master's own meta rows stay).
pub(crate) fn restore(txn: &WriteTransaction, p: &Parsed<'_>) -> Result<(), MetaError> {
    txn.delete_table(INODES).map_err(db_err)?;
    txn.delete_table(DENTRIES).map_err(db_err)?;
    txn.delete_table(LISTED).map_err(db_err)?;
    let mut meta = txn.open_table(META).map_err(db_err)?;
    let stale: Vec<String> = meta
        .iter()
        .map_err(db_err)?
        .filter_map(|r| r.ok())
        .map(|(k, _)| k.value().to_string())
        .filter(|k| !LOCAL_META.contains(&k.as_str()))
        .collect();
    for k in stale {
        meta.remove(k.as_str()).map_err(db_err)?;
    }
    for (k, v) in &p.meta {
        if !LOCAL_META.contains(k) {
            meta.insert(*k, *v).map_err(db_err)?;
        }
    }
    let mut inodes = txn.open_table(INODES).map_err(db_err)?;
    for (k, v) in &p.inodes {
        inodes.insert(*k, *v).map_err(db_err)?;
    }
    let mut dentries = txn.open_table(DENTRIES).map_err(db_err)?;
    for (parent, name, ino) in &p.dentries {
        dentries.insert((*parent, *name), *ino).map_err(db_err)?;
    }
    let mut listed = txn.open_table(LISTED).map_err(db_err)?;
    for (k, v) in &p.listed {
        listed.insert(*k, *v).map_err(db_err)?;
    }
    Ok(())
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, v: &[u8]) {
    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    out.extend_from_slice(v);
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Some(head)
}

fn get_u64(b: &mut &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(take(b, 8)?.try_into().ok()?))
}

fn get_bytes<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_le_bytes(take(b, 4)?.try_into().ok()?) as usize;
    take(b, len)
}

/// A row count, refused when the rest could not hold that many rows (a hostile count would
/// otherwise size a vector).
fn count(b: &mut &[u8]) -> Option<u64> {
    let n = get_u64(b)?;
    (n <= b.len() as u64).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_or_altered_snapshot_is_refused_whole() {
        let mut s = MAGIC.to_vec();
        put_u64(&mut s, 1);
        put_bytes(&mut s, b"next_ino");
        put_bytes(&mut s, &7u64.to_le_bytes());
        for _ in 0..3 {
            put_u64(&mut s, 0);
        }
        assert!(parse(&s).is_ok());
        for cut in 0..s.len() {
            assert!(parse(&s[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = MAGIC.to_vec();
        put_u64(&mut huge, u64::MAX);
        assert!(parse(&huge).is_err());
        let mut trailing = s.clone();
        trailing.push(0);
        assert!(parse(&trailing).is_err());
    }
}
