//! `cistern`: the one binary. `up` runs a Dataset on this machine (the embedded mode); `get`
//! shows what runs; `crd` prints the CustomResourceDefinitions.

mod component;
mod credentials;
mod format;
mod get;
mod juicefs;
mod load;
mod logging;
mod loglevel;
mod quorum;
mod mountpoint;
mod render;
mod run_as;
mod rundir;
mod served;
mod status;
mod supervise;
mod up;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "cistern", version, about = "Brings far-away datasets next to the compute (Fluid-compatible)")]
struct Cli {
    /// Log filter (also RUST_LOG): error, warn, info, debug, trace.
    #[arg(long, global = true, default_value = "warn", env = "CISTERN_LOG")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve a Dataset on this machine: master, workers and a FUSE mount, until Ctrl-C.
    Up(up::UpArgs),
    /// Run a Dataset's master: namespace, mount table, worker registry, web port.
    Master(component::master::MasterArgs),
    /// Run one worker of a Dataset: the cache on this node.
    Worker(component::worker::WorkerArgs),
    /// Mount a Dataset with FUSE, reading through its master and workers.
    Fuse(component::fuse::FuseArgs),
    /// Run the Kubernetes operator: Dataset and runtime controllers.
    Operator(component::operator::OperatorArgs),
    /// Run the CSI node plugin (fuse.csi.fluid.io) that stages and publishes Dataset PVCs.
    Csi(component::csi::CsiArgs),
    /// Run the mutating admission webhook: pods that use a Dataset go near its cache.
    Webhook(component::webhook::WebhookArgs),
    /// Show the Datasets or runtimes that `cistern up` serves on this machine.
    Get(get::GetArgs),
    /// Prefetch a Dataset (or some paths, or a DataLoad's targets) into the cache.
    Load(load::LoadArgs),
    /// Print the CustomResourceDefinitions (data.fluid.io/v1alpha1) as YAML.
    Crd,
    /// Print the Kubernetes objects the operator would create for a Dataset (no cluster needed).
    Render(render::RenderArgs),
    /// Show or change the masters' Raft quorum (spec.master.replicas > 1).
    Quorum(quorum::QuorumArgs),
    /// Wipe a master's metadata store (Alluxio's formatJournal); it is reloaded from the UFS.
    Format(format::FormatArgs),
    /// Change the log level of a running Dataset's master, workers or FUSE clients (Alluxio's logLevel).
    #[command(name = "loglevel")]
    LogLevel(loglevel::LogLevelArgs),
}

/// Where `up` publishes what it serves (shared by `up` and `get`).
#[derive(clap::Args, Debug)]
pub struct RunRootArg {
    #[arg(long, default_value = rundir::DEFAULT_RUN_ROOT, env = "CISTERN_RUN_ROOT")]
    pub run_root: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(&cli.log_level);
    let result = match cli.command {
        Command::Up(a) => up::run(a, &cli.log_level),
        Command::Master(a) => component::master::run(a),
        Command::Worker(a) => component::worker::run(a),
        Command::Fuse(a) => component::fuse::run(a, &cli.log_level),
        Command::Csi(a) => component::csi::run(a),
        Command::Webhook(a) => component::webhook::run(a),
        Command::Operator(a) => component::operator::run(a),
        Command::Get(a) => get::run(a),
        Command::Load(a) => load::run(a),
        Command::Crd => crd(),
        Command::Render(a) => render::run(a),
        Command::Format(a) => format::run(a),
        Command::LogLevel(a) => loglevel::run(a),
        Command::Quorum(a) => quorum::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the outermost context, then its causes.
            let msg = e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ");
            eprintln!("error: {}", logging::scrub(&msg));
            ExitCode::FAILURE
        }
    }
}

fn crd() -> anyhow::Result<()> {
    for c in cistern_api::crds::crds() {
        print!("---\n{}", serde_saphyr::to_string(&c)?);
    }
    Ok(())
}
