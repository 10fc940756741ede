//! `cistern master`: the Dataset's namespace and mount table (persistent in
//! `namespace.meta-dir`), served over gRPC to the FUSE client and the workers; the registry
//! of workers; the web port (metrics, status, log level); and the status file in the run
//! directory.

use super::{default_run_dir, master_socket, namespace_stored, open_mounts, DatasetArgs};
use crate::served::Served;
use anyhow::{anyhow, Context, Result};
use cistern_master::rpc::{MasterService, WorkerRegistry};
use cistern_master::raft::{service::RaftService, RaftOptions, Replicated};
use cistern_master::{spawn_summary, Namespace, NsMount};
use cistern_rpc::Address;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

/// Alluxio's master web port, on loopback only.
pub const DEFAULT_WEB_ADDR: &str = "127.0.0.1:19999";

#[derive(clap::Args, Debug)]
pub struct MasterArgs {
    #[command(flatten)]
    pub dataset: DatasetArgs,
    /// Where the socket (unless --listen) and status.json go [default: /run/cistern/<ns>-<name>].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Address for workers and clients: `unix:/path.sock` or `HOST:PORT` [default: unix:<run-dir>/master.sock].
    #[arg(long)]
    pub listen: Option<String>,
    /// The web port: metrics, status and log level (`HOST:PORT`; port 0 picks a free one).
    #[arg(long, default_value = DEFAULT_WEB_ADDR, env = "CISTERN_WEB_ADDR")]
    pub web_addr: String,
    /// Where the FUSE client mounts the Dataset, for the status.
    #[arg(long)]
    pub mountpoint: Option<PathBuf>,
    /// This master's id among several (`spec.master.replicas` > 1): its ordinal, 0 to
    /// replicas-1 [default: the ordinal ending the host name (`...-master-2`), else 0].
    #[arg(long, env = "CISTERN_MASTER_ID")]
    pub id: Option<u64>,
    /// Every master's address, in id order, comma-separated (`spec.master.replicas` > 1)
    /// [default: unix:<run-dir>/master-N.sock for each].
    #[arg(long)]
    pub masters: Option<String>,
    /// The namespace store's directory [default: master.properties["namespace.meta-dir"]].
    #[arg(long)]
    pub meta_dir: Option<PathBuf>,
    #[command(flatten)]
    pub credentials: crate::credentials::CredentialsArgs,
}

pub fn run(args: MasterArgs) -> Result<()> {
    let mut plan = args.dataset.plan()?;
    if let Some(dir) = &args.meta_dir {
        plan.meta_dir = dir.clone();
    }
    let run_dir = args.run_dir.clone().unwrap_or_else(|| default_run_dir(&plan));
    crate::rundir::create_private_dir(&run_dir)?;
    let quorum = quorum_of(&args, &plan, &run_dir)?;
    let listen = match (&args.listen, &quorum) {
        (Some(a), _) => Address::parse(a).map_err(|e| anyhow!("--listen {e}"))?,
        (None, Some(q)) => Address::parse(&q.members[&q.id]).map_err(|e| anyhow!("--masters {e}"))?,
        (None, None) => Address::Unix(master_socket(&run_dir)),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(4).build()?;
    let result = rt.block_on(serve(args, plan, run_dir, listen, quorum));
    rt.shutdown_timeout(Duration::from_secs(2));
    result
}

/// This master's place among several, from `--id`, `--masters` and the runtime's
/// `master.replicas`; `None` for a single master.
fn quorum_of(args: &MasterArgs, plan: &cistern_api::DatasetPlan, run_dir: &std::path::Path) -> Result<Option<RaftOptions>> {
    let addresses: Vec<String> = match &args.masters {
        Some(list) => cistern_rpc::masters::parse_list(list).map_err(|e| anyhow!("--masters {e}"))?.iter().map(|a| a.to_string()).collect(),
        None if plan.masters > 1 => super::master_sockets(plan, run_dir).iter().map(|a| a.to_string()).collect(),
        None => return Ok(None),
    };
    if addresses.len() == 1 {
        return Ok(None);
    }
    let id = match args.id {
        Some(id) => id,
        None => hostname_ordinal().unwrap_or(0),
    };
    if id as usize >= addresses.len() {
        anyhow::bail!("--id {id}: there are {} masters (ids 0..{})", addresses.len(), addresses.len() - 1);
    }
    Ok(Some(RaftOptions {
        id,
        members: cistern_master::raft::members_from(&addresses),
        meta_dir: Some(plan.meta_dir.clone()),
        checkpoint_entries: plan.checkpoint_entries,
    }))
}

/// The ordinal a StatefulSet gives its pod in the host name (`dataset-master-2` → 2).
fn hostname_ordinal() -> Option<u64> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    name.trim().rsplit_once('-')?.1.parse().ok()
}

async fn serve(args: MasterArgs, plan: cistern_api::DatasetPlan, run_dir: PathBuf, listen: Address, quorum: Option<RaftOptions>) -> Result<()> {
    // A member of a quorum starts without the UFS too: it catches up from the others.
    let ufs = open_mounts(&plan, true, quorum.is_some() || namespace_stored(&plan)).await?;
    let reached: Vec<bool> = ufs.iter().map(|(_, r)| *r).collect();
    let mounts = ufs.into_iter().zip(&plan.mounts).map(|((ufs, _), m)| NsMount { ufs, path: m.path.clone() }).collect();
    let ttl = plan.auto_sync.then_some(plan.sync_interval);
    // The namespace and mount table persist in namespace.meta-dir (seeds 000 and 002).
    let ns = match quorum {
        // The quorum's mount table is the one in the store; a different one here is committed
        // by this master once it leads (crate cistern_master::raft).
        Some(_) => Namespace::open_replicated(&plan.meta_dir, mounts, ttl),
        None => Namespace::open(&plan.meta_dir, mounts, ttl),
    };
    let ns = Arc::new(ns.map_err(|e| anyhow!(e.message))?);
    for (i, _) in reached.iter().enumerate().filter(|(_, r)| !**r) {
        ns.mark_unreachable(i);
    }
    let credentials = args.credentials.dir(&run_dir);
    let refs = crate::credentials::ensure_ref_key(&credentials)?;
    crate::credentials::ensure_tls(&credentials)?;
    crate::credentials::install_tls(&credentials, cistern_rpc::tls::Role::Master)?;
    // Several masters: this one joins the quorum before it serves anything.
    let quorum = match quorum {
        Some(q) => {
            let id = q.id;
            let replicated = cistern_master::raft::start(ns.clone(), q).await.map_err(|e| anyhow!(e))?;
            tracing::info!(master = id, "member of a quorum of {} masters", plan.masters.max(2));
            Some(replicated)
        }
        None => None,
    };
    let summary = spawn_summary(ns.clone());
    let registry = Arc::new(WorkerRegistry::default());
    let replicas = Arc::new(std::sync::atomic::AtomicU32::new(plan.replicas));
    let log_levels = Arc::new(cistern_master::log_levels::LogLevels::new(Some(crate::logging::CONTROL)));
    let service = MasterService {
        ns: ns.clone(),
        registry: registry.clone(),
        summary: summary.clone(),
        replicas: replicas.clone(),
        data_replicas: plan.data_replicas,
        log_levels: log_levels.clone(),
        refs: refs.clone(),
    };
    tokio::spawn(follow_replicas(args.dataset.clone(), replicas.clone()));
    let (incoming, bound) = listen.bind().await.with_context(|| format!("cannot listen on {listen}"))?;
    let web = bind_web(&args.web_addr).await?;
    let created = jiff::Timestamp::try_from(SystemTime::now()).map(|t| t.to_string()).unwrap_or_default();
    let served = Arc::new(Served {
        plan,
        replicas,
        registry,
        summary,
        log_levels,
        created,
        mountpoint: args.mountpoint.clone().unwrap_or_default(),
        web: OnceLock::new(),
        ns,
        refs,
        run_dir: run_dir.clone(),
        quorum: quorum.clone(),
        masters_ready: std::sync::atomic::AtomicU32::new(1),
    });
    let _ = served.web.set(format!("http://{}", web.local_addr()?));
    tokio::spawn(cistern_master::web::serve(web, served.clone()));
    let publish = || {
        // With several masters the leader writes the status (the others would race it); with
        // no leader, whoever is left does, so the status says the masters are not ready.
        if served.quorum.as_ref().is_some_and(|q| q.view().leader.is_some_and(|l| l != q.id)) {
            return;
        }
        // Fresh worker figures are polled on the tick below; this writes what is known.
        if let Err(e) = served.status_file().and_then(|sf| crate::rundir::write_status(&run_dir, &sf)) {
            tracing::warn!(error = %e, "cannot write the status file");
        }
    };
    publish();
    tracing::info!("master serving on {bound}");
    let grpc = incoming.server().map_err(|e| anyhow!("--listen {listen}: {e}"))?.add_service(service.into_server());
    let grpc = grpc.add_optional_service(quorum.clone().map(|replicated| RaftService { replicated }.into_server()));
    let mut server = tokio::spawn(incoming.serve(grpc, super::stop_requested()));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut peer_clients = std::collections::HashMap::new();
    loop {
        tokio::select! {
            r = &mut server => {
                publish();
                return r.context("master RPC server")?.context("master RPC server");
            }
            _ = tick.tick() => {
                served.registry.poll().await;
                if let Some(q) = &served.quorum {
                    served.masters_ready.store(masters_answering(q, &mut peer_clients).await, std::sync::atomic::Ordering::Relaxed);
                }
                publish();
            }
        }
    }
}

/// The members of the quorum that answer within half a second, this one included.
async fn masters_answering(q: &Replicated, clients: &mut std::collections::HashMap<String, RaftClient>) -> u32 {
    let members = q.view().members;
    clients.retain(|addr, _| members.values().any(|(a, _)| a == addr));
    let asks: Vec<_> = members
        .into_iter()
        .filter(|(id, _)| *id != q.id)
        .filter_map(|(_, (addr, _))| {
            let client = match clients.get(&addr) {
                Some(c) => c.clone(),
                None => {
                    let c = cistern_master::raft::network::raft_client(&addr).ok()?;
                    clients.insert(addr, c.clone());
                    c
                }
            };
            Some(async move {
                let mut client = client;
                matches!(tokio::time::timeout(Duration::from_millis(500), client.quorum(cistern_rpc::pb::QuorumRequest::default())).await, Ok(Ok(_)))
            })
        })
        .collect();
    1 + futures::future::join_all(asks).await.into_iter().filter(|ok| *ok).count() as u32
}

type RaftClient = cistern_rpc::pb::master_raft_client::MasterRaftClient<tonic::transport::Channel>;

/// Binds the web port; when the default port is taken (another Dataset on this machine),
/// falls back to a free one and says so, since the URL is printed and written to the status.
async fn bind_web(addr: &str) -> Result<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && addr == DEFAULT_WEB_ADDR => {
            tracing::warn!("{addr} is in use; serving the web port on a free port instead");
            Ok(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        }
        Err(e) => Err(e).with_context(|| format!("--web-addr {addr}: cannot listen; choose another address or port")),
    }
}

/// How often the master re-reads its configuration for the desired number of workers.
const REPLICAS_RELOAD: Duration = Duration::from_secs(10);

/// Follows the runtime's `replicas` in the configuration file: on Kubernetes the operator
/// rewrites the mounted ConfigMap when the runtime is scaled (`kubectl scale`), and clients
/// learn the new desired set from the master at their next refresh. A file that cannot be read
/// or planned keeps the last good value (and says why).
async fn follow_replicas(dataset: super::DatasetArgs, replicas: Arc<std::sync::atomic::AtomicU32>) {
    if dataset.file.as_os_str() == "-" {
        return; // stdin is read once
    }
    loop {
        tokio::time::sleep(REPLICAS_RELOAD).await;
        let args = dataset.clone();
        let planned = tokio::task::spawn_blocking(move || args.plan()).await;
        match planned {
            Ok(Ok(plan)) => {
                let was = replicas.swap(plan.replicas, std::sync::atomic::Ordering::Relaxed);
                if was != plan.replicas {
                    tracing::info!(from = was, to = plan.replicas, "desired workers changed");
                }
            }
            Ok(Err(e)) => tracing::warn!("re-reading the configuration: {e}; keeping {} workers", replicas.load(std::sync::atomic::Ordering::Relaxed)),
            Err(e) => tracing::warn!("re-reading the configuration: {e}"),
        }
    }
}
