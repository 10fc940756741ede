//! A Dataset's credentials directory: what its components prove themselves with and check each
//! other by. `cistern up` keeps it in `<run-dir>/credentials` (0700); on Kubernetes it is the
//! Dataset's Secret mounted into the master and worker pods (see the README's security
//! section).
//!
//! It holds:
//! - `ref.key`, the key the master signs file references with and workers verify them by
//!   (`cistern_rpc::fileref`). Clients (the FUSE daemon, loaders) never get it;
//! - the Dataset's CA (`ca.pem`, `ca.key`) and one certificate and key per role
//!   (`master.pem`/`.key`, `worker.pem`/`.key`, `client.pem`/`.key`) for mutual TLS on TCP
//!   (`cistern_rpc::tls`). Each component installs its own role's; the CA key stays with
//!   whoever issues (`cistern up`, the master, the operator).

use anyhow::{bail, Context, Result};
use cistern_rpc::fileref::REF_KEY_LEN;
use cistern_rpc::RefKey;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const REF_KEY_FILE: &str = "ref.key";

/// Where a component finds the credentials when not told: `<run-dir>/credentials`.
pub fn default_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("credentials")
}

/// The credentials directory argument every server component takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CredentialsArgs {
    /// The Dataset's credentials (ref.key) [default: <run-dir>/credentials].
    #[arg(long = "credentials", env = "CISTERN_CREDENTIALS")]
    pub dir: Option<PathBuf>,
}

impl CredentialsArgs {
    pub fn dir(&self, run_dir: &Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| default_dir(run_dir))
    }
}

/// The reference key in `dir`, made (with the directory, 0700, and the file, 0600) when there
/// is none yet: what the master and `cistern up` do for a new Dataset.
pub fn ensure_ref_key(dir: &Path) -> Result<RefKey> {
    let path = dir.join(REF_KEY_FILE);
    if !path.exists() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        // create_new: of two processes making it at once, one writes and both read its key.
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
            Ok(mut f) => {
                f.write_all(&RefKey::generate_bytes())?;
                f.sync_all()?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
    }
    load_ref_key(dir)
}

/// The Dataset's CA and every role's certificate in `dir`, made when there is no CA yet (each
/// file 0600, written whole before it is renamed into place).
pub fn ensure_tls(dir: &Path) -> Result<()> {
    use cistern_rpc::tls::{files, Authority, Role};
    let ca_pem = dir.join("ca.pem");
    if ca_pem.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ca = Authority::generate().map_err(|e| anyhow::anyhow!("cannot make the Dataset's CA: {e}"))?;
    for role in Role::ALL {
        let (_, cert, key) = files(dir, role);
        let (cert_pem, key_pem) = ca.issue(&[role]).map_err(|e| anyhow::anyhow!("cannot issue the {} certificate: {e}", role.name()))?;
        write_private(&key, key_pem.as_bytes())?;
        write_private(&cert, cert_pem.as_bytes())?;
    }
    write_private(&dir.join("ca.key"), ca.key_pem().as_bytes())?;
    // Last: its presence says the set is whole.
    write_private(&ca_pem, ca.cert_pem.as_bytes())
}

/// Installs `role`'s certificate from `dir` for this process's TCP connections and listeners,
/// when the directory has one (without, only Unix sockets work, and a TCP address says so).
pub fn install_tls(dir: &Path, role: cistern_rpc::tls::Role) -> Result<()> {
    if let Some(creds) = cistern_rpc::tls::TlsCredentials::load(dir, role).map_err(|e| anyhow::anyhow!(e))? {
        cistern_rpc::tls::install(creds);
    }
    Ok(())
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// The reference key in `dir`, which must exist: a worker never makes its own.
pub fn load_ref_key(dir: &Path) -> Result<RefKey> {
    let path = dir.join(REF_KEY_FILE);
    let meta = std::fs::symlink_metadata(&path).with_context(|| {
        format!("{}: no reference key; start the Dataset with `cistern up`, or mount the Dataset's credentials Secret there (--credentials DIR)", path.display())
    })?;
    // Kubernetes mounts Secret files as symbolic links into a timestamped directory.
    let meta = if meta.file_type().is_symlink() { std::fs::metadata(&path)? } else { meta };
    if meta.len() != REF_KEY_LEN as u64 {
        bail!("{}: a reference key is {REF_KEY_LEN} bytes, this file has {}; remove it and restart the master to make a new one", path.display(), meta.len());
    }
    if meta.permissions().mode() & 0o077 != 0 && !is_kubernetes_secret(&path) {
        bail!("{}: readable by others (mode {:o}); chmod 600 it", path.display(), meta.permissions().mode() & 0o777);
    }
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    RefKey::from_bytes(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Secret volumes are mounted with `defaultMode` (0644 unless the pod says otherwise) in a
/// directory only the pod sees; the check above is for keys on a shared host.
fn is_kubernetes_secret(path: &Path) -> bool {
    path.parent().is_some_and(|d| d.join("..data").exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_private_and_loaded_by_others() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("run/credentials");
        assert!(load_ref_key(&dir).unwrap_err().to_string().contains("--credentials"));
        let made = ensure_ref_key(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(REF_KEY_FILE)), 0o600);
        let bytes = std::fs::read(dir.join(REF_KEY_FILE)).unwrap();
        ensure_ref_key(&dir).unwrap();
        assert_eq!(std::fs::read(dir.join(REF_KEY_FILE)).unwrap(), bytes, "kept, not replaced");
        let loaded = load_ref_key(&dir).unwrap();
        let r = made.sign(0, "a", 1, b"v");
        assert!(loaded.verify(&r).is_ok());

        std::fs::set_permissions(dir.join(REF_KEY_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_ref_key(&dir).unwrap_err().to_string().contains("chmod 600"));
        std::fs::write(dir.join(REF_KEY_FILE), b"short").unwrap();
        assert!(load_ref_key(&dir).unwrap_err().to_string().contains("32 bytes"));
    }

    #[test]
    fn a_ca_and_one_certificate_per_role_are_made_once() {
        use cistern_rpc::tls::{Role, TlsCredentials};
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("credentials");
        ensure_tls(&dir).unwrap();
        let ca = std::fs::read(dir.join("ca.pem")).unwrap();
        ensure_tls(&dir).unwrap();
        assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), ca, "kept, not replaced");
        for role in Role::ALL {
            assert!(TlsCredentials::load(&dir, role).unwrap().is_some());
        }
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            assert_eq!(e.metadata().unwrap().permissions().mode() & 0o777, 0o600, "{:?}", e.file_name());
        }
    }
}
