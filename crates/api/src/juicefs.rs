//! A `juicefs://` mount runs on JuiceFS's own engine, as in Fluid (seed 004): the `juicefs`
//! binary formats the volume and mounts it. This module turns the Dataset's mount and the
//! runtime's tiered store into that binary's command lines, for `cistern up` (a local
//! `juicefs`) and for the pods the operator renders.
//!
//! Options, with Fluid's names: `options.storage` and `options.bucket` (the object store),
//! `metaurl`, `access-key`, `secret-key` (usually `encryptOptions`). The volume name is the
//! mount's `name`; the path after `juicefs://` is the sub-directory that is mounted.
//!
//! Secret values never go on a command line (where `ps` shows them): the object store keys go
//! in `ACCESS_KEY` / `SECRET_KEY`, and a password inside the metadata URL in `META_PASSWORD`,
//! the environment variables JuiceFS reads for them.

use crate::plan::{DatasetPlan, MountPlan, Scheme};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The metadata engine when the Dataset names none, in embedded mode: SQLite under the
/// runtime's `namespace.meta-dir`.
pub const EMBEDDED_META_DB: &str = "juicefs.db";

/// What JuiceFS needs to format and mount one Dataset.
#[derive(Clone)]
pub struct JuiceFsVolume {
    /// `spec.mounts[i]`, for errors.
    pub field: String,
    /// The volume's name (`juicefs format META NAME`).
    pub name: String,
    /// The metadata URL without its password.
    pub meta_url: String,
    /// True when the Dataset names no `metaurl` and the SQLite default is used.
    pub meta_defaulted: bool,
    pub storage: Option<String>,
    pub bucket: Option<String>,
    pub subdir: String,
    /// Cache directories (every tier path) and the total cache size in MiB.
    pub cache_dirs: Vec<PathBuf>,
    pub cache_size_mib: u64,
    /// Secret values, passed as environment variables only.
    pub env: Vec<(String, String)>,
}

/// Everything but the secret values of `env`, which print as their names only.
impl std::fmt::Debug for JuiceFsVolume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JuiceFsVolume")
            .field("field", &self.field)
            .field("name", &self.name)
            .field("meta_url", &self.meta_url)
            .field("meta_defaulted", &self.meta_defaulted)
            .field("storage", &self.storage)
            .field("bucket", &self.bucket)
            .field("subdir", &self.subdir)
            .field("cache_dirs", &self.cache_dirs)
            .field("cache_size_mib", &self.cache_size_mib)
            .field("env", &self.env.iter().map(|(k, _)| format!("{k}=<redacted>")).collect::<Vec<_>>())
            .finish()
    }
}

impl JuiceFsVolume {
    /// The JuiceFS volume of a Dataset whose mount is `juicefs://`, or `None` for other
    /// schemes. Without a `metaurl`, `default_meta` (embedded: SQLite in the meta-dir) is
    /// used, or it is an error that names the field.
    pub fn from_plan(plan: &DatasetPlan, default_meta: Option<&Path>) -> Result<Option<JuiceFsVolume>, String> {
        let Some(m) = plan.mounts.iter().find(|m| m.scheme == Scheme::JuiceFs) else {
            return Ok(None);
        };
        if !matches!(plan.runtime, crate::Runtime::JuiceFS(_)) {
            return Err(format!(
                "{}.mountPoint: juicefs:// is served by the JuiceFS engine, which runs for a JuiceFSRuntime; this Dataset has a {}: declare a JuiceFSRuntime of the same name instead",
                m.field, plan.runtime_kind
            ));
        }
        if plan.mounts.len() > 1 {
            return Err(format!("{}: a juicefs:// mount must be the Dataset's only mount (JuiceFS mounts one volume)", m.field));
        }
        let named = m.option(&["metaurl", "meta-url"]);
        let meta_defaulted = named.is_none();
        let meta = match (named, default_meta) {
            (Some(url), _) => url,
            (None, Some(dir)) => format!("sqlite3://{}", dir.join(EMBEDDED_META_DB).display()),
            (None, None) => {
                return Err(format!("{}.encryptOptions: `metaurl` is missing: JuiceFS needs its metadata engine's URL (e.g. redis://host:6379/1), from a Secret", m.field))
            }
        };
        let (meta_url, password) = split_password(&meta);
        let mut env = Vec::new();
        if let Some(p) = password {
            env.push(("META_PASSWORD".to_string(), p));
        }
        for (option, var) in [("access-key", "ACCESS_KEY"), ("secret-key", "SECRET_KEY")] {
            if let Some(v) = m.option(&[option]) {
                env.push((var.to_string(), v));
            }
        }
        let subdir = subdir_of(m)?;
        let cache_dirs = plan.tiers.iter().flat_map(|t| t.paths.iter().map(|p| p.join("juicefs-cache").join(format!("{}-{}", plan.namespace, plan.name)))).collect();
        let cache_size_mib = plan.tiers.iter().map(|t| t.quota()).sum::<u64>() >> 20;
        Ok(Some(JuiceFsVolume {
            field: m.field.clone(),
            name: if m.name.is_empty() { plan.name.clone() } else { m.name.clone() },
            meta_url,
            meta_defaulted,
            storage: m.option(&["storage"]),
            bucket: m.option(&["bucket"]),
            subdir,
            cache_dirs,
            cache_size_mib,
            env,
        }))
    }

    /// `juicefs format` arguments: creates the volume, or checks an existing one.
    pub fn format_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec!["format".into(), "--no-update".into()];
        if let Some(s) = &self.storage {
            a.extend(["--storage".into(), s.into()]);
        }
        if let Some(b) = &self.bucket {
            a.extend(["--bucket".into(), b.into()]);
        }
        a.extend([self.meta_url.clone().into(), self.name.clone().into()]);
        a
    }

    /// `juicefs mount` arguments, in the foreground (the caller supervises the process), with
    /// its Prometheus metrics at `metrics` (`HOST:PORT`).
    pub fn mount_args(&self, mountpoint: &Path, metrics: &str) -> Vec<OsString> {
        let dirs = self.cache_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":");
        let mut a: Vec<OsString> = vec!["mount".into(), "--no-usage-report".into(), "--metrics".into(), metrics.into()];
        if self.subdir != "/" {
            a.extend(["--subdir".into(), self.subdir.clone().into()]);
        }
        if !dirs.is_empty() {
            a.extend(["--cache-dir".into(), dirs.into(), "--cache-size".into(), self.cache_size_mib.to_string().into()]);
        }
        a.extend([self.meta_url.clone().into(), mountpoint.as_os_str().to_owned()]);
        a
    }
}

/// `juicefs:///demo` → `/demo`.
fn subdir_of(m: &MountPlan) -> Result<String, String> {
    let rest = m.mount_point.strip_prefix("juicefs://").unwrap_or_default();
    if !rest.is_empty() && !rest.starts_with('/') {
        return Err(format!(
            "{}.mountPoint: `{}`: the part after juicefs:// is a path in the volume, written juicefs:///dir (three slashes)",
            m.field, m.mount_point
        ));
    }
    Ok(if rest.is_empty() { "/".into() } else { rest.to_string() })
}

/// `redis://user:secret@host/1` → (`redis://user@host/1`, `secret`). The password may hold
/// `/`, `@` and `:` (users paste them unescaped): the user information ends at the last `@`
/// before the host, and the password starts at its first `:`.
pub(crate) fn split_password(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else { return (url.to_string(), None) };
    if rest.starts_with('/') {
        return (url.to_string(), None); // no authority (sqlite3:///path)
    }
    let Some((userinfo, after)) = rest.rsplit_once('@') else { return (url.to_string(), None) };
    let (host, path) = match after.find('/') {
        Some(i) => after.split_at(i),
        None => (after, ""),
    };
    match userinfo.split_once(':') {
        Some(("", password)) if !password.is_empty() => (format!("{scheme}://{host}{path}"), Some(password.to_string())),
        Some((user, password)) if !password.is_empty() => (format!("{scheme}://{user}@{host}{path}"), Some(password.to_string())),
        _ => (url.to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Manifest;

    fn plan(mount: &str) -> DatasetPlan {
        let yaml = format!(
            "apiVersion: data.fluid.io/v1alpha1\nkind: Dataset\nmetadata: {{name: jfs}}\nspec:\n  mounts:\n  - name: vol\n    mountPoint: {mount}\n    options: {{bucket: /srv/bucket, storage: file}}\n    encryptOptions:\n    - name: metaurl\n      valueFrom: {{secretKeyRef: {{name: jfs-secret, key: metaurl}}}}\n    - name: access-key\n      valueFrom: {{secretKeyRef: {{name: jfs-secret, key: ak}}}}\n---\napiVersion: data.fluid.io/v1alpha1\nkind: JuiceFSRuntime\nmetadata: {{name: jfs}}\nspec:\n  tieredstore:\n    levels: [{{mediumtype: SSD, path: /var/cache, quota: 2048}}]\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: jfs-secret}}\nstringData: {{metaurl: 'redis://:s3cr3t@127.0.0.1:6379/1', ak: AKID}}\n"
        );
        let mut m = Manifest::default();
        m.add_yaml(&yaml, "test").unwrap();
        m.plan(None).unwrap()
    }

    #[test]
    fn secrets_go_in_the_environment_never_in_arguments() {
        let v = JuiceFsVolume::from_plan(&plan("juicefs:///demo"), None).unwrap().unwrap();
        let args: Vec<String> = v.format_args().into_iter().chain(v.mount_args(Path::new("/mnt/x"), "127.0.0.1:9567")).map(|a| a.into_string().unwrap()).collect();
        assert!(!args.iter().any(|a| a.contains("s3cr3t") || a.contains("AKID")), "{args:?}");
        assert!(args.contains(&"redis://127.0.0.1:6379/1".to_string()), "{args:?}");
        assert!(v.env.contains(&("META_PASSWORD".into(), "s3cr3t".into())) && v.env.contains(&("ACCESS_KEY".into(), "AKID".into())));
        assert!(args.windows(2).any(|w| w == ["--subdir", "/demo"]), "{args:?}");
        // 2048 MiB (JuiceFS quotas are MiB), under the tier's path.
        assert!(args.windows(2).any(|w| w == ["--cache-size", "2048"]), "{args:?}");
        assert!(args.windows(2).any(|w| w[0] == "--cache-dir" && w[1].starts_with("/var/cache/juicefs-cache/")), "{args:?}");
        assert_eq!(v.name, "vol");
    }

    #[test]
    fn a_bad_path_names_the_field() {
        let e = JuiceFsVolume::from_plan(&plan("juicefs://host/demo"), None).unwrap_err();
        assert!(e.contains("spec.mounts[0].mountPoint") && e.contains("three slashes"), "{e}");
    }

    #[test]
    fn passwords_are_split_from_meta_urls() {
        assert_eq!(split_password("redis://:pw@h:6379/1"), ("redis://h:6379/1".into(), Some("pw".into())));
        assert_eq!(split_password("mysql://u:pw@(h:3306)/db"), ("mysql://u@(h:3306)/db".into(), Some("pw".into())));
        assert_eq!(split_password("sqlite3:///var/m.db"), ("sqlite3:///var/m.db".into(), None));
        assert_eq!(split_password("redis://:p/w@x:y@h:6379/1"), ("redis://h:6379/1".into(), Some("p/w@x:y".into())));
        assert_eq!(split_password("redis://u:a:b/c@h/1"), ("redis://u@h/1".into(), Some("a:b/c".into())));
    }
}
