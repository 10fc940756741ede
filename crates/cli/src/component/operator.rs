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
}

pub fn run(args: OperatorArgs) -> Result<()> {
    let allowed_host_paths = args.allowed_host_paths.iter().filter(|p| !p.is_empty()).map(std::path::PathBuf::from).collect::<Vec<_>>();
    if let Some(p) = allowed_host_paths.iter().find(|p| !p.is_absolute()) {
        anyhow::bail!("--allowed-host-paths: `{}` is not an absolute path", p.display());
    }
    let mut opts = RenderOptions { mount_root: args.mount_root, allowed_host_paths, ..Default::default() };
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
            _ = cistern_operator::run(client, opts) => Ok(()),
            _ = super::stop_requested() => Ok(()),
        }
    })
}
