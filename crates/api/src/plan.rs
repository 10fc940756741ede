//! From declared objects to a validated [`DatasetPlan`]: what the engine runs.
//!
//! Every check that can fail names the field (`spec.tieredstore.levels[0].quota`) and the fix.
//! Secrets are resolved here into [`SecretValue`]s, which never print their content.

use crate::load::{Manifest, Runtime};
use crate::quantity::{parse_ratio, QuantityError};
use crate::secret::SecretValue;
use crate::runtime_types::TieredStore;
use crate::types::*;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The under-storage schemes a `mountPoint` may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Local,
    S3,
    Oss,
    Http,
    Https,
    Hdfs,
    WebHdfs,
    Pvc,
    JuiceFs,
    Gcs,
}

impl Scheme {
    pub fn parse(mount_point: &str) -> Result<(Scheme, &str), String> {
        let Some((scheme, rest)) = mount_point.split_once("://") else {
            return Err(format!(
                "`{mount_point}` has no scheme; write e.g. local:///data, s3://bucket/dir, oss://bucket/dir"
            ));
        };
        let s = match scheme {
            "local" | "file" => Scheme::Local,
            "s3" | "s3a" => Scheme::S3,
            "oss" => Scheme::Oss,
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "hdfs" => Scheme::Hdfs,
            "webhdfs" => Scheme::WebHdfs,
            "pvc" => Scheme::Pvc,
            "juicefs" => Scheme::JuiceFs,
            "gs" | "gcs" => Scheme::Gcs,
            "dataset" => {
                return Err(format!(
                    "`{mount_point}` references another Dataset; the operator serves dataset:// references on Kubernetes (a PV of the referenced Dataset's cache); in embedded mode read the referenced Dataset's mountpoint"
                ))
            }
            other => {
                return Err(format!(
                    "scheme `{other}://` is not supported; use local, file, s3, oss, gs, http, https, hdfs, webhdfs, pvc or juicefs"
                ))
            }
        };
        Ok((s, rest))
    }
}

/// One resolved mount: where it appears in the dataset and how to reach it.
#[derive(Debug, Clone)]
pub struct MountPlan {
    /// `spec.mounts[i]`, for error messages.
    pub field: String,
    pub name: String,
    pub mount_point: String,
    pub scheme: Scheme,
    /// Where the mount appears inside the dataset (`/` or `/<name>`).
    pub path: String,
    pub options: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, SecretValue>,
    pub read_only: bool,
}

impl MountPlan {
    /// Every secret value of this mount, and the password inside a secret URL (a JuiceFS
    /// `metaurl`), for scrubbing from logs and errors.
    pub fn secret_values(&self) -> Vec<String> {
        let mut out = Vec::new();
        for v in self.secrets.values() {
            out.push(v.expose().to_string());
            if let (_, Some(password)) = crate::juicefs::split_password(v.expose()) {
                out.push(password);
            }
        }
        out
    }

    /// An option from `options` or `encryptOptions`, the first of `names` that is set.
    pub fn option(&self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|n| {
            self.options.get(*n).cloned().or_else(|| self.secrets.get(*n).map(|s| s.expose().to_string()))
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    Mem,
    Ssd,
    Hdd,
}

/// One cache tier with its quota per path and watermarks.
#[derive(Debug, Clone)]
pub struct TierPlan {
    pub medium: Medium,
    pub paths: Vec<PathBuf>,
    pub quotas: Vec<u64>,
    pub high: f64,
    pub low: f64,
}

impl TierPlan {
    pub fn quota(&self) -> u64 {
        self.quotas.iter().sum()
    }
}

/// The master property that sets [`DatasetPlan::checkpoint_entries`] (Alluxio's name).
pub const CHECKPOINT_ENTRIES: &str = "alluxio.master.journal.checkpoint.period.entries";

/// The runtime property that sets [`DatasetPlan::data_replicas`] for any runtime kind.
pub const DATA_REPLICAS: &str = "cistern.data.replicas";

#[derive(Debug, Clone)]
pub struct DatasetPlan {
    pub namespace: String,
    pub name: String,
    pub runtime_kind: &'static str,
    pub mounts: Vec<MountPlan>,
    pub tiers: Vec<TierPlan>,
    pub replicas: u32,
    /// How many masters replicate the namespace (`spec.master.replicas`: 1, 3, 5 or 7; Raft
    /// when more than one).
    pub masters: u32,
    /// With several masters: a snapshot after this many log entries, and the log compacted up
    /// to it (`spec.master.properties["alluxio.master.journal.checkpoint.period.entries"]`,
    /// Alluxio's name; 10 000 by default).
    pub checkpoint_entries: u64,
    /// On how many workers each file is kept: AlluxioRuntime `spec.data.replicas`, or the
    /// runtime property `cistern.data.replicas` (any kind); 1 by default. Extra copies are
    /// made from the owner, not from the UFS.
    pub data_replicas: u32,
    pub meta_dir: PathBuf,
    pub auto_sync: bool,
    /// How long a listing (and the kernel's entries and attributes) is trusted with autoSync:
    /// the runtime property `alluxio.user.file.metadata.sync.interval` (Alluxio's name; a
    /// number of milliseconds or `500ms`, `30s`, `5min`), 30 s by default.
    pub sync_interval: std::time::Duration,
    pub dataset: Dataset,
    pub runtime: Runtime,
}

impl DatasetPlan {
    /// Master `i`'s store directory on one machine (`cistern up`): master 0 keeps
    /// `namespace.meta-dir` itself (so a single master's store becomes the first member's
    /// state), master `i` uses `<meta-dir>-master-<i>` beside it. On Kubernetes every master
    /// pod mounts its own volume at `namespace.meta-dir` instead.
    pub fn master_meta_dir(&self, i: u32) -> std::path::PathBuf {
        if i == 0 {
            return self.meta_dir.clone();
        }
        let mut name = self.meta_dir.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(format!("-master-{i}"));
        self.meta_dir.with_file_name(name)
    }

    /// Cache capacity of the whole runtime: every worker has every tier's quota.
    pub fn cache_capacity(&self) -> u64 {
        self.tiers.iter().map(TierPlan::quota).sum::<u64>() * self.replicas as u64
    }
}

fn ns_of(meta: &kube::core::ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

impl Manifest {
    /// Picks the Dataset (by name when several), binds the runtime of the same name and
    /// namespace, and validates both.
    pub fn plan(&self, want: Option<&str>) -> Result<DatasetPlan, String> {
        let dataset = match (want, self.datasets.as_slice()) {
            (_, []) => return Err("no `kind: Dataset` document: add a Dataset (data.fluid.io/v1alpha1)".into()),
            (None, [one]) => one,
            (None, many) => {
                let names: Vec<_> = many.iter().filter_map(|d| d.metadata.name.clone()).collect();
                return Err(format!("several Datasets ({}): name one with --name", names.join(", ")));
            }
            (Some(w), all) => all
                .iter()
                .find(|d| d.metadata.name.as_deref() == Some(w))
                .ok_or_else(|| format!("no Dataset named `{w}` in the file"))?,
        };
        let name = dataset.metadata.name.clone().unwrap_or_default();
        let namespace = ns_of(&dataset.metadata).to_string();
        // Names become paths and labels: checked here, once, for everything downstream.
        crate::names::check_subdomain("metadata.name", &name)?;
        crate::names::check_label("metadata.namespace", &namespace)?;
        let runtime = self
            .runtimes
            .iter()
            .find(|r| r.name() == name && r.namespace() == namespace)
            .ok_or_else(|| match self.runtimes.first() {
                Some(r) => format!(
                    "{} `{}` does not match Dataset `{name}`: a runtime binds the Dataset of the same name and namespace; set its metadata.name to `{name}`",
                    r.kind(),
                    r.name()
                ),
                None => format!(
                    "no runtime for Dataset `{name}`: add a JindoRuntime, AlluxioRuntime or JuiceFSRuntime with metadata.name `{name}`"
                ),
            })?
            .clone();
        let mounts = plan_mounts(dataset, self)?;
        let spec = runtime.spec();
        let tiers = runtime_tiers(&runtime)?;
        let masters = match spec.master.replicas {
            None | Some(1) => 1,
            Some(n @ (3 | 5 | 7)) => n as u32,
            Some(n) if n < 1 => return Err(format!("spec.master.replicas: {n} masters is not possible; use 1, 3 or 5")),
            Some(n) if n % 2 == 0 => {
                return Err(format!(
                    "spec.master.replicas: {n} masters survive no more losses than {} do (a Raft quorum is a majority); use 1, 3 or 5",
                    n - 1
                ))
            }
            Some(n) => return Err(format!("spec.master.replicas: {n} masters is more than the 7 Cistern runs; use 1, 3 or 5")),
        };
        let replicas = match spec.replicas {
            None => 1,
            Some(n) if n >= 1 => n as u32,
            Some(n) => return Err(format!("spec.replicas: {n} workers is not possible; use 1 or more")),
        };
        let data_replicas = match (spec.properties.get(DATA_REPLICAS), &runtime) {
            (Some(v), _) => match v.trim().parse::<u32>() {
                Ok(n) if (1..=16).contains(&n) => n,
                _ => return Err(format!("spec.properties.{DATA_REPLICAS}: `{v}` is not a number of copies from 1 to 16")),
            },
            (None, Runtime::Alluxio(a)) => match a.spec.data.replicas {
                n if n <= 1 => 1, // Fluid's default: unset is 0, one copy
                n if n <= 16 => n as u32,
                n => return Err(format!("spec.data.replicas: {n} copies of each file is more than the 16 Cistern keeps")),
            },
            (None, _) => 1,
        };
        let checkpoint_entries = match spec.master.properties.get(CHECKPOINT_ENTRIES) {
            None => 10_000,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if (10..=10_000_000).contains(&n) => n,
                _ => return Err(format!("spec.master.properties.{CHECKPOINT_ENTRIES}: `{v}` is not a number of log entries from 10 to 10000000")),
            },
        };
        let meta_dir = match spec.master.properties.get("namespace.meta-dir") {
            Some(dir) if dir.split('/').any(|c| c == "..") => {
                return Err(format!("spec.master.properties.namespace.meta-dir: `{dir}` holds `..`; give the directory itself"))
            }
            Some(dir) if dir.starts_with('/') => PathBuf::from(dir),
            Some(dir) => {
                return Err(format!(
                    "spec.master.properties.namespace.meta-dir: `{dir}` is not an absolute path"
                ))
            }
            None => tiers[0].paths[0].join("cistern-meta").join(format!("{namespace}-{name}")),
        };
        Ok(DatasetPlan {
            namespace,
            name,
            runtime_kind: runtime.kind(),
            mounts,
            tiers,
            replicas,
            masters,
            checkpoint_entries,
            data_replicas,
            meta_dir,
            auto_sync: spec.management.metadata_sync_policy.auto_sync.unwrap_or(true),
            sync_interval: match spec.properties.get(SYNC_INTERVAL) {
                Some(v) => parse_interval(v).map_err(|e| format!("spec.properties.{SYNC_INTERVAL}: {e}"))?,
                None => std::time::Duration::from_secs(30),
            },
            dataset: dataset.clone(),
            runtime,
        })
    }
}

fn plan_mounts(dataset: &Dataset, m: &Manifest) -> Result<Vec<MountPlan>, String> {
    let spec = &dataset.spec;
    if spec.mounts.is_empty() {
        return Err("spec.mounts: empty; add at least one mount with a mountPoint".into());
    }
    let single = spec.mounts.len() == 1;
    let mut out: Vec<MountPlan> = Vec::new();
    for (i, mnt) in spec.mounts.iter().enumerate() {
        let field = format!("spec.mounts[{i}]");
        let (scheme, rest) = Scheme::parse(&mnt.mount_point).map_err(|e| format!("{field}.mountPoint: {e}"))?;
        let name = if mnt.name.is_empty() {
            rest.trim_end_matches('/').rsplit('/').next().unwrap_or_default().to_string()
        } else {
            mnt.name.clone()
        };
        if name.is_empty() || name.contains('/') {
            return Err(format!("{field}.name: `{name}` is not a valid name; use letters, digits, - or _"));
        }
        // Fluid treats an empty path as unset: `/{name}`.
        let path = match mnt.path.as_deref().filter(|p| !p.is_empty()) {
            Some("/") if single => "/".to_string(),
            Some("/") => {
                return Err(format!(
                    "{field}.path: `/` is only allowed with a single mount; give each mount its own path"
                ))
            }
            Some(p) if p.starts_with('/') => p.trim_end_matches('/').to_string(),
            Some(p) => return Err(format!("{field}.path: `{p}` must start with `/`")),
            None => format!("/{name}"),
        };
        if let Some(other) = out.iter().find(|o| o.path == path) {
            return Err(format!("{field}.path: `{path}` is already used by {}", other.field));
        }
        let mut options = spec.shared_options.clone();
        options.extend(mnt.options.clone());
        let mut secrets = BTreeMap::new();
        for (j, eo) in spec.shared_encrypt_options.iter().chain(&mnt.encrypt_options).enumerate() {
            let r = &eo.value_from.secret_key_ref;
            let v = m
                .secrets
                .get(&r.name, &r.key)
                .map_err(|e| format!("{field}.encryptOptions[{j}] ({}): {e}", eo.name))?;
            secrets.insert(eo.name.clone(), v);
        }
        out.push(MountPlan {
            field,
            name,
            mount_point: mnt.mount_point.clone(),
            scheme,
            path,
            options,
            secrets,
            read_only: mnt.read_only.unwrap_or(true),
        });
    }
    Ok(out)
}

/// The tiered store of a runtime, checked: what its workers cache on (the same with or
/// without its Dataset, e.g. when cleaning a deleted runtime's cache off the nodes).
pub fn runtime_tiers(runtime: &Runtime) -> Result<Vec<TierPlan>, String> {
    let bare_unit = if matches!(runtime, Runtime::JuiceFS(_)) { 1 << 20 } else { 1 };
    // JuiceFS separates several cache directories with `:`, Alluxio and Jindo with `,`.
    let separators: &[char] = if matches!(runtime, Runtime::JuiceFS(_)) { &[',', ':'] } else { &[','] };
    plan_tiers(&runtime.spec().tieredstore, bare_unit, separators)
}

fn plan_tiers(ts: &TieredStore, bare_unit: u64, separators: &[char]) -> Result<Vec<TierPlan>, String> {
    if ts.levels.is_empty() {
        return Ok(vec![TierPlan {
            medium: Medium::Mem,
            paths: vec![PathBuf::from("/dev/shm")],
            quotas: vec![2 << 30],
            high: 0.95,
            low: 0.7,
        }]);
    }
    let mut tiers = Vec::new();
    for (i, l) in ts.levels.iter().enumerate() {
        let f = format!("spec.tieredstore.levels[{i}]");
        let medium = match l.mediumtype.as_str() {
            "MEM" => Medium::Mem,
            "SSD" => Medium::Ssd,
            "HDD" => Medium::Hdd,
            other => return Err(format!("{f}.mediumtype: `{other}` is not MEM, SSD or HDD")),
        };
        let paths: Vec<PathBuf> =
            l.path.split(separators).map(str::trim).filter(|p| !p.is_empty()).map(PathBuf::from).collect();
        if paths.is_empty() {
            return Err(format!("{f}.path: empty; give a directory such as /dev/shm"));
        }
        if let Some(p) = paths.iter().find(|p| !p.is_absolute()) {
            return Err(format!("{f}.path: `{}` is not an absolute path", p.display()));
        }
        if let Some(p) = paths.iter().find(|p| p.components().any(|c| matches!(c, std::path::Component::ParentDir))) {
            return Err(format!("{f}.path: `{}` holds `..`; give the directory itself", p.display()));
        }
        // Two levels (or two paths) on one directory would each count the other's files
        // against their own quota and evict them.
        for p in &paths {
            let clash = tiers.iter().enumerate().flat_map(|(j, t): (usize, &TierPlan)| t.paths.iter().map(move |q| (j, q))).find(|(_, q)| p.starts_with(q) || q.starts_with(p));
            if let Some((j, q)) = clash {
                return Err(format!("{f}.path: `{}` overlaps `{}` of spec.tieredstore.levels[{j}]; give each level its own directory", p.display(), q.display()));
            }
        }
        if let Some((a, b)) = paths.iter().enumerate().find_map(|(i, p)| paths[i + 1..].iter().find(|q| p.starts_with(q) || q.starts_with(p)).map(|q| (p, q))) {
            return Err(format!("{f}.path: `{}` and `{}` overlap; give each path its own directory", a.display(), b.display()));
        }
        let quotas: Vec<u64> = match (&l.quota_list, &l.quota) {
            (Some(list), _) => {
                let q: Result<Vec<u64>, QuantityError> = list
                    .split(',')
                    .map(|s| crate::quantity::parse_bytes(s, bare_unit))
                    .collect();
                let q = q.map_err(|e| format!("{f}.quotaList: {e}"))?;
                if q.len() != paths.len() {
                    return Err(format!(
                        "{f}.quotaList: {} quotas for {} paths; give one quota per path",
                        q.len(),
                        paths.len()
                    ));
                }
                q
            }
            (None, Some(q)) => {
                let total = q.to_bytes(bare_unit).map_err(|e| format!("{f}.quota: {e}"))?;
                vec![total / paths.len() as u64; paths.len()]
            }
            (None, None) => return Err(format!("{f}.quota: missing; set a quota such as 2Gi")),
        };
        if quotas.contains(&0) {
            return Err(format!("{f}.quota: zero bytes; set a quota such as 2Gi"));
        }
        // Empty watermarks are unset, as in Fluid.
        let high = match l.high.as_deref().filter(|h| !h.trim().is_empty()) {
            Some(h) => parse_ratio(h).map_err(|e| format!("{f}.high: {e}"))?,
            None => 0.95,
        };
        let low = match l.low.as_deref().filter(|h| !h.trim().is_empty()) {
            Some(h) => parse_ratio(h).map_err(|e| format!("{f}.low: {e}"))?,
            None => 0.7_f64.min(high),
        };
        if low > high {
            return Err(format!("{f}.low: {low} is above high {high}; low must not exceed high"));
        }
        tiers.push(TierPlan { medium, paths, quotas, high, low });
    }
    Ok(tiers)
}

/// Alluxio's property for how long metadata is trusted before the UFS is asked again.
pub const SYNC_INTERVAL: &str = "alluxio.user.file.metadata.sync.interval";

/// `1500` (milliseconds, Alluxio's unit), `500ms`, `30s`, `5min`, `1h`; at most a day.
fn parse_interval(v: &str) -> Result<std::time::Duration, String> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("`{v}` is not a duration; write e.g. 30s, 500ms or 5min"))?;
    let ms = match unit.trim() {
        "" | "ms" => n,
        "s" | "sec" => n.saturating_mul(1000),
        "m" | "min" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        other => return Err(format!("unit `{other}` in `{v}`: use ms, s, min or h")),
    };
    if ms > 86_400_000 {
        return Err(format!("`{v}` is more than a day; turn autoSync off instead"));
    }
    Ok(std::time::Duration::from_millis(ms))
}

#[cfg(test)]
mod interval_tests {
    use super::parse_interval;
    use std::time::Duration;

    #[test]
    fn alluxio_intervals_parse_and_nonsense_is_refused() {
        assert_eq!(parse_interval("1500").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_interval("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_interval("5min").unwrap(), Duration::from_secs(300));
        assert!(parse_interval("-1").is_err() && parse_interval("3 weeks").is_err() && parse_interval("99999h").is_err());
    }
}

#[cfg(test)]
mod fluid_quirk_tests {
    use crate::load::Manifest;

    fn plan(yaml: &str) -> Result<crate::DatasetPlan, String> {
        let mut m = Manifest::default();
        m.add_yaml(yaml, "test.yaml").map_err(|e| e.to_string())?;
        m.plan(None)
    }

    const DATASET: &str = "apiVersion: data.fluid.io/v1alpha1\nkind: Dataset\nmetadata: {name: d}\nspec:\n  mounts: [{mountPoint: 'https://example.org/x/', name: x, path: ''}]\n---\n";

    #[test]
    fn empty_path_and_watermarks_mean_unset() {
        let p = plan(&format!("{DATASET}apiVersion: data.fluid.io/v1alpha1\nkind: AlluxioRuntime\nmetadata: {{name: d}}\nspec:\n  tieredstore:\n    levels: [{{mediumtype: MEM, path: /dev/shm, quota: 1Gi, high: '', low: ''}}]\n")).unwrap();
        assert_eq!(p.mounts[0].path, "/x");
        assert_eq!((p.tiers[0].high, p.tiers[0].low), (0.95, 0.7));
    }

    #[test]
    fn juicefs_cache_paths_split_on_colons() {
        let yaml = "apiVersion: data.fluid.io/v1alpha1\nkind: Dataset\nmetadata: {name: d}\nspec:\n  mounts: [{mountPoint: 'juicefs:///demo', name: x}]\n---\napiVersion: data.fluid.io/v1alpha1\nkind: JuiceFSRuntime\nmetadata: {name: d}\nspec:\n  tieredstore:\n    levels: [{mediumtype: SSD, path: '/mnt/cache1:/mnt/cache2', quota: 40Gi}]\n";
        let p = plan(yaml).unwrap();
        assert_eq!(p.tiers[0].paths.len(), 2);
    }

    #[test]
    fn masters_are_an_odd_number_up_to_seven() {
        let with = |n: i32| plan(&format!("{DATASET}apiVersion: data.fluid.io/v1alpha1\nkind: JindoRuntime\nmetadata: {{name: d}}\nspec:\n  master: {{replicas: {n}}}\n"));
        assert_eq!(with(3).unwrap().masters, 3);
        assert_eq!(with(5).unwrap().masters, 5);
        assert_eq!(with(1).unwrap().masters, 1);
        let e = with(2).unwrap_err();
        assert!(e.contains("spec.master.replicas: 2 masters") && e.contains("majority"), "{e}");
        assert!(with(9).unwrap_err().contains("more than the 7"));
        assert!(with(0).unwrap_err().contains("not possible"));
    }
}
