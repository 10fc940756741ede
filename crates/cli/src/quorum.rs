//! `cistern quorum [add ID ADDRESS | remove ID]`: the masters of a Dataset as Raft sees them
//! (Alluxio's `fsadmin journal quorum info`): who leads, in which term, each member's address,
//! whether it votes, and how much of the log it holds. `add` and `remove` change the members
//! (Alluxio's `quorum remove`); they go to the leader.
//!
//! Over the masters' own channel: their sockets on this node (`-f`), or TCP with the Dataset's
//! client certificate to show, a master's certificate to edit.

use crate::component::tool_masters;
use anyhow::{anyhow, bail, Result};
use cistern_rpc::pb;
use cistern_rpc::Address;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct QuorumArgs {
    /// show (default), add or remove.
    #[arg(default_value = "show")]
    pub action: String,
    /// The member's id (add, remove).
    pub id: Option<u64>,
    /// The new member's address (add): `HOST:PORT` or `unix:/path.sock`.
    pub address: Option<String>,
    /// The Dataset's YAML: its masters' sockets are found in its run directory on this node.
    #[arg(short = 'f', long = "filename", required_unless_present = "master")]
    pub file: Option<PathBuf>,
    /// The Dataset in the file, when it declares several.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub run_root: crate::RunRootArg,
    /// The masters instead: `HOST:PORT` or `unix:/path.sock`, comma-separated.
    #[arg(long)]
    pub master: Option<String>,
    /// The Dataset's credentials, for masters reached over TCP [default: beside a unix: socket].
    #[arg(long = "credentials", env = "CISTERN_CREDENTIALS")]
    pub credentials: Option<PathBuf>,
}

pub fn run(args: QuorumArgs) -> Result<()> {
    let request = match (args.action.as_str(), args.id, &args.address) {
        ("show", None, None) => pb::QuorumRequest { with_digest: true, ..Default::default() },
        ("add", Some(id), Some(address)) => {
            Address::parse(address).map_err(|e| anyhow!("quorum add: address {e}"))?;
            pb::QuorumRequest { action: "add".into(), id, address: address.clone(), with_digest: false }
        }
        ("remove", Some(id), None) => pb::QuorumRequest { action: "remove".into(), id, address: String::new(), with_digest: false },
        _ => bail!("usage: cistern quorum [show | add ID ADDRESS | remove ID] (-f FILE | --master ADDRESSES)"),
    };
    let masters = tool_masters(args.master.as_deref(), args.file.as_deref(), args.name.as_deref(), &args.run_root.run_root, args.credentials.clone())?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let reply = rt.block_on(ask(&masters, request))?;
    print!("{}", table(&reply));
    Ok(())
}

/// Asks each master in turn; an edit goes on to the leader when the first one does not lead.
async fn ask(masters: &[Address], request: pb::QuorumRequest) -> Result<pb::QuorumReply> {
    let mut errors = Vec::new();
    let mut leader_hint = None;
    for round in 0..2 {
        for a in masters {
            let address = a.to_string();
            if round == 1 && leader_hint.as_ref().is_some_and(|l: &String| *l != address) {
                continue;
            }
            let mut client = match cistern_master::raft::network::raft_client(&address) {
                Ok(c) => c,
                Err(e) => {
                    errors.push(format!("{address}: {e}"));
                    continue;
                }
            };
            match tokio::time::timeout(Duration::from_secs(15), client.quorum(request.clone())).await {
                Ok(Ok(r)) => return Ok(r.into_inner()),
                Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => {
                    bail!("the master at {address} runs alone (spec.master.replicas 1): there is no quorum")
                }
                Ok(Err(s)) if cistern_rpc::errno_of(&s).is_some() => bail!("{address}: {}", s.message()),
                Ok(Err(s)) => errors.push(format!("{address}: {}", s.message())),
                Err(_) => errors.push(format!("{address}: no answer within 15 s")),
            }
        }
        if request.action.is_empty() {
            break;
        }
        // An edit refused by a follower: find the leader from any master's view.
        for a in masters {
            if let Ok(mut c) = cistern_master::raft::network::raft_client(&a.to_string()) {
                if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), c.quorum(pb::QuorumRequest::default())).await {
                    let r = r.into_inner();
                    leader_hint = r.leader.and_then(|l| r.members.iter().find(|m| m.id == l)).map(|m| Address::parse(&m.address).map(|a| a.to_string()).unwrap_or_default());
                    break;
                }
            }
        }
    }
    bail!("no master answered: {}", errors.join("; "))
}

fn table(r: &pb::QuorumReply) -> String {
    let mut out = format!(
        "LEADER: {}  TERM: {}  APPLIED: {}  (as master-{} sees it)\n",
        r.leader.map_or("none (no quorum)".to_string(), |l| format!("master-{l}")),
        r.term,
        r.last_applied,
        r.answered_by
    );
    out.push_str(&format!(
        "LOG: {} entries kept, last snapshot at {}\n",
        r.log_entries,
        r.snapshot_index.map_or("none".to_string(), |i| format!("index {i}"))
    ));
    if !r.namespace_digest.is_empty() {
        out.push_str(&format!("NAMESPACE: sha256:{} at index {}\n", r.namespace_digest, r.last_applied));
    }
    out.push_str(&format!("{:<10} {:<8} {:<10} {:<10} {}\n", "MEMBER", "ROLE", "STATE", "LOG", "ADDRESS"));
    for m in &r.members {
        let role = if m.voter { "voter" } else { "learner" };
        let state = if Some(m.id) == r.leader { "leader" } else { "follower" };
        let log = m.matched.map_or("-".to_string(), |i| i.to_string());
        out.push_str(&format!("{:<10} {:<8} {:<10} {:<10} {}\n", format!("master-{}", m.id), role, state, log, m.address));
    }
    out
}
