//! File references the master issues and workers verify (HDFS block tokens are the model).
//!
//! A worker must never take a cache file name, a size or a UFS path from a request as given:
//! any peer that reaches its port could then write, truncate or delete files as the worker's
//! user, or store one object's bytes under another file's key. So a [`pb::FileRef`] carries a
//! MAC (HMAC-SHA256) made by the master with the Dataset's [`RefKey`], which the master and the
//! workers hold and clients do not. The worker checks it locally (no round trip, and reads go
//! on while the master is away) and derives the cache key itself from the verified fields with
//! a second keyed hash, as a [`CacheKey`]: 64 lowercase hex digits, never a path.
//!
//! A reference does not expire: it grants reading one version of one file the master listed,
//! which any client that may talk to the worker could have asked the master for anyway.

use crate::pb;
use ring::hmac;
use std::fmt;
use std::sync::Arc;

/// Largest read a worker serves in one request (a larger `len` is refused, not clamped: it
/// means a confused or hostile peer). Clients read at most 4 MiB at a time.
pub const MAX_READ_LEN: u64 = 16 << 20;
/// Longest UFS path a reference may carry (Linux's PATH_MAX).
pub const MAX_PATH_LEN: usize = 4096;
/// File references one `Cached` request may carry.
pub const MAX_CACHED_FILES: usize = 1024;
/// Longest content version (the master's is 16 bytes).
pub const MAX_VERSION_LEN: usize = 64;
/// Length of the Dataset's reference key.
pub const REF_KEY_LEN: usize = 32;

/// The Dataset's reference key: the master signs file references with it, workers verify
/// them and derive cache keys. Its bytes never appear in `Debug` output.
#[derive(Clone)]
pub struct RefKey {
    sign: hmac::Key,
    cache: hmac::Key,
}

impl fmt::Debug for RefKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefKey(<redacted>)")
    }
}

/// Why a reference is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error("the file reference is malformed: {0}")]
    Malformed(&'static str),
    #[error("the file reference is not signed by this Dataset's master")]
    Forged,
}

impl RefError {
    /// The errno a client answers: EINVAL for a malformed reference, EACCES for a forged one.
    pub fn errno(&self) -> crate::Errno {
        match self {
            RefError::Malformed(_) => crate::Errno::InvalidArgument,
            RefError::Forged => crate::Errno::PermissionDenied,
        }
    }
}

impl RefKey {
    /// A new random key (the master's, when `cistern up` starts a Dataset).
    pub fn generate() -> RefKey {
        RefKey::from_bytes(&RefKey::generate_bytes()).expect("the length is right")
    }

    /// The key from its stored bytes: exactly [`REF_KEY_LEN`].
    pub fn from_bytes(bytes: &[u8]) -> Result<RefKey, String> {
        if bytes.len() != REF_KEY_LEN {
            return Err(format!("a reference key is {REF_KEY_LEN} bytes, this one {}", bytes.len()));
        }
        // Two keys derived from one, so a MAC is never also a cache key.
        let root = hmac::Key::new(hmac::HMAC_SHA256, bytes);
        let derive = |label: &[u8]| hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&root, label).as_ref());
        Ok(RefKey { sign: derive(b"cistern file reference v1"), cache: derive(b"cistern cache key v1") })
    }

    /// A random key's stored bytes, for a new Dataset.
    pub fn generate_bytes() -> [u8; REF_KEY_LEN] {
        let mut bytes = [0u8; REF_KEY_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("the system's random source works");
        bytes
    }

    /// A signed reference to version `version` of `path` (`size` bytes) in mount `mount`.
    pub fn sign(&self, mount: u32, path: &str, size: u64, version: &[u8]) -> pb::FileRef {
        self.sign_ref(pb::FileRef { mount, path: path.to_string(), size, version: version.to_vec(), ..Default::default() })
    }

    /// `r` with its MAC over every other field.
    pub fn sign_ref(&self, mut r: pb::FileRef) -> pb::FileRef {
        r.mac = hmac::sign(&self.sign, &canonical(&r)).as_ref().to_vec();
        r
    }

    /// Checks `r`'s bounds and signature, and derives its cache key.
    pub fn verify(&self, r: &pb::FileRef) -> Result<VerifiedRef, RefError> {
        if r.path.len() > MAX_PATH_LEN {
            return Err(RefError::Malformed("path longer than 4096 bytes"));
        }
        if r.path.contains('\0') {
            return Err(RefError::Malformed("path holds a NUL byte"));
        }
        if r.version.is_empty() || r.version.len() > MAX_VERSION_LEN {
            return Err(RefError::Malformed("version missing or longer than 64 bytes"));
        }
        if r.mac.is_empty() {
            return Err(RefError::Malformed("no signature"));
        }
        if r.etag.as_ref().is_some_and(|e| e.len() > MAX_VERSION_LEN * 4) {
            return Err(RefError::Malformed("ETag longer than 256 bytes"));
        }
        hmac::verify(&self.sign, &canonical(r), &r.mac).map_err(|_| RefError::Forged)?;
        let digest = hmac::sign(&self.cache, &canonical(&pb::FileRef { mac: Vec::new(), ..r.clone() }));
        let key = CacheKey(Arc::from(hex(&digest.as_ref()[..CacheKey::BYTES])));
        let mtime = (r.mtime_secs != 0 || r.mtime_nanos != 0).then_some((r.mtime_secs, r.mtime_nanos));
        Ok(VerifiedRef { mount: r.mount, path: r.path.clone(), size: r.size, key, etag: r.etag.clone(), mtime })
    }
}

/// What a verified reference grants: the fields the master signed, and the cache key the
/// worker derived from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRef {
    pub mount: u32,
    pub path: String,
    pub size: u64,
    pub key: CacheKey,
    /// What reads are conditional on (see `cistern_ufs::ObjectVersion`).
    pub etag: Option<String>,
    pub mtime: Option<(i64, u32)>,
}

/// The name of a file's cache: [`CacheKey::BYTES`] bytes of a keyed hash, as lowercase hex.
/// Only [`RefKey::verify`] and [`CacheKey::parse`] make one, so it is never a path.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(Arc<str>);

impl CacheKey {
    pub const BYTES: usize = 16;

    /// A key read back from a cache file's name: exactly 32 lowercase hex digits.
    pub fn parse(text: &str) -> Option<CacheKey> {
        (text.len() == 2 * Self::BYTES && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))).then(|| CacheKey(Arc::from(text)))
    }

    /// A key for tests and in-process tools: the hash of `label`, not tied to any reference.
    pub fn for_test(label: &str) -> CacheKey {
        let d = ring::digest::digest(&ring::digest::SHA256, label.as_bytes());
        CacheKey(Arc::from(hex(&d.as_ref()[..Self::BYTES])))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn shared(&self) -> Arc<str> {
        self.0.clone()
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.0)
    }
}

impl std::ops::Deref for CacheKey {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for CacheKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for CacheKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// The signed bytes: a domain tag, then every field with its length, so no two references
/// share an encoding.
fn canonical(r: &pb::FileRef) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + r.path.len());
    out.extend_from_slice(b"cistern.v1.FileRef\0");
    out.extend_from_slice(&r.mount.to_le_bytes());
    out.extend_from_slice(&r.size.to_le_bytes());
    out.extend_from_slice(&(r.version.len() as u64).to_le_bytes());
    out.extend_from_slice(&r.version);
    out.extend_from_slice(&(r.path.len() as u64).to_le_bytes());
    out.extend_from_slice(r.path.as_bytes());
    match &r.etag {
        Some(e) => {
            out.push(1);
            out.extend_from_slice(&(e.len() as u64).to_le_bytes());
            out.extend_from_slice(e.as_bytes());
        }
        None => out.push(0),
    }
    out.extend_from_slice(&r.mtime_secs.to_le_bytes());
    out.extend_from_slice(&r.mtime_nanos.to_le_bytes());
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_reference_verifies_and_any_change_is_refused() {
        let key = RefKey::generate();
        let r = key.sign(1, "a/b.bin", 42, &[7; 16]);
        let v = key.verify(&r).unwrap();
        assert_eq!((v.mount, v.path.as_str(), v.size), (1, "a/b.bin", 42));
        assert!(CacheKey::parse(v.key.as_str()).is_some(), "{v:?}");
        for forged in [
            pb::FileRef { mount: 0, ..r.clone() },
            pb::FileRef { path: "a/c.bin".into(), ..r.clone() },
            pb::FileRef { size: 43, ..r.clone() },
            pb::FileRef { version: vec![8; 16], ..r.clone() },
        ] {
            assert_eq!(key.verify(&forged), Err(RefError::Forged));
        }
        assert_eq!(RefKey::generate().verify(&r), Err(RefError::Forged), "another Dataset's key");
    }

    #[test]
    fn the_cache_key_depends_on_path_and_version_and_never_is_a_path() {
        let key = RefKey::from_bytes(&[3; 32]).unwrap();
        let a = key.verify(&key.sign(0, "../../etc/passwd", 1, b"v1")).unwrap().key;
        let b = key.verify(&key.sign(0, "../../etc/passwd", 1, b"v2")).unwrap().key;
        assert_ne!(a, b);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()) && a.as_str().len() == 32);
        // The same key on another machine derives the same cache key (restarts, re-index).
        assert_eq!(RefKey::from_bytes(&[3; 32]).unwrap().verify(&key.sign(0, "../../etc/passwd", 1, b"v1")).unwrap().key, a);
    }

    #[test]
    fn malformed_references_are_refused_before_any_hashing_of_their_size() {
        let key = RefKey::generate();
        let long = key.sign(0, &"x".repeat(MAX_PATH_LEN + 1), 1, b"v");
        assert!(matches!(key.verify(&long), Err(RefError::Malformed(_))));
        let nul = key.sign(0, "a\0b", 1, b"v");
        assert!(matches!(key.verify(&nul), Err(RefError::Malformed(_))));
        let unsigned = pb::FileRef { mac: vec![], ..key.sign(0, "a", 1, b"v") };
        assert!(matches!(key.verify(&unsigned), Err(RefError::Malformed(_))));
        assert!(CacheKey::parse("../x").is_none() && CacheKey::parse(&"A".repeat(32)).is_none());
        assert!(format!("{key:?}").contains("redacted"));
    }
}
