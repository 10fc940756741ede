//! `cistern worker`: one worker of a Dataset, the cache on this node, read through from the
//! UFS, served over gRPC and reported to the master by heartbeat.

use super::{default_run_dir, open_mounts, worker_levels, worker_socket, DatasetArgs};
use anyhow::{anyhow, Context, Result};
use cistern_rpc::Address;
use cistern_worker::rpc::{heartbeat, WorkerService};
use cistern_worker::{ReadOptions, Worker};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub dataset: DatasetArgs,
    /// Which worker of the runtime's `replicas` this is (0-based, like a StatefulSet ordinal).
    #[arg(long, default_value_t = 0, env = "CISTERN_WORKER_INDEX")]
    pub index: usize,
    /// Where the sockets are when not given [default: /run/cistern/<ns>-<name>].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// The master: `unix:/path.sock` or `HOST:PORT` [default: unix:<run-dir>/master.sock].
    #[arg(long)]
    pub master: Option<String>,
    /// Address for clients [default: unix:<run-dir>/worker-<index>.sock].
    #[arg(long)]
    pub listen: Option<String>,
    /// The address reported to the master, when clients reach this worker by another name
    /// than --listen (a pod IP for 0.0.0.0:PORT).
    #[arg(long)]
    pub advertise: Option<String>,
    /// On the way out of the runtime (scale-in: this worker's index is no longer below the
    /// master's `replicas`), how long to spend handing recently used files to their new
    /// owners; keep it under the pod's termination grace period.
    #[arg(long, default_value = "20s", value_parser = humantime_secs)]
    pub drain_timeout: Duration,
    #[command(flatten)]
    pub credentials: crate::credentials::CredentialsArgs,
}

fn humantime_secs(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let n = t.strip_suffix('s').unwrap_or(t);
    n.parse::<u64>().map(Duration::from_secs).map_err(|_| format!("`{text}`: expected seconds, e.g. 20s"))
}

/// How many recently used files a leaving worker offers to their new owners.
const HAND_OFF_FILES: usize = 4096;

/// How often a worker reports to the master.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How often a worker asks the master for its peers.
const PEER_REFRESH: Duration = Duration::from_secs(2);

pub fn run(args: WorkerArgs) -> Result<()> {
    let plan = args.dataset.plan()?;
    if args.index >= plan.replicas as usize {
        anyhow::bail!("--index {}: the runtime has spec.replicas {} (indexes 0..{})", args.index, plan.replicas, plan.replicas);
    }
    let run_dir = args.run_dir.clone().unwrap_or_else(|| default_run_dir(&plan));
    let masters = super::master_addresses(args.master.as_deref(), &plan, &run_dir)?;
    let master = cistern_rpc::masters::join(&masters);
    let listen = match &args.listen {
        Some(a) => Address::parse(a).map_err(|e| anyhow!("--listen {e}"))?,
        None => Address::Unix(worker_socket(&run_dir, args.index)),
    };
    crate::rundir::create_private_dir(&run_dir)?;
    let refs = crate::credentials::load_ref_key(&args.credentials.dir(&run_dir))?;
    crate::credentials::install_tls(&args.credentials.dir(&run_dir), cistern_rpc::tls::Role::Worker)?;
    let levels = worker_levels(&plan, args.index);
    let worker = Worker::open(args.index, &levels, ReadOptions::default()).with_context(|| {
        let dirs: Vec<String> = levels.iter().flat_map(|l| l.dirs.iter().map(|d| d.0.display().to_string())).collect();
        format!("spec.tieredstore.levels: cannot use {} for the cache", dirs.join(", "))
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(4).build()?;
    let result = rt.block_on(async {
        // Not probed: a worker serves what it has cached even while the UFS is away.
        let mounts = open_mounts(&plan, false, true).await?.into_iter().map(|(ufs, _)| ufs).collect();
        let (incoming, bound) = listen.bind().await.with_context(|| format!("cannot listen on {listen}"))?;
        let advertise = args.advertise.clone().unwrap_or_else(|| bound.to_string());
        let master_client = cistern_rpc::MasterSet::new(&masters).map_err(|e| anyhow!("--master {master}: {e}"))?;
        // Every master hears the heartbeat: any of them answers clients with the live workers.
        for (_, client) in master_client.all() {
            tokio::spawn(heartbeat(client, worker.clone(), advertise.clone(), cistern_rpc::node_name(), HEARTBEAT, Some(crate::logging::CONTROL)));
        }
        // The other workers, from the master's list: asked before the UFS on a miss.
        let peers = std::sync::Arc::new(cistern_worker::peers::GrpcPeers::new(worker.identity, cistern_rpc::node_name()));
        worker.set_peers(peers.clone());
        tokio::spawn(peers.clone().follow(master_client.clone(), PEER_REFRESH, Some(crate::logging::CONTROL)));
        tracing::info!(worker = args.index, identity = format_args!("{:016x}", worker.identity), "worker serving on {advertise}, master {master}");
        // Readers on this node get cache files as descriptors through this socket, beside
        // the run directory's others (on Kubernetes, the hostPath the FUSE pod shares).
        let fd_socket = cistern_rpc::descriptors::socket_path(&run_dir, args.index as u32);
        cistern_worker::descriptors::serve(&fd_socket, worker.clone(), refs.clone())
            .with_context(|| format!("cannot listen on {}", fd_socket.display()))?;
        let service = WorkerService { worker: worker.clone(), mounts, refs };
        let grpc = incoming.server().map_err(|e| anyhow!("--listen {listen}: {e}"))?.add_service(service.into_server());
        // Serving goes on while a leaving worker hands its files over: the new owners read
        // them from here.
        let (index, drain_timeout, w) = (args.index as u32, args.drain_timeout, worker.clone());
        let shutdown = async move {
            super::stop_requested().await;
            hand_off_if_leaving(master_client, peers, w, index, drain_timeout).await;
        };
        incoming.serve(grpc, shutdown).await.context("worker RPC server")
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    // MEM levels do not outlive the worker: they hold RAM (see the README).
    for level in worker.tiers().map(|t| t.levels()).unwrap_or_default().iter().filter(|l| l.medium == "MEM") {
        for store in level.stores() {
            let _ = std::fs::remove_dir_all(store.dir());
            if let Some(parent) = store.dir().parent() {
                let _ = std::fs::remove_dir(parent); // only if no other worker left files there
            }
        }
    }
    result
}

/// On SIGTERM: when this worker is leaving the runtime (its index is no longer below the
/// master's `replicas`), hands its recently used files to their new owners; otherwise (a
/// restart, which keeps the cache and its identity) nothing.
async fn hand_off_if_leaving(
    master: cistern_rpc::MasterSet,
    peers: std::sync::Arc<cistern_worker::peers::GrpcPeers>,
    worker: std::sync::Arc<Worker>,
    index: u32,
    deadline: Duration,
) {
    let cluster = match tokio::time::timeout(Duration::from_secs(2), master.call(|mut m| async move { m.cluster(cistern_rpc::pb::ClusterRequest::default()).await })).await {
        Ok(Ok(c)) => c.into_inner(),
        _ => {
            tracing::warn!("stopping without a hand-off: the master did not answer");
            return;
        }
    };
    if index < cluster.replicas {
        tracing::info!(worker = index, replicas = cluster.replicas, "stopping; still part of the runtime, so the cache stays for the restart");
        return;
    }
    peers.update(&cluster);
    let files = worker.recent_files.most_recent(HAND_OFF_FILES);
    let offered = files.len();
    let started = std::time::Instant::now();
    let (handed, bytes) = peers.hand_off(files, deadline).await;
    tracing::info!(worker = index, offered, handed, bytes, took_ms = started.elapsed().as_millis() as u64, "left the runtime; recently used files handed to their new owners");
}
