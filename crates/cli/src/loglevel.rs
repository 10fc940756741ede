//! `cistern loglevel [--target master|workers|fuse|all] LEVEL`: changes the log filter of a
//! running Dataset's components without a restart (Alluxio's `logLevel`). The master applies
//! its own at once; workers and FUSE clients take theirs from their next answer from the
//! master (within about 2 s). Over the components' own authenticated channel: the master's
//! socket on this node, or TCP with the Dataset's client certificate.

use anyhow::{anyhow, bail, Context, Result};
use cistern_rpc::pb::{self, master_client::MasterClient};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct LogLevelArgs {
    /// The filter: error, warn, info, debug, trace, or per module (warn,cistern_worker=debug).
    pub level: String,
    /// Whose: master, workers, fuse or all.
    #[arg(long, default_value = "all")]
    pub target: String,
    /// The Dataset's YAML: its master's socket is found in its run directory on this node.
    #[arg(short = 'f', long = "filename", required_unless_present = "master")]
    pub file: Option<PathBuf>,
    /// The Dataset in the file, when it declares several.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub run_root: crate::RunRootArg,
    /// The master(s) instead: `HOST:PORT` or `unix:/path.sock`, comma-separated for several.
    #[arg(long)]
    pub master: Option<String>,
    /// The Dataset's credentials (client certificate), for a master reached over TCP
    /// [default: beside a unix: master's socket].
    #[arg(long = "credentials", env = "CISTERN_CREDENTIALS")]
    pub credentials: Option<PathBuf>,
}

pub fn run(args: LogLevelArgs) -> Result<()> {
    let masters = crate::component::tool_masters(args.master.as_deref(), args.file.as_deref(), args.name.as_deref(), &args.run_root.run_root, args.credentials.clone())?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // Each master holds its own filters (and hands them to the workers and clients that ask
    // it): with several masters, every one is set.
    let mut answered = None;
    let mut failures = Vec::new();
    for address in &masters {
        let reply = rt.block_on(async {
            let channel = address.channel(cistern_rpc::tls::Role::Master).map_err(|e| anyhow!("--master {address}: {e}"))?;
            let mut master = MasterClient::new(channel);
            let request = pb::SetLogLevelRequest { target: args.target.clone(), level: args.level.clone() };
            let reply = tokio::time::timeout(Duration::from_secs(10), master.set_log_level(request))
                .await
                .map_err(|_| anyhow!("the master at {address} did not answer within 10 s"))?;
            reply.map(|r| r.into_inner()).map_err(|s| anyhow!("{}", cistern_rpc::RpcError::from(s).message)).context(format!("master {address}"))
        });
        match reply {
            Ok(levels) => answered = answered.or(Some(levels)),
            Err(e) if masters.len() > 1 => failures.push(format!("{e:#}")),
            Err(e) => return Err(e),
        }
    }
    for f in &failures {
        eprintln!("warning: not set on one master: {f}");
    }
    let Some(levels) = answered else { bail!("no master answered: {}", failures.join("; ")) };
    let or_own = |v: &str| if v.is_empty() { "(as started)".to_string() } else { v.to_string() };
    println!("master: {}", levels.master);
    println!("workers: {} (taken within about 2 s)", or_own(&levels.workers));
    println!("fuse: {} (taken within about 2 s)", or_own(&levels.fuse));
    for w in levels.reported {
        println!("  worker {} on {}: {}", w.id, if w.node.is_empty() { "?" } else { &w.node }, w.log_level);
    }
    Ok(())
}
