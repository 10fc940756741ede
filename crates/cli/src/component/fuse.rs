//! `cistern fuse`: the FUSE client of a Dataset. Metadata comes from the master, data from the
//! workers the master lists; both are retried across their restarts, so a reader only waits.

use super::{default_run_dir, fsname, master::SYNC_TTL, master_socket, DatasetArgs};
use crate::mountpoint::prepare_mountpoint;
use anyhow::{anyhow, Context, Result};
use cistern_client::Client;
use cistern_fuse::{CisternFs, FuseMount};
use cistern_rpc::Address;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct FuseArgs {
    #[command(flatten)]
    pub dataset: DatasetArgs,
    /// Where to mount [default: <mount-root>/<namespace>/<name>].
    #[arg(long)]
    pub mountpoint: Option<PathBuf>,
    #[arg(long, default_value = "/mnt/cistern", env = "CISTERN_MOUNT_ROOT")]
    pub mount_root: PathBuf,
    /// Where the master's socket is when --master is not given [default: /run/cistern/<ns>-<name>].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// The master: `unix:/path.sock` or `HOST:PORT` [default: unix:<run-dir>/master.sock].
    #[arg(long)]
    pub master: Option<String>,
    /// Threads answering FUSE requests.
    #[arg(long, default_value_t = 8)]
    pub threads: usize,
}

/// How often the client asks the master which workers are live.
const WORKER_REFRESH: Duration = Duration::from_secs(2);

pub fn run(args: FuseArgs) -> Result<()> {
    let plan = args.dataset.plan()?;
    let run_dir = args.run_dir.clone().unwrap_or_else(|| default_run_dir(&plan));
    let master = match &args.master {
        Some(a) => Address::parse(a).map_err(|e| anyhow!("--master {e}"))?,
        None => Address::Unix(master_socket(&run_dir)),
    };
    let mountpoint = args.mountpoint.clone().unwrap_or_else(|| args.mount_root.join(&plan.namespace).join(&plan.name));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(4).build()?;
    // Channels spawn their connection tasks on the runtime they are made in.
    let client = Arc::new(rt.block_on(async { Client::remote(&master) }));
    // Mount only once the data can be read: the master answers and lists a worker.
    rt.block_on(async {
        loop {
            match client.refresh_workers().await {
                Ok(n) if n > 0 => return Ok(()),
                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => return Err(anyhow!("the master at {master} is unreachable: {}", e.message)),
            }
        }
    })?;
    let refresher = {
        let client = client.clone();
        rt.spawn(async move {
            let mut tick = tokio::time::interval(WORKER_REFRESH);
            loop {
                tick.tick().await;
                if let Err(e) = client.refresh_workers().await {
                    tracing::debug!("worker list: {}", e.message);
                }
            }
        })
    };
    let created = prepare_mountpoint(&mountpoint, &fsname(&plan))?;
    let ttl = if plan.auto_sync { SYNC_TTL } else { Duration::from_secs(3600) };
    let fs = CisternFs::new(client, rt.handle().clone(), ttl);
    let mount = FuseMount::mount(&mountpoint, &fsname(&plan), fs, args.threads)
        .with_context(|| format!("cannot mount {}", mountpoint.display()))?;
    tracing::info!("mounted {} (master {master})", mountpoint.display());
    rt.block_on(super::stop_requested());
    refresher.abort();
    tracing::info!("unmounting {}", mountpoint.display());
    let result = mount.unmount().with_context(|| format!("cannot unmount {}", mountpoint.display()));
    if created {
        let _ = std::fs::remove_dir(&mountpoint);
    }
    rt.shutdown_timeout(Duration::from_secs(2));
    result
}
