//! `cistern csi`: the CSI node plugin (`fuse.csi.fluid.io`) that the kubelet calls to stage a
//! Dataset's PVC on a node and bind it into pods; see the `cistern-csi` crate.

use anyhow::{anyhow, Context, Result};
use cistern_csi::state::StateDir;
use cistern_csi::{NodeService, RecordedLabels};
use cistern_rpc::Address;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct CsiArgs {
    /// Where the kubelet reaches the plugin.
    #[arg(long, env = "CSI_ENDPOINT", default_value = "unix:///var/lib/kubelet/plugins/fuse.csi.fluid.io/csi.sock")]
    pub endpoint: String,
    /// This node's name, as the kubelet and the Node object know it [default: NODE_NAME, else the host name].
    #[arg(long)]
    pub node_id: Option<String>,
    /// Where staged and published volumes are recorded (survives plugin restarts).
    #[arg(long, default_value = "/var/lib/cistern/csi")]
    pub state_dir: PathBuf,
    /// How long NodeStageVolume waits for the FUSE mount before failing (the kubelet retries).
    #[arg(long, default_value_t = 60)]
    pub stage_timeout_secs: u64,
    /// How often publish targets are checked and re-bound to a replaced FUSE mount.
    #[arg(long, default_value_t = 5)]
    pub recover_period_secs: u64,
}

pub fn run(args: CsiArgs) -> Result<()> {
    let address = Address::parse(&args.endpoint).map_err(|e| anyhow!("--endpoint {e}"))?;
    let node_id = args.node_id.unwrap_or_else(cistern_rpc::node_name);
    let state = StateDir::open(&args.state_dir).with_context(|| format!("cannot use --state-dir {}", args.state_dir.display()))?;
    // Node labels are kept in this process until the operator's Kubernetes client lands
    // (issue 6); the FUSE DaemonSet then selects nodes by them.
    tracing::warn!("node labels are not written to the Kubernetes API yet; FUSE pods must be placed by other means");
    let labels = Arc::new(RecordedLabels::default());
    let node = Arc::new(NodeService::new(node_id, state, labels, Duration::from_secs(args.stage_timeout_secs)));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(2).build()?;
    rt.block_on(cistern_csi::serve(&address, node, Duration::from_secs(args.recover_period_secs.max(1)), super::stop_requested()))
        .with_context(|| format!("cannot serve on {address}"))
}
