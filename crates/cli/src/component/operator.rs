//! `cistern operator`: the Dataset and runtime controllers, run in the cluster (the Helm
//! chart's Deployment) or against the current kubeconfig.

use anyhow::{Context, Result};
use cistern_operator::RenderOptions;

#[derive(clap::Args, Debug)]
pub struct OperatorArgs {
    /// The image the runtime's pods run (the one that holds `cistern`).
    #[arg(long)]
    pub image: Option<String>,
    /// Where FUSE clients mount Datasets on the nodes.
    #[arg(long, default_value = "/runtime-mnt/cistern")]
    pub mount_root: String,
    /// Node directories a Runtime's hostPaths (tiers, meta-dir, volumes) may lie under,
    /// comma-separated; anything else is refused (the chart's allowedHostPaths).
    #[arg(long, value_delimiter = ',', default_values_t = cistern_operator::render::DEFAULT_ALLOWED_HOST_PATHS.iter().map(|s| s.to_string()).collect::<Vec<_>>())]
    pub allowed_host_paths: Vec<String>,
    /// Node ports for host-network Datasets, three each: LOW-HIGH (Fluid's
    /// --runtime-node-port-range).
    #[arg(long, default_value = "20000-26000")]
    pub host_port_range: String,
    /// The operator's own namespace: its Lease lives there, and each Dataset's NetworkPolicy
    /// lets the operator's pods there read the master's web port.
    #[arg(long, env = "POD_NAMESPACE", default_value = cistern_operator::render::DEFAULT_OPERATOR_NAMESPACE)]
    pub namespace: String,
    /// This replica's name in the Lease and in Events (the pod's name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Reconcile without holding the Lease (only ever with one replica).
    #[arg(long)]
    pub no_leader_election: bool,
    /// The namespace whose pods (Prometheus) may scrape the masters' web port through each
    /// Dataset's NetworkPolicy (the chart's `monitoring.prometheusNamespace`).
    #[arg(long)]
    pub metrics_namespace: Option<String>,
    /// A file of `<namespace>/<name> <url>` lines: where a Dataset's master web port answers,
    /// for an operator outside the cluster's network (tests on kwok nodes).
    #[arg(long)]
    pub master_web_map: Option<std::path::PathBuf>,
}

pub fn run(args: OperatorArgs) -> Result<()> {
    let allowed_host_paths = args.allowed_host_paths.iter().filter(|p| !p.is_empty()).map(std::path::PathBuf::from).collect::<Vec<_>>();
    if let Some(p) = allowed_host_paths.iter().find(|p| !p.is_absolute()) {
        anyhow::bail!("--allowed-host-paths: `{}` is not an absolute path", p.display());
    }
    cistern_api::names::check_label("--namespace", &args.namespace).map_err(anyhow::Error::msg)?;
    let host_port_range = cistern_operator::host_ports::parse_range(&args.host_port_range).map_err(|e| anyhow::anyhow!("--host-port-range: {e}"))?;
    if let Some(ns) = &args.metrics_namespace {
        cistern_api::names::check_label("--metrics-namespace", ns).map_err(anyhow::Error::msg)?;
    }
    let mut opts = RenderOptions {
        mount_root: args.mount_root,
        allowed_host_paths,
        operator_namespace: args.namespace.clone(),
        host_port_range,
        metrics_namespace: args.metrics_namespace.clone().filter(|n| !n.is_empty()),
        ..Default::default()
    };
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "operator".into());
        format!("{host}-{}", std::process::id())
    });
    let settings = cistern_operator::RunSettings {
        leader_election: (!args.no_leader_election).then(|| cistern_operator::leader::LeaderElection { namespace: args.namespace.clone(), identity: identity.clone() }),
        master_web_map: args.master_web_map.clone(),
        instance: Some(identity),
    };
    if let Some(image) = args.image {
        opts.image = image;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(2).build()?;
    rt.block_on(async {
        let client = kube::Client::try_default()
            .await
            .context("cannot reach the Kubernetes API (in a pod: its service account; elsewhere: KUBECONFIG or ~/.kube/config)")?;
        tracing::info!("operator running: Datasets, JindoRuntimes, AlluxioRuntimes, JuiceFSRuntimes");
        tokio::select! {
            r = cistern_operator::run(client, opts, settings) => r.map_err(anyhow::Error::msg),
            _ = super::stop_requested() => Ok(()),
        }
    })
}
