//! `cistern get dataset|runtime`: what `up` serves on this machine, as `kubectl get` prints it.

use crate::rundir::discover;
use crate::status;
use anyhow::{bail, Result};

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// `dataset` (`datasets`) or `runtime` (`runtimes`, or a kind: jindoruntime, alluxioruntime, juicefsruntime).
    pub resource: String,
    /// Show only this one.
    pub name: Option<String>,
    /// Output: wide, json or yaml.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Show only this namespace.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub run: crate::RunRootArg,
}

pub fn run(args: GetArgs) -> Result<()> {
    let datasets = match args.resource.to_lowercase().as_str() {
        "dataset" | "datasets" => true,
        "runtime" | "runtimes" | "jindoruntime" | "jindo" | "alluxioruntime" | "alluxio" | "juicefsruntime" | "juicefs" => false,
        other => bail!("unknown resource `{other}`: use `dataset` or `runtime`"),
    };
    let mut objs: Vec<serde_json::Value> = discover(&args.run.run_root)
        .into_iter()
        .map(|s| if datasets { s.dataset } else { s.runtime })
        .filter(|o| args.namespace.as_deref().is_none_or(|n| o["metadata"]["namespace"] == n))
        .filter(|o| args.name.as_deref().is_none_or(|n| o["metadata"]["name"] == n))
        .collect();
    if !datasets && !matches!(args.resource.to_lowercase().as_str(), "runtime" | "runtimes") {
        let kind = args.resource.to_lowercase();
        objs.retain(|o| o["kind"].as_str().is_some_and(|k| k.to_lowercase().starts_with(kind.trim_end_matches("runtime"))));
    }
    if objs.is_empty() {
        match &args.name {
            Some(n) => bail!("{} `{n}` not found: no `cistern up` serves it on this machine", args.resource),
            None => {
                eprintln!("No resources found (no `cistern up` is running on this machine).");
                return Ok(());
            }
        }
    }
    let out = match args.output.as_deref() {
        None | Some("") => table(datasets, &objs, false),
        Some("wide") => table(datasets, &objs, true),
        Some("json") => {
            let v = if objs.len() == 1 { objs.remove(0) } else { list(objs) };
            format!("{}\n", serde_json::to_string_pretty(&v)?)
        }
        Some("yaml") => {
            let v = if objs.len() == 1 { objs.remove(0) } else { list(objs) };
            serde_saphyr::to_string(&v)?
        }
        Some(other) => bail!("-o {other}: unknown output format; use wide, json or yaml"),
    };
    print!("{out}");
    Ok(())
}

fn table(datasets: bool, objs: &[serde_json::Value], wide: bool) -> String {
    if datasets {
        status::dataset_table(objs, wide)
    } else {
        status::runtime_table(objs, wide)
    }
}

/// kubectl's `v1 List` around objects of several kinds.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct List {
    api_version: &'static str,
    kind: &'static str,
    items: Vec<serde_json::Value>,
}

fn list(items: Vec<serde_json::Value>) -> serde_json::Value {
    serde_json::to_value(List { api_version: "v1", kind: "List", items }).unwrap_or_default()
}
