//! `cistern load`: prefetch a Dataset (or some of its paths) into the cache, like a Fluid
//! DataLoad.
//!
//! In embedded mode the cache belongs to the `cistern up` process, so the load reads through
//! that process's mount: every byte goes through the normal read path, lands in the worker
//! that owns the file, and counts in the Dataset's status. The kernel's page cache is dropped
//! for each file first (fadvise), so the reads really reach the cache engine.
//!
//! The DataLoad status goes Pending → Executing → Complete (or Failed, with the reason); it is
//! printed and written to the run directory as `dataload-<name>.json`.

use crate::rundir::discover;
use anyhow::{anyhow, bail, Context, Result};
use cistern_api::quantity::format_bytes;
use cistern_api::Manifest;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::io::{IsTerminal, Read};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// A file with a DataLoad, or with the Dataset to load.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// Paths inside the Dataset to load (default: all of it, or the DataLoad's targets).
    pub paths: Vec<String>,
    /// Files read at the same time.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    #[command(flatten)]
    pub run: crate::RunRootArg,
}

struct Job {
    name: String,
    namespace: String,
    dataset: String,
    targets: Vec<String>,
}

pub fn run(args: LoadArgs) -> Result<()> {
    let manifest = Manifest::from_path(&args.file)?;
    let job = pick_job(&manifest, &args)?;
    let served = discover(&args.run.run_root);
    let status = served
        .iter()
        .find(|s| s.dataset["metadata"]["name"] == job.dataset.as_str() && s.dataset["metadata"]["namespace"] == job.namespace.as_str())
        .ok_or_else(|| {
            anyhow!(
                "Dataset {}/{} is not served on this machine: start it with `cistern up -f <file>` first",
                job.namespace,
                job.dataset
            )
        })?;
    let run_dir = args.run.run_root.join(format!("{}-{}", job.namespace, job.dataset));
    let report = |phase: &str, extra: serde_json::Value| {
        let mut st = json!({"phase": phase});
        if let (Some(o), Some(e)) = (st.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        let obj = json!({
            "apiVersion": "data.fluid.io/v1alpha1", "kind": "DataLoad",
            "metadata": {"name": job.name, "namespace": job.namespace},
            "spec": {"dataset": {"name": job.dataset, "namespace": job.namespace}, "target": job.targets.iter().map(|p| json!({"path": p})).collect::<Vec<_>>()},
            "status": st,
        });
        let _ = std::fs::write(run_dir.join(format!("dataload-{}.json", job.name)), serde_json::to_vec_pretty(&obj).unwrap_or_default());
        eprintln!("DataLoad {}/{}: {phase}", job.namespace, job.name);
    };
    report("Pending", json!({}));
    let started = Instant::now();
    report("Executing", json!({}));
    match load(&status.mountpoint, &job.targets, args.parallel.max(1)) {
        Ok((files, bytes)) => {
            let secs = started.elapsed().as_secs_f64();
            report("Complete", json!({"duration": format!("{secs:.1}s")}));
            println!(
                "loaded {files} files, {} in {secs:.1}s ({}/s)",
                format_bytes(bytes),
                format_bytes((bytes as f64 / secs.max(0.001)) as u64)
            );
            Ok(())
        }
        Err(e) => {
            report("Failed", json!({"conditions": [{"type": "Failed", "status": "True", "reason": "LoadFailed", "message": format!("{e:#}")}]}));
            Err(e)
        }
    }
}

fn pick_job(m: &Manifest, args: &LoadArgs) -> Result<Job> {
    if let Some(dl) = m.dataloads.first() {
        let namespace = dl.metadata.namespace.clone().or_else(|| dl.spec.dataset.namespace.clone()).unwrap_or_else(|| "default".into());
        let mut targets: Vec<String> = dl.spec.target.iter().map(|t| t.path.clone()).collect();
        targets.extend(args.paths.iter().cloned());
        return Ok(Job {
            name: dl.metadata.name.clone().unwrap_or_default(),
            namespace,
            dataset: dl.spec.dataset.name.clone(),
            targets: if targets.is_empty() { vec!["/".into()] } else { targets },
        });
    }
    let ds = match m.datasets.as_slice() {
        [one] => one,
        [] => bail!("{}: no DataLoad and no Dataset: add a `kind: DataLoad` or the Dataset to load", args.file.display()),
        _ => bail!("{}: several Datasets; add a DataLoad naming the one to load", args.file.display()),
    };
    let dataset = ds.metadata.name.clone().unwrap_or_default();
    Ok(Job {
        name: format!("{dataset}-load"),
        namespace: ds.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
        dataset,
        targets: if args.paths.is_empty() { vec!["/".into()] } else { args.paths.clone() },
    })
}

/// Reads every file under the targets through the mount; returns (files, bytes).
fn load(mountpoint: &Path, targets: &[String], parallel: usize) -> Result<(u64, u64)> {
    let mut files = Vec::new();
    for t in targets {
        let rel = t.trim_start_matches('/');
        let root = mountpoint.join(rel);
        let meta = std::fs::metadata(&root).with_context(|| format!("target path `{t}`: not found in the Dataset"))?;
        if meta.is_dir() {
            walk(&root, &mut files)?;
        } else {
            files.push((root, meta.len()));
        }
    }
    let total: u64 = files.iter().map(|f| f.1).sum();
    let count = files.len() as u64;
    let progress = Progress::new(total, count);
    let queue = Arc::new(Mutex::new(files));
    let failure: Arc<Mutex<Option<anyhow::Error>>> = Arc::default();
    std::thread::scope(|s| {
        for _ in 0..parallel {
            s.spawn(|| loop {
                let Some((path, _)) = queue.lock().expect("queue lock").pop() else { return };
                if let Err(e) = read_file(&path, &progress) {
                    *failure.lock().expect("failure lock") = Some(e);
                    queue.lock().expect("queue lock").clear();
                    return;
                }
                progress.file_done();
            });
        }
    });
    progress.finish();
    if let Some(e) = failure.lock().expect("failure lock").take() {
        return Err(e);
    }
    Ok((count, progress.bytes.load(Ordering::Relaxed)))
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64)>) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let e = e?;
        let meta = e.metadata()?;
        if meta.is_dir() {
            walk(&e.path(), out)?;
        } else {
            out.push((e.path(), meta.len()));
        }
    }
    Ok(())
}

fn read_file(path: &Path, progress: &Progress) -> Result<()> {
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    // Drop the kernel's copy so the reads reach the cache engine.
    // SAFETY: fadvise on an fd we own.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            return Ok(());
        }
        progress.add(n as u64);
    }
}

/// A progress bar on a terminal; a plain line every few seconds otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    bytes: AtomicU64,
    files: AtomicU64,
    total: u64,
    count: u64,
    started: Instant,
    last_line: Mutex<Instant>,
}

impl Progress {
    fn new(total: u64, count: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_message(format!("0/{count} files"));
            b
        });
        Progress {
            bar,
            bytes: AtomicU64::new(0),
            files: AtomicU64::new(0),
            total,
            count,
            started: Instant::now(),
            last_line: Mutex::new(Instant::now()),
        }
    }

    fn add(&self, n: u64) {
        let done = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(b) = &self.bar {
            b.set_position(done);
        } else {
            let mut last = self.last_line.lock().expect("progress lock");
            if last.elapsed() >= Duration::from_secs(2) {
                *last = Instant::now();
                self.line();
            }
        }
    }

    fn file_done(&self) {
        let f = self.files.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(b) = &self.bar {
            b.set_message(format!("{f}/{} files", self.count));
        }
    }

    fn line(&self) {
        let done = self.bytes.load(Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / secs;
        // "?" until a second has passed, and when the projection passes a day: a first file
        // that stalls (a component restarting) would otherwise project an absurd time.
        let eta = match (rate > 0.0 && secs >= 1.0 && done > 0, self.total.saturating_sub(done)) {
            (_, 0) => "0s".to_string(),
            (true, left) if (left as f64 / rate) < 86400.0 => format!("{:.0}s", left as f64 / rate),
            _ => "?".to_string(),
        };
        eprintln!(
            "loading: {}/{} files, {}/{}, {}/s, ETA {}",
            self.files.load(Ordering::Relaxed),
            self.count,
            format_bytes(done),
            format_bytes(self.total),
            format_bytes(rate as u64),
            eta
        );
    }

    fn finish(&self) {
        match &self.bar {
            Some(b) => b.finish(),
            None => self.line(),
        }
    }
}
