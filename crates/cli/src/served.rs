//! What the master serves, seen from outside: the status file in the run directory and the web
//! port (metrics, status, log level) both read it from here. Cache figures are the last ones
//! each worker reported in its heartbeat.

use crate::rundir::StatusFile;
use crate::status;
use anyhow::Result;
use cistern_api::DatasetPlan;
use cistern_client::CacheStats;
use cistern_master::rpc::WorkerRegistry;
use cistern_master::web::WebSource;
use cistern_master::metrics::{LatencyFigures, ProcessFigures};
use cistern_master::{Figures, LevelFigures, Summary};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

pub struct Served {
    pub plan: DatasetPlan,
    /// The desired workers now (the plan's, updated when the configuration changes).
    pub replicas: Arc<std::sync::atomic::AtomicU32>,
    pub registry: Arc<WorkerRegistry>,
    pub summary: Arc<Mutex<Summary>>,
    /// The log filters of every component (the web port's `/api/v1/loglevel`).
    pub log_levels: Arc<cistern_master::log_levels::LogLevels>,
    pub created: String,
    pub mountpoint: PathBuf,
    pub web: OnceLock<String>,
    /// For the page's file browser and DataLoad progress.
    pub ns: Arc<cistern_master::Namespace>,
    pub refs: cistern_rpc::RefKey,
    /// Where `cistern load` writes `dataload-<name>.json` (embedded mode).
    pub run_dir: PathBuf,
    /// This master's part in a quorum of several (`None`: the only master).
    pub quorum: Option<Arc<cistern_master::raft::Replicated>>,
    /// Masters that answered the last poll, this one included (see `component::master`).
    pub masters_ready: std::sync::atomic::AtomicU32,
}

/// DataLoad status files read for the page, at most, and the largest read.
const MAX_DATALOADS: usize = 64;
const MAX_DATALOAD_FILE: u64 = 1 << 20;

impl Served {
    /// The DataLoads `cistern load` recorded in the run directory (hostile files: bounded in
    /// number and size, parsed as JSON, anything else skipped).
    fn dataload_files(&self) -> Vec<serde_json::Value> {
        let Ok(dir) = std::fs::read_dir(&self.run_dir) else { return Vec::new() };
        let mut out = Vec::new();
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("dataload-") && name.ends_with(".json")) || out.len() == MAX_DATALOADS {
                continue;
            }
            let small = entry.metadata().is_ok_and(|m| m.is_file() && m.len() <= MAX_DATALOAD_FILE);
            if let Some(v) = small.then(|| std::fs::read(entry.path()).ok()).flatten().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()) {
                out.push(v);
            }
        }
        out.sort_by(|a, b| a["metadata"]["name"].as_str().cmp(&b["metadata"]["name"].as_str()));
        out
    }
}

impl Served {
    fn summary(&self) -> Summary {
        self.summary.lock().expect("summary lock").clone()
    }

    /// Figures summed over every worker heard from: a worker that is down still has its
    /// persistent cache on disk.
    fn stats(&self) -> CacheStats {
        let mut s = CacheStats::default();
        for (_, f) in self.registry.last_figures() {
            s.add(&f);
        }
        s
    }

    pub fn status_file(&self) -> Result<StatusFile> {
        let (plan, sum, stats) = (&self.plan, self.summary(), self.stats());
        let mut ds = serde_json::to_value(&plan.dataset)?;
        ds["metadata"]["namespace"] = plan.namespace.clone().into();
        ds["metadata"]["creationTimestamp"] = self.created.clone().into();
        ds["status"] = serde_json::to_value(status::dataset_status("Bound", &sum, &stats, (&plan.name, &plan.namespace, plan.runtime_kind)))?;
        let mut rtv = plan.runtime.to_value()?;
        rtv["metadata"]["namespace"] = plan.namespace.clone().into();
        rtv["metadata"]["creationTimestamp"] = self.created.clone().into();
        let replicas = self.replicas.load(std::sync::atomic::Ordering::Relaxed);
        rtv["spec"]["replicas"] = replicas.into();
        let mut rs = status::runtime_status(replicas, self.registry.live().len() as u32, &stats);
        let (desired, ready) = (self.plan.masters.max(1), self.masters_ready.load(std::sync::atomic::Ordering::Relaxed).max(1));
        rs.desired_master_number_scheduled = desired as i32;
        rs.master_number_ready = ready.min(desired) as i32;
        // Fluid's phases: all masters up, a quorum up (it serves), or not even a quorum.
        rs.master_phase = match ready {
            r if r >= desired => "Ready",
            r if r > desired / 2 => "PartialReady",
            _ => "NotReady",
        }
        .into();
        rtv["status"] = serde_json::to_value(rs)?;
        // Not Fluid's: what `cistern get runtime` shows of the masters (ready/desired, leader).
        rtv["status"]["masters"] = format!("{}/{desired}", ready.min(desired)).into();
        rtv["status"]["leader"] = match &self.quorum {
            Some(q) => q.view().leader.map_or("none".to_string(), |l| format!("master-{l}")),
            None => "master".to_string(),
        }
        .into();
        Ok(StatusFile {
            pid: std::process::id(),
            mountpoint: self.mountpoint.clone(),
            web: self.web.get().cloned(),
            dataset: ds,
            runtime: rtv,
            masters: self.quorum.as_ref().map(|q| {
                let view = q.view();
                crate::rundir::MastersStatus { desired: self.plan.masters, ready: self.masters_ready.load(std::sync::atomic::Ordering::Relaxed), leader: view.leader, term: view.term, written_by: q.id }
            }),
        })
    }
}

impl WebSource for Served {
    fn refresh(&self) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(self.registry.poll())
    }

    fn figures(&self) -> Figures {
        let (total, files) = match self.summary() {
            Summary::Done(s) => (Some(s.total_bytes), Some(s.files)),
            _ => (None, None),
        };
        let stats = self.stats();
        let mut levels = Vec::new();
        let (mut latencies, mut processes) = (Vec::new(), Vec::new());
        let latency = |component: &str, instance: &str, l: cistern_rpc::pb::Latency| LatencyFigures {
            component: component.into(),
            instance: instance.into(),
            op: l.op,
            buckets: l.buckets,
            sum_seconds: l.sum_seconds,
        };
        let process = |component: &str, instance: &str, p: cistern_rpc::pb::ProcessFigures| ProcessFigures {
            component: component.into(),
            instance: instance.into(),
            cpu_seconds: p.cpu_seconds,
            resident_bytes: p.resident_bytes,
            open_fds: p.open_fds,
        };
        for r in self.registry.fuse_reports() {
            let instance = format!("{}/{}", r.node, r.pid);
            latencies.extend(r.fuse_latency.into_iter().map(|l| latency("fuse", &instance, l)));
            processes.extend(r.process.map(|p| process("fuse", &instance, p)));
        }
        let (mut fetches, mut fetched, mut corrupt, mut short_circuit, mut cache_errors, mut peer) = (0, 0, 0, 0, 0, 0);
        for (id, f) in self.registry.last_figures() {
            peer += f.peer_fetched_bytes;
            cache_errors += f.cache_errors;
            short_circuit += f.short_circuit_bytes;
            fetches += f.ufs_fetches;
            fetched += f.ufs_fetched_bytes;
            corrupt += f.corrupt_blocks;
            let instance = id.to_string();
            // Reports are validated at the boundary: the worker's figures too.
            latencies.extend(cistern_rpc::latency::validated(f.ufs_latency).into_iter().map(|l| latency("worker", &instance, l)));
            processes.extend(f.process.map(|p| process("worker", &instance, p)));
            for l in f.levels {
                levels.push(LevelFigures {
                    worker: id as usize,
                    medium: l.medium,
                    used_bytes: l.used_bytes,
                    quota_bytes: l.quota_bytes,
                    evicted_bytes: l.evicted_bytes,
                    demoted_bytes: l.demoted_bytes,
                    on_disk_bytes: l.on_disk_bytes,
                });
            }
        }
        Figures {
            namespace: self.plan.namespace.clone(),
            dataset: self.plan.name.clone(),
            ufs_total_bytes: total,
            ufs_files: files,
            cached_bytes: stats.cached,
            capacity_bytes: stats.capacity,
            local_bytes: stats.local_bytes,
            remote_bytes: stats.remote_bytes,
            ufs_bytes: stats.ufs_bytes,
            ufs_fetches: fetches,
            ufs_fetched_bytes: fetched,
            corrupt_blocks: corrupt,
            short_circuit_bytes: short_circuit,
            cache_errors,
            peer_fetched_bytes: peer,
            levels,
            latencies,
            processes,
        }
    }

    fn status(&self) -> serde_json::Value {
        match self.status_file() {
            Ok(sf) => serde_json::json!({"dataset": sf.dataset, "runtime": sf.runtime, "mountpoint": sf.mountpoint}),
            Err(e) => serde_json::json!({"error": e.to_string()}),
        }
    }

    fn workers(&self) -> serde_json::Value {
        let workers: Vec<_> = self
            .registry
            .entries()
            .into_iter()
            .map(|(w, since)| {
                let f = w.figures.unwrap_or_default();
                let levels: Vec<_> = f
                    .levels
                    .iter()
                    .map(|l| serde_json::json!({"medium": l.medium, "used_bytes": l.used_bytes, "quota_bytes": l.quota_bytes, "on_disk_bytes": l.on_disk_bytes}))
                    .collect();
                serde_json::json!({
                    "id": w.id,
                    "address": w.address,
                    "node": w.node,
                    "live": since < cistern_master::rpc::WORKER_TIMEOUT,
                    "lastHeartbeatSeconds": since.as_secs_f64(),
                    "logLevel": w.log_level,
                    "figures": {
                        "cached_bytes": f.cached_bytes,
                        "capacity_bytes": f.capacity_bytes,
                        "local_bytes": f.local_bytes,
                        "remote_bytes": f.remote_bytes,
                        "ufs_bytes": f.ufs_bytes,
                        "ufs_fetches": f.ufs_fetches,
                        "levels": levels,
                    },
                })
            })
            .collect();
        serde_json::Value::Array(workers)
    }

    fn browse(&self, path: String) -> futures::future::BoxFuture<'_, Result<serde_json::Value, (axum::http::StatusCode, String)>> {
        Box::pin(async move {
            use axum::http::StatusCode;
            match cistern_master::browse::browse(&self.ns, &self.refs, &self.registry, &path).await {
                Ok(listing) => Ok(serde_json::to_value(listing).unwrap_or_default()),
                Err(e) if e.errno == cistern_rpc::Errno::NotFound => Err((StatusCode::NOT_FOUND, e.message)),
                Err(e) if matches!(e.errno, cistern_rpc::Errno::InvalidArgument | cistern_rpc::Errno::NotADirectory) => Err((StatusCode::BAD_REQUEST, e.message)),
                Err(e) => Err((StatusCode::BAD_GATEWAY, e.message)),
            }
        })
    }

    fn dataloads(&self) -> futures::future::BoxFuture<'_, serde_json::Value> {
        Box::pin(async move {
            let mut out = Vec::new();
            for dl in self.dataload_files() {
                let targets: Vec<String> = dl["spec"]["target"].as_array().into_iter().flatten().filter_map(|t| t["path"].as_str().map(str::to_string)).collect();
                let targets = if targets.is_empty() { vec!["/".to_string()] } else { targets };
                let (mut size, mut cached) = (0u64, 0u64);
                for t in targets.iter().take(16) {
                    if let Ok(e) = cistern_master::browse::usage(&self.ns, &self.refs, &self.registry, t).await {
                        size += e.size;
                        cached += e.cached;
                    }
                }
                out.push(serde_json::json!({
                    "name": dl["metadata"]["name"],
                    "phase": dl["status"]["phase"],
                    "duration": dl["status"]["duration"],
                    "targets": targets,
                    "size": size,
                    "cached": cached,
                }));
            }
            serde_json::Value::Array(out)
        })
    }

    fn log_level(&self) -> String {
        let l = &self.log_levels;
        let or_own = |v: String| if v.is_empty() { "(as started)".to_string() } else { v };
        let mut out = format!("master: {}\nworkers: {}\nfuse: {}", l.master(), or_own(l.workers()), or_own(l.fuse()));
        for w in self.registry.live() {
            out += &format!("\nworker {} ({}): {}", w.id, if w.node.is_empty() { "?" } else { &w.node }, w.log_level);
        }
        for r in self.registry.fuse_reports() {
            out += &format!("\nfuse {}/{}: {}", r.node, r.pid, if r.log_level.is_empty() { "?" } else { &r.log_level });
        }
        out
    }

    fn set_log_level(&self, target: &str, filter: &str) -> Result<(), String> {
        self.log_levels.set(target, filter)
    }
}
