//! `cistern render -f dataset.yaml`: prints, without a cluster, the objects the operator would
//! create for each Dataset in the file (like `helm template`), for review and for tests, and
//! the loader Job of each DataLoad in it.

use anyhow::{anyhow, Result};
use cistern_api::{Manifest, SecretStore};
use cistern_operator::RenderOptions;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct RenderArgs {
    /// The YAML file with Datasets and their runtimes (`-` for stdin).
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// Only this Dataset.
    #[arg(long)]
    pub name: Option<String>,
    /// The image that holds the `cistern` binary.
    #[arg(long)]
    pub image: Option<String>,
    /// Node directories hostPaths may lie under, comma-separated, as the operator's
    /// --allowed-host-paths [default: the chart's allowedHostPaths].
    #[arg(long, value_delimiter = ',')]
    pub allowed_host_paths: Option<Vec<std::path::PathBuf>>,
}

pub fn run(args: RenderArgs) -> Result<()> {
    let mut manifest = Manifest::from_path(&args.file)?;
    // Secrets live in the cluster; pods mount them by name, so values are not needed here.
    manifest.secrets = SecretStore::references_only();
    let mut opts = RenderOptions::default();
    if let Some(image) = args.image {
        opts.image = image;
    }
    if let Some(paths) = args.allowed_host_paths {
        opts.allowed_host_paths = paths;
    }
    let names: Vec<String> = match &args.name {
        Some(n) => vec![n.clone()],
        None => manifest.datasets.iter().filter_map(|d| d.metadata.name.clone()).collect(),
    };
    if names.is_empty() {
        return Err(anyhow!("{}: no Dataset to render", args.file.display()));
    }
    let mut out = String::new();
    for name in names {
        let plan = manifest.plan(Some(&name)).map_err(|e| anyhow!("{}: {e}", args.file.display()))?;
        if let Some(vol) = cistern_api::juicefs::JuiceFsVolume::from_plan(&plan, Some(&plan.meta_dir)).map_err(|e| anyhow!(e))?.filter(|v| v.meta_defaulted) {
            eprintln!(
                "warning: {}: no `metaurl`: each node's JuiceFS client gets its own SQLite metadata under {}, so nodes do not share one volume; set encryptOptions `metaurl` to a shared engine (redis://, mysql://, tikv://)",
                vol.field,
                plan.meta_dir.display()
            );
        }
        for field in cistern_operator::pod_shape::unhonoured(&plan) {
            eprintln!("warning: {name}: {field}");
        }
        let mut objects = cistern_operator::render(&plan, &opts).map_err(|e| anyhow!("rendering {name}: {e}"))?;
        if !plan.mounts.iter().any(|m| m.scheme == cistern_api::Scheme::JuiceFs) {
            // What the operator makes once: fresh keys at every render (apply it once).
            let s = cistern_operator::credentials::secret(&plan.namespace, &plan.name, None).map_err(|e| anyhow!(e))?;
            objects.insert(0, s.into());
        }
        for dl in manifest.dataloads.iter().filter(|dl| dl.spec.dataset.name == name) {
            for field in cistern_operator::dataload_policy::unapplied(dl, &plan.runtime) {
                eprintln!("warning: {}: {field}", dl.metadata.name.as_deref().unwrap_or_default());
            }
            let mut job = cistern_operator::dataload::loader_job(dl, &plan.runtime, &opts);
            cistern_operator::dataload_policy::place(&mut job.spec.get_or_insert_with(Default::default).template, dl);
            objects.push(match cistern_operator::dataload_policy::policy(dl).map_err(|e| anyhow!("DataLoad {}: {e}", dl.metadata.name.as_deref().unwrap_or_default()))? {
                cistern_operator::dataload_policy::Policy::Cron => cistern_operator::dataload_policy::cron_job(job, &dl.spec.schedule).into(),
                cistern_operator::dataload_policy::Policy::Once | cistern_operator::dataload_policy::Policy::OnEvent => job.into(),
            });
        }
        out.push_str(&cistern_operator::to_yaml(&objects).map_err(|e| anyhow!(e))?);
    }
    print!("{out}");
    Ok(())
}
