//! `cistern load`: prefetch a Dataset (or some of its paths) into the cache, like a Fluid
//! DataLoad.
//!
//! In embedded mode the cache belongs to the `cistern up` process, so the load reads through
//! that process's mount: every byte goes through the normal read path, lands in the worker
//! that owns the file, and counts in the Dataset's status. The kernel's page cache is dropped
//! for each file first (fadvise), so the reads really reach the cache engine.
//!
//! With `--master`, the load goes through the Dataset's master and workers over gRPC instead,
//! with no mount: what the DataLoad Job runs on Kubernetes (see [`source`]).
//!
//! The DataLoad status goes Pending → Executing → Complete (or Failed, with the reason); it is
//! printed and, in embedded mode, written to the run directory as `dataload-<name>.json`.

mod progress;
mod source;

use crate::rundir::discover;
use anyhow::{anyhow, bail, Result};
use cistern_api::quantity::format_bytes;
use cistern_api::Manifest;
use progress::Progress;
use source::Source;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// A file with a DataLoad, or with the Dataset to load (optional with --master).
    #[arg(short = 'f', long = "filename", required_unless_present_any = ["master", "mount"])]
    pub file: Option<PathBuf>,
    /// Paths inside the Dataset to load (default: all of it, or the DataLoad's targets).
    pub paths: Vec<String>,
    /// Files read at the same time.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Load through the Dataset's master (`HOST:PORT` or `unix:/path.sock`) and its workers,
    /// without a mount: what the DataLoad Job runs on Kubernetes.
    #[arg(long, conflicts_with = "mount")]
    pub master: Option<String>,
    /// The Dataset's credentials (client certificate), for a master reached over TCP
    /// [default: beside a unix: master's socket].
    #[arg(long = "credentials", env = "CISTERN_CREDENTIALS")]
    pub credentials: Option<PathBuf>,
    /// Load by reading this directory, where the Dataset is mounted (a PVC in a Job's pod).
    #[arg(long)]
    pub mount: Option<PathBuf>,
    /// How long to wait for an unreachable master or worker before failing, with --master.
    #[arg(long, default_value_t = 60)]
    pub master_timeout_secs: u64,
    /// The DataLoad's name in the progress lines, with --master or --mount and no -f.
    #[arg(long, default_value = "load")]
    pub load_name: String,
    /// Also keep copies of PATH's files on the next workers of each file's ranking, N workers
    /// in all (DataLoad `target[].replicas`, 1 to 16); repeatable. Through the master.
    #[arg(long = "replicated", value_name = "PATH=N")]
    pub replicated: Vec<String>,
    /// List the targets from the under storage first, whatever the sync interval (DataLoad
    /// `loadMetadata`): files added since the last listing are loaded too. Through the master.
    #[arg(long)]
    pub load_metadata: bool,
    #[command(flatten)]
    pub run: crate::RunRootArg,
}

struct Job {
    name: String,
    namespace: String,
    dataset: String,
    targets: Vec<Target>,
    load_metadata: bool,
}

/// A path to load, and on how many workers to keep each of its files.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub path: String,
    pub replicas: u32,
}

/// How much of a file one load thread reads at a time.
const LOAD_RANGE: u64 = 16 << 20;
// A work item is one request to its owner (`Client::load_range`), which takes at most this.
const _: () = assert!(LOAD_RANGE <= cistern_rpc::MAX_READ_LEN);

/// Copies of a file a DataLoad may ask for (a worker each).
const MAX_REPLICAS: u32 = 16;

fn replicas_of(field: &str, n: i64) -> Result<u32> {
    match u32::try_from(n) {
        Ok(r) if (1..=MAX_REPLICAS).contains(&r) => Ok(r),
        _ => bail!("{field}: {n} copies; give 1 to {MAX_REPLICAS}"),
    }
}

/// `--replicated PATH=N` (the last `=` splits, so a path may hold one).
fn parse_replicated(arg: &str) -> Result<Target> {
    let (path, n) = arg.rsplit_once('=').ok_or_else(|| anyhow!("--replicated `{arg}`: give PATH=N"))?;
    let n: i64 = n.trim().parse().map_err(|_| anyhow!("--replicated `{arg}`: `{n}` is not a number of copies"))?;
    Ok(Target { path: path.to_string(), replicas: replicas_of("--replicated", n)? })
}

/// The command line's targets: the paths (one copy) and `--replicated` ones.
fn command_line_targets(args: &LoadArgs) -> Result<Vec<Target>> {
    let mut targets: Vec<Target> = args.paths.iter().map(|p| Target { path: p.clone(), replicas: 1 }).collect();
    for r in &args.replicated {
        targets.push(parse_replicated(r)?);
    }
    Ok(targets)
}

fn or_everything(targets: Vec<Target>) -> Vec<Target> {
    if targets.is_empty() {
        vec![Target { path: "/".into(), replicas: 1 }]
    } else {
        targets
    }
}

pub fn run(args: LoadArgs) -> Result<()> {
    let manifest = match &args.file {
        Some(f) => Some(Manifest::from_path(f)?),
        None => None,
    };
    let job = match &manifest {
        Some(m) => pick_job(m, &args)?,
        None => Job {
            name: args.load_name.clone(),
            namespace: String::new(),
            dataset: String::new(),
            targets: or_everything(command_line_targets(&args)?),
            load_metadata: args.load_metadata,
        },
    };
    // Copies on other workers and listings from the UFS are asked of the master and workers:
    // a load on this machine goes through the master's socket instead of the mount for them.
    let through_master = job.load_metadata || job.targets.iter().any(|t| t.replicas > 1);
    let (source, status_file) = match (&args.master, &args.mount) {
        (_, Some(dir)) => (Source::Mount(dir.clone()), None),
        (Some(master), None) => {
            let addresses = cistern_rpc::masters::parse_list(master).map_err(|e| anyhow!("--master {e}"))?;
            let address = addresses[0].clone();
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            // A master reached by its socket runs on this node: workers here have their
            // descriptor sockets beside it.
            let run_dir = match &address {
                cistern_rpc::Address::Unix(sock) => sock.parent().map(std::path::Path::to_path_buf),
                cistern_rpc::Address::Tcp(_) => None,
            };
            let credentials = args.credentials.clone().or_else(|| run_dir.as_deref().map(crate::credentials::default_dir));
            if let Some(dir) = &credentials {
                crate::credentials::install_tls(dir, cistern_rpc::tls::Role::Client)?;
            }
            let client = crate::component::connect(&rt, &addresses, Some(Duration::from_secs(args.master_timeout_secs)), run_dir.as_deref())?;
            (Source::Master { rt, client }, None)
        }
        (None, None) => {
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
            let status_file = Some(run_dir.join(format!("dataload-{}.json", job.name)));
            if through_master {
                let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
                crate::credentials::install_tls(&crate::credentials::default_dir(&run_dir), cistern_rpc::tls::Role::Client)?;
                let masters = crate::component::sockets_in(&run_dir);
                let client = crate::component::connect(&rt, &masters, Some(Duration::from_secs(args.master_timeout_secs)), Some(&run_dir))?;
                (Source::Master { rt, client }, status_file)
            } else {
                (Source::Mount(status.mountpoint.clone()), status_file)
            }
        }
    };
    let who = if job.namespace.is_empty() { job.name.clone() } else { format!("{}/{}", job.namespace, job.name) };
    let report = |status: cistern_api::DataLoadStatus| {
        if let Some(path) = &status_file {
            use cistern_api::{DataLoad, DataLoadSpec, TargetDataset, TargetPath};
            let spec = DataLoadSpec {
                dataset: TargetDataset { name: job.dataset.clone(), namespace: Some(job.namespace.clone()) },
                target: job.targets.iter().map(|t| TargetPath { path: t.path.clone(), replicas: (t.replicas > 1).then_some(t.replicas as i32) }).collect(),
                load_metadata: job.load_metadata,
                ..Default::default()
            };
            let mut obj = DataLoad::new(&job.name, spec);
            obj.metadata.namespace = Some(job.namespace.clone());
            obj.status = Some(status.clone());
            let _ = std::fs::write(path, serde_json::to_vec_pretty(&obj).unwrap_or_default());
        }
        eprintln!("DataLoad {who}: {}", status.phase);
    };
    let phase = |p: &str| cistern_api::DataLoadStatus { phase: p.into(), ..Default::default() };
    report(phase("Pending"));
    let started = Instant::now();
    report(phase("Executing"));
    if through_master && matches!(source, Source::Mount(_)) {
        eprintln!("warning: DataLoad {who}: loadMetadata and target replicas are not applied when loading through a mount (a JuiceFS volume); the files are loaded once");
    }
    match load(&source, &job.targets, job.load_metadata, args.parallel.max(1)) {
        Ok((files, bytes)) => {
            let secs = started.elapsed().as_secs_f64();
            report(cistern_api::DataLoadStatus { duration: format!("{secs:.1}s"), ..phase("Complete") });
            println!(
                "loaded {files} files, {} in {secs:.1}s ({}/s)",
                format_bytes(bytes),
                format_bytes((bytes as f64 / secs.max(0.001)) as u64)
            );
            Ok(())
        }
        Err(e) => {
            let failed = cistern_api::Condition { type_: "Failed".into(), status: "True".into(), reason: "LoadFailed".into(), message: format!("{e:#}"), ..Default::default() };
            report(cistern_api::DataLoadStatus { conditions: vec![failed], ..phase("Failed") });
            Err(e)
        }
    }
}

fn pick_job(m: &Manifest, args: &LoadArgs) -> Result<Job> {
    if let Some(dl) = m.dataloads.first() {
        let namespace = dl.metadata.namespace.clone().or_else(|| dl.spec.dataset.namespace.clone()).unwrap_or_else(|| "default".into());
        let mut targets = Vec::new();
        for (i, t) in dl.spec.target.iter().enumerate() {
            let replicas = replicas_of(&format!("spec.target[{i}].replicas"), t.replicas.map_or(1, i64::from))?;
            targets.push(Target { path: t.path.clone(), replicas });
        }
        targets.extend(command_line_targets(args)?);
        return Ok(Job {
            name: dl.metadata.name.clone().unwrap_or_default(),
            namespace,
            dataset: dl.spec.dataset.name.clone(),
            targets: or_everything(targets),
            load_metadata: dl.spec.load_metadata || args.load_metadata,
        });
    }
    let ds = match m.datasets.as_slice() {
        [one] => one,
        [] => bail!("{}: no DataLoad and no Dataset: add a `kind: DataLoad` or the Dataset to load", file_name(args)),
        _ => bail!("{}: several Datasets; add a DataLoad naming the one to load", file_name(args)),
    };
    let dataset = ds.metadata.name.clone().unwrap_or_default();
    Ok(Job {
        name: format!("{dataset}-load"),
        namespace: ds.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
        dataset,
        targets: or_everything(command_line_targets(args)?),
        load_metadata: args.load_metadata,
    })
}

fn file_name(args: &LoadArgs) -> String {
    args.file.as_ref().map(|f| f.display().to_string()).unwrap_or_default()
}

/// Reads every file under the targets, `parallel` at a time, and through the next workers of
/// its ranking for each copy asked; `sync`: listed from the UFS first. Returns (files, bytes).
fn load(source: &Source, targets: &[Target], sync: bool, parallel: usize) -> Result<(u64, u64)> {
    let mut files = Vec::new();
    for t in targets {
        files.extend(source.list(&t.path, sync)?.into_iter().map(|(entry, size)| (entry, size, t.replicas)));
    }
    let total: u64 = files.iter().map(|f| f.1).sum();
    let count = files.len() as u64;
    let progress = Progress::new(total, count);
    // Work items are ranges, so a large file is read by every thread at once (as JuiceFS's
    // `warmup --threads` does) and small files go `parallel` at a time; the thread that reads a
    // file's last range makes its copies.
    let left: Vec<AtomicU64> = files.iter().map(|f| AtomicU64::new(f.1.div_ceil(LOAD_RANGE).max(1))).collect();
    let mut ranges: Vec<(usize, u64, u64)> = Vec::new();
    for (i, (_, size, _)) in files.iter().enumerate().rev() {
        let n = size.div_ceil(LOAD_RANGE).max(1);
        ranges.extend((0..n).rev().map(|r| (i, r * LOAD_RANGE, ((r + 1) * LOAD_RANGE).min(*size))));
    }
    let queue = Arc::new(Mutex::new(ranges));
    let failure: Arc<Mutex<Option<anyhow::Error>>> = Arc::default();
    std::thread::scope(|s| {
        for _ in 0..parallel {
            s.spawn(|| loop {
                let Some((i, start, end)) = queue.lock().expect("queue lock").pop() else { return };
                let (entry, size, replicas) = &files[i];
                let mut done = source.read(entry, start, end, &progress);
                if done.is_ok() && left[i].fetch_sub(1, Ordering::AcqRel) == 1 {
                    done = (1..*replicas).try_for_each(|rank| source.copy(entry, *size, rank as usize));
                    progress.file_done();
                }
                if let Err(e) = done {
                    *failure.lock().expect("failure lock") = Some(e);
                    queue.lock().expect("queue lock").clear();
                    return;
                }
            });
        }
    });
    progress.finish();
    if let Some(e) = failure.lock().expect("failure lock").take() {
        return Err(e);
    }
    Ok((count, progress.bytes.load(Ordering::Relaxed)))
}
