//! A worker's identity for placement: a random 64-bit id kept in a file of its first persistent
//! cache directory. It names the cache, not the process or the slot: a worker that restarts
//! over the same directory (a hostPath on its node) keeps it, and so keeps the files placement
//! sends it, which are the files it holds; a cache that starts empty gets a new one.

use std::io::{self, Read};
use std::path::Path;

/// The file's name, beside the cache files (which are 32 hex digits and their records).
pub const IDENTITY_FILE: &str = "identity";

/// A new random identity (from the kernel's generator).
pub fn new_identity() -> u64 {
    let mut b = [0u8; 8];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)) {
        Ok(()) => u64::from_le_bytes(b),
        // No /dev/urandom: the process's random hasher keys are still per-process random.
        Err(_) => {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(std::process::id());
            h.finish()
        }
    }
}

/// The identity kept in `dir`, made and written (0600) when there is none. A file that is not
/// 16 hex digits is damage (this directory's files are hostile input) and is replaced.
pub fn load_or_create(dir: &Path) -> io::Result<u64> {
    let path = dir.join(IDENTITY_FILE);
    let mut text = String::new();
    let read = std::fs::File::open(&path).and_then(|f| f.take(64).read_to_string(&mut text));
    match read {
        Ok(_) => {
            let t = text.trim();
            if t.len() == 16 {
                if let Ok(id) = u64::from_str_radix(t, 16) {
                    return Ok(id);
                }
            }
            tracing::warn!(file = %path.display(), "not a worker identity (16 hex digits); making a new one");
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
    let id = new_identity();
    let tmp = dir.join(format!("{IDENTITY_FILE}.tmp"));
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        writeln!(f, "{id:016x}")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_stays_with_its_directory_and_damage_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        assert_eq!(load_or_create(dir.path()).unwrap(), first);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(load_or_create(other.path()).unwrap(), first);
        std::fs::write(dir.path().join(IDENTITY_FILE), "../../etc/passwd\n").unwrap();
        let replaced = load_or_create(dir.path()).unwrap();
        assert_ne!(replaced, first);
        assert_eq!(load_or_create(dir.path()).unwrap(), replaced);
    }
}
