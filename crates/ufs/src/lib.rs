//! Under-storage access through Apache OpenDAL.
//!
//! [`Ufs`] is one mount of a Dataset: it lists, stats and reads ranges, whatever the scheme.
//! Behaviour that applies to every scheme (timeouts, retries, byte counting) wraps the operator
//! rather than living in a service. Tests run it against OpenDAL's in-memory service
//! ([`Ufs::from_operator`]) or a real S3 server on 127.0.0.1.
//!
//! Paths given to [`Ufs`] are relative to the mount's root, `/`-separated, without a leading
//! slash; directories are named without a trailing slash (the empty string is the root).

mod config;

use bytes::Bytes;
use cistern_api::{MountPlan, SecretValue};
use futures::TryStreamExt;
use opendal::{ErrorKind, Operator};
/// A body as the pieces it arrived in (OpenDAL's buffer: cheap to clone and slice).
pub use opendal::Buffer;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Installs the process-wide TLS provider (ring, the one kube uses: one provider per process)
/// and OpenDAL's HTTP transport on top of it. Idempotent.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    opendal_http_transport_reqwest::install_default();
}

/// A UFS failure. Its message never contains a secret value (see [`UfsError::scrub`]).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct UfsError {
    pub kind: UfsErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UfsErrorKind {
    NotFound,
    PermissionDenied,
    Config,
    Unavailable,
    /// The object is not the version the read was conditional on: it changed on the UFS.
    Changed,
}

impl UfsError {
    fn config(m: &MountPlan, message: String) -> UfsError {
        UfsError { kind: UfsErrorKind::Config, message: format!("{}.{message}", m.field) }
    }

    /// The errno a file system should answer with.
    pub fn errno(&self) -> cistern_rpc::Errno {
        use cistern_rpc::Errno;
        match self.kind {
            UfsErrorKind::NotFound => Errno::NotFound,
            UfsErrorKind::PermissionDenied => Errno::PermissionDenied,
            UfsErrorKind::Config | UfsErrorKind::Unavailable => Errno::Io,
            UfsErrorKind::Changed => Errno::Stale,
        }
    }
}

/// Which version of an object a read is for: what the master listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectVersion {
    pub size: u64,
    pub etag: Option<String>,
    /// Seconds and nanoseconds since the epoch, when the service reports it.
    pub mtime: Option<(i64, u32)>,
}

/// A directory entry or a stat result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UfsEntry {
    /// Last path component (empty for the root).
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    pub mtime: Option<SystemTime>,
    pub etag: Option<String>,
}

/// Bytes and requests that went to the UFS, for hit ratios and for tests that count fetches.
#[derive(Debug, Default)]
pub struct UfsCounters {
    pub read_bytes: AtomicU64,
    pub read_requests: AtomicU64,
    pub list_requests: AtomicU64,
}

/// One mount of a Dataset.
#[derive(Clone)]
pub struct Ufs {
    op: Operator,
    single_file: Option<String>,
    /// The mount point as written (has no secrets), for messages.
    pub display: String,
    secrets: Vec<SecretValue>,
    pub counters: Arc<UfsCounters>,
    /// Set for a UFS that could not even be set up: every call fails with this reason.
    down: Option<String>,
    /// For `local://`: the resolved root. OpenDAL's fs service follows symbolic links, so a
    /// link to a file outside the root would let every reader of the mount (`allow_other`)
    /// read what they could not read directly: each path is resolved and must stay beneath.
    local_root: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Ufs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ufs").field("mount_point", &self.display).finish()
    }
}

impl Ufs {
    pub fn from_mount(m: &MountPlan) -> Result<Ufs, UfsError> {
        install_tls_provider();
        let built = config::build(m).map_err(|e| scrub_with(e, &m.secrets.values().cloned().collect::<Vec<_>>()))?;
        Ok(Ufs {
            op: built.op,
            single_file: built.single_file,
            display: m.mount_point.clone(),
            secrets: m.secrets.values().cloned().collect(),
            counters: Arc::default(),
            down: None,
            local_root: built.local_root,
        })
    }

    pub fn from_operator(op: Operator, display: &str) -> Ufs {
        Ufs { op, single_file: None, display: display.to_string(), secrets: vec![], counters: Arc::default(), down: None, local_root: None }
    }

    /// For `local://`, refuses a path that resolves (through symbolic links) outside the
    /// root, as not found: the link is not part of the Dataset.
    async fn check_beneath(&self, path: &str) -> Result<(), UfsError> {
        let Some(root) = &self.local_root else { return Ok(()) };
        let resolved = match tokio::fs::canonicalize(root.join(path.trim_start_matches('/'))).await {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()), // OpenDAL says so
            Err(e) => return Err(UfsError { kind: UfsErrorKind::Unavailable, message: format!("{}/{path}: {e}", self.display.trim_end_matches('/')) }),
        };
        if resolved.starts_with(root) {
            Ok(())
        } else {
            tracing::warn!(path, "a symbolic link leads out of the mount's root; not served");
            Err(UfsError { kind: UfsErrorKind::NotFound, message: format!("{}/{path}: a symbolic link out of the mount's root (not served)", self.display.trim_end_matches('/')) })
        }
    }

    /// A UFS that cannot be set up now (say, a local root that is gone), for a master that
    /// serves its stored namespace and cache meanwhile: every call fails with `reason`.
    pub fn unavailable(display: &str, reason: &str) -> Ufs {
        let op = Operator::new(opendal::services::Memory::default()).expect("a memory operator");
        Ufs { down: Some(reason.to_string()), ..Ufs::from_operator(op, display) }
    }

    fn check_up(&self) -> Result<(), UfsError> {
        match &self.down {
            Some(reason) => Err(UfsError { kind: UfsErrorKind::Unavailable, message: reason.clone() }),
            None => Ok(()),
        }
    }

    /// Checks that the UFS answers, within `timeout`; the error says what to fix.
    pub async fn probe(&self, timeout: Duration) -> Result<UfsEntry, UfsError> {
        let check = async {
            let root = self.stat("").await?;
            // A stat of an object store's root needs no request; one page of a listing does, and
            // so it tests the endpoint, the bucket and the credentials.
            if self.single_file.is_none() {
                let mut lister = self.op.lister_with("/").limit(1).await.map_err(|e| self.error(e, ""))?;
                lister.try_next().await.map_err(|e| self.error(e, ""))?;
            }
            Ok::<UfsEntry, UfsError>(root)
        };
        match tokio::time::timeout(timeout, check).await {
            Ok(Ok(e)) => Ok(e),
            Ok(Err(e)) => Err(UfsError { message: format!("cannot reach {}: {}", self.display, e.message), ..e }),
            Err(_) => Err(UfsError {
                kind: UfsErrorKind::Unavailable,
                message: format!("cannot reach {}: no answer within {}s; check the endpoint option", self.display, timeout.as_secs()),
            }),
        }
    }

    pub async fn stat(&self, path: &str) -> Result<UfsEntry, UfsError> {
        self.check_up()?;
        if path.is_empty() && self.single_file.is_none() {
            let meta = self.op.stat("/").await.map_err(|e| self.error(e, ""))?;
            if !meta.is_dir() {
                return Err(UfsError { kind: UfsErrorKind::Config, message: format!("{} is not a directory", self.display) });
            }
            return Ok(UfsEntry { name: String::new(), is_dir: true, size: 0, mtime: meta.last_modified().map(Into::into), etag: None });
        }
        if path.is_empty() {
            let file = self.single_file.clone().unwrap_or_default();
            self.op.stat(&file).await.map_err(|e| self.error(e, &file))?;
            return Ok(UfsEntry { name: String::new(), is_dir: true, size: 0, mtime: None, etag: None });
        }
        self.check_beneath(path).await?;
        let meta = match self.op.stat(path).await {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => self.op.stat(&format!("{path}/")).await.map_err(|e| self.error(e, path))?,
            Err(e) => return Err(self.error(e, path)),
        };
        Ok(to_entry(path, &meta))
    }

    /// The entries of a directory (not recursive), in no particular order.
    pub async fn list(&self, dir: &str) -> Result<Vec<UfsEntry>, UfsError> {
        self.check_up()?;
        if let Some(file) = &self.single_file {
            return if dir.is_empty() { Ok(vec![self.stat(file).await?]) } else { Ok(vec![]) };
        }
        self.counters.list_requests.fetch_add(1, Ordering::Relaxed);
        if let Some(root) = &self.local_root {
            return self.list_local(root.clone(), dir).await;
        }
        let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        let list_path = if dir.is_empty() { "/".to_string() } else { prefix.clone() };
        let mut lister = self.op.lister(&list_path).await.map_err(|e| self.error(e, dir))?;
        let mut out = Vec::new();
        while let Some(entry) = lister.try_next().await.map_err(|e| self.error(e, dir))? {
            let rel = entry.path().trim_start_matches('/');
            let rel = rel.strip_prefix(prefix.as_str()).unwrap_or(rel).trim_end_matches('/');
            if rel.is_empty() || rel.contains('/') {
                continue; // the directory itself, or a deeper key some services return
            }
            let meta = entry.metadata();
            let mut e = to_entry(rel, meta);
            if !meta.is_dir() && (meta.last_modified().is_none() || !meta.is_file()) {
                // Some listings (local fs) carry no mtime; symlinks come back of unknown mode.
                e = self.stat(&format!("{prefix}{rel}")).await?;
            }
            out.push(e);
        }
        Ok(out)
    }

    /// A `local://` directory, read with the file system's own calls on the blocking pool
    /// (OpenDAL's fs lister follows links to directories, and asserts on them in debug
    /// builds): entries whose links lead out of `root` or dangle are left out.
    async fn list_local(&self, root: std::path::PathBuf, dir: &str) -> Result<Vec<UfsEntry>, UfsError> {
        let display = self.display.trim_end_matches('/').to_string();
        let dir = dir.to_string();
        let fail = move |path: &str, e: std::io::Error| {
            let kind = match e.kind() {
                std::io::ErrorKind::NotFound => UfsErrorKind::NotFound,
                std::io::ErrorKind::PermissionDenied => UfsErrorKind::PermissionDenied,
                _ => UfsErrorKind::Unavailable,
            };
            UfsError { kind, message: format!("{display}/{path}: {e}") }
        };
        tokio::task::spawn_blocking(move || {
            let path = root.join(&dir);
            let resolved = std::fs::canonicalize(&path).map_err(|e| fail(&dir, e))?;
            if !resolved.starts_with(&root) {
                return Err(fail(&dir, std::io::Error::from(std::io::ErrorKind::NotFound)));
            }
            let mut out = Vec::new();
            for entry in std::fs::read_dir(&resolved).map_err(|e| fail(&dir, e))? {
                let entry = entry.map_err(|e| fail(&dir, e))?;
                let Ok(name) = entry.file_name().into_string() else { continue };
                let child = resolved.join(&name);
                let link = entry.file_type().map_err(|e| fail(&dir, e))?.is_symlink();
                if link && !std::fs::canonicalize(&child).is_ok_and(|t| t.starts_with(&root)) {
                    tracing::warn!(path = %child.display(), "a symbolic link leads out of the mount's root (or nowhere); not served");
                    continue;
                }
                let Ok(meta) = std::fs::metadata(&child) else { continue }; // gone meanwhile
                if !meta.is_dir() && !meta.is_file() {
                    continue; // sockets, devices, FIFOs are no data
                }
                out.push(UfsEntry {
                    name,
                    is_dir: meta.is_dir(),
                    size: if meta.is_dir() { 0 } else { meta.len() },
                    mtime: meta.modified().ok(),
                    etag: None,
                });
            }
            Ok(out)
        })
        .await
        .map_err(|e| UfsError { kind: UfsErrorKind::Unavailable, message: format!("listing: {e}") })?
    }

    /// Reads `len` bytes at `offset` (fewer at the end of the file).
    pub async fn read(&self, path: &str, offset: u64, len: u64) -> Result<Bytes, UfsError> {
        self.check_up()?;
        self.check_beneath(path).await?;
        self.counters.read_requests.fetch_add(1, Ordering::Relaxed);
        let buf = self.op.read_with(path).range(offset..offset.saturating_add(len)).await.map_err(|e| self.error(e, path))?;
        let bytes = buf.to_bytes();
        self.counters.read_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes)
    }

    /// Reads `len` bytes at `offset` of the version of `path` that has `etag` (and `mtime`
    /// and `size`): conditional on the ETag where the service supports it (S3, OSS, HTTP:
    /// `If-Match`), else checked by a stat around the read where the service reports
    /// modification times (local files). A changed object is [`UfsErrorKind::Changed`], so a
    /// cache never stores a mix of two versions under one key.
    pub async fn read_version(&self, path: &str, offset: u64, len: u64, v: &ObjectVersion) -> Result<Bytes, UfsError> {
        Ok(self.read_version_pieces(path, offset, len, v).await?.to_bytes())
    }

    /// [`Ufs::read_version`], the body kept as the pieces it arrived in, so a cache writes
    /// them where they go (one `pwritev`) instead of joining them into one buffer first.
    pub async fn read_version_pieces(&self, path: &str, offset: u64, len: u64, v: &ObjectVersion) -> Result<Buffer, UfsError> {
        self.check_up()?;
        let by_etag = v.etag.as_deref().filter(|_| self.op.info().capability().read_with_if_match);
        if by_etag.is_none() && v.mtime.is_some() {
            self.check_version(path, v).await?;
        }
        self.check_beneath(path).await?;
        self.counters.read_requests.fetch_add(1, Ordering::Relaxed);
        let mut read = self.op.read_with(path).range(offset..offset.saturating_add(len));
        if let Some(etag) = by_etag {
            read = read.if_match(etag);
        }
        let buf = match read.await {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::ConditionNotMatch => return Err(self.changed(path)),
            Err(e) => return Err(self.error(e, path)),
        };
        if by_etag.is_none() && v.mtime.is_some() {
            self.check_version(path, v).await?;
        }
        self.counters.read_bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(buf)
    }

    /// Fails with [`UfsErrorKind::Changed`] unless `path` still has `v`'s size and mtime.
    async fn check_version(&self, path: &str, v: &ObjectVersion) -> Result<(), UfsError> {
        // The same source as the listing's times, so their precision matches: the file
        // system itself for local://, the service's stat otherwise.
        let (size, mtime) = match &self.local_root {
            Some(root) => {
                let m = tokio::fs::metadata(root.join(path.trim_start_matches('/'))).await.map_err(|e| UfsError {
                    kind: if e.kind() == std::io::ErrorKind::NotFound { UfsErrorKind::NotFound } else { UfsErrorKind::Unavailable },
                    message: format!("{}/{path}: {e}", self.display.trim_end_matches('/')),
                })?;
                (m.len(), m.modified().ok())
            }
            None => {
                let meta = self.op.stat(path).await.map_err(|e| self.error(e, path))?;
                (meta.content_length(), meta.last_modified().map(std::time::SystemTime::from))
            }
        };
        let same_time = match (v.mtime, mtime.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())) {
            (Some((s, n)), Some(d)) => d.as_secs() as i64 == s && d.subsec_nanos() == n,
            _ => true, // the service reports no time: the size is all there is
        };
        if size != v.size || !same_time {
            return Err(self.changed(path));
        }
        Ok(())
    }

    fn changed(&self, path: &str) -> UfsError {
        UfsError { kind: UfsErrorKind::Changed, message: format!("{}/{path}: changed on the UFS since it was listed", self.display.trim_end_matches('/')) }
    }

    /// The operator, for callers that write (tests filling a bucket, the bench harness).
    pub fn operator(&self) -> &Operator {
        &self.op
    }

    fn error(&self, e: opendal::Error, path: &str) -> UfsError {
        let kind = match e.kind() {
            ErrorKind::NotFound => UfsErrorKind::NotFound,
            ErrorKind::PermissionDenied => UfsErrorKind::PermissionDenied,
            _ => UfsErrorKind::Unavailable,
        };
        let what = match kind {
            UfsErrorKind::PermissionDenied => "permission denied; check the access key options".to_string(),
            UfsErrorKind::NotFound => "not found".to_string(),
            _ => e.to_string(),
        };
        scrub_with(UfsError { kind, message: format!("{}/{path}: {what}", self.display.trim_end_matches('/')) }, &self.secrets)
    }
}

/// Replaces any secret value that slipped into an error message.
fn scrub_with(mut e: UfsError, secrets: &[SecretValue]) -> UfsError {
    for s in secrets {
        if !s.expose().is_empty() {
            e.message = e.message.replace(s.expose(), "<redacted>");
        }
    }
    e
}

fn to_entry(path: &str, meta: &opendal::Metadata) -> UfsEntry {
    let name = path.trim_end_matches('/').rsplit('/').next().unwrap_or_default().to_string();
    UfsEntry {
        name,
        is_dir: meta.is_dir(),
        size: if meta.is_dir() { 0 } else { meta.content_length() },
        mtime: meta.last_modified().map(Into::into),
        etag: meta.etag().map(str::to_string),
    }
}
