//! Who is in the quorum.
//!
//! - **Start.** Master 0 starts the quorum with itself as its only member, but only after
//!   asking the other configured masters: when one of them already belongs to a quorum (this
//!   master's store was wiped), it waits to be caught up instead of starting a second one.
//! - **A snapshot first.** Right after starting, master 0 snapshots the namespace and purges
//!   the log up to it, so every other member starts from that snapshot. This is also the
//!   upgrade from a single master: the existing `namespace.redb` is master 0's state and
//!   reaches the others whole.
//! - **The configuration grows the quorum; a command shrinks it.** The leader adds every
//!   configured master missing from the quorum (a learner first, a voter once it has caught
//!   up), one change at a time. It never removes a voter by itself: a master that is merely down
//!   looks the same as one taken away. `cistern quorum remove ID` removes one that is no longer
//!   configured (after `master.replicas` was lowered); `cistern quorum add ID ADDRESS` adds one
//!   the configuration does not name ([`super::service`]).

use super::{basic, network, Replicated};
use openraft::ChangeMembers;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

const RECONCILE_EVERY: Duration = Duration::from_secs(1);

pub(super) async fn run(r: Arc<Replicated>) {
    if r.id == 0 {
        bootstrap(&r).await;
    }
    let mut tick = tokio::time::interval(RECONCILE_EVERY);
    loop {
        tick.tick().await;
        if r.leads() {
            if let Err(e) = r.ensure_own_mount_table().await {
                tracing::warn!("quorum: the mount table: {}", e.message);
            }
            if let Err(e) = reconcile(&r).await {
                tracing::warn!("quorum: {e}");
            }
        }
    }
}

async fn bootstrap(r: &Replicated) {
    if r.raft.is_initialized().await.unwrap_or(true) {
        return;
    }
    let others: Vec<(u64, String)> = r.configured().into_iter().filter(|(id, _)| *id != r.id).collect();
    for (id, addr) in &others {
        let Ok(mut client) = network::raft_client(addr) else { continue };
        let asked = tokio::time::timeout(Duration::from_secs(2), client.quorum(cistern_rpc::pb::QuorumRequest::default())).await;
        if let Ok(Ok(q)) = asked {
            let q = q.into_inner();
            if q.leader.is_some() || !q.members.is_empty() {
                tracing::info!(member = id, "master {id} already belongs to a quorum: waiting for its leader to catch this master up");
                return;
            }
        }
    }
    let me = r.configured().get(&r.id).cloned().unwrap_or_default();
    if let Err(e) = r.raft.initialize(BTreeMap::from([(r.id, basic(&me))])).await {
        tracing::warn!("quorum: cannot start it: {e}");
        return;
    }
    if let Err(e) = r.raft.wait(Some(Duration::from_secs(10))).current_leader(r.id, "leading the new quorum").await {
        tracing::warn!("quorum: started but not leading: {e}");
        return;
    }
    // Every later member starts from this snapshot (and an upgraded store reaches them).
    let applied = r.raft.metrics().borrow().last_applied.map_or(0, |l| l.index);
    let _ = r.raft.trigger().snapshot().await;
    let snapshotted = r.raft.wait(Some(Duration::from_secs(60))).metrics(|m| m.snapshot.is_some_and(|s| s.index >= applied), "first snapshot").await;
    match snapshotted {
        Ok(_) => {
            let _ = r.raft.trigger().purge_log(applied).await;
            tracing::info!(index = applied, "quorum started by master {}; namespace snapshotted for the other members", r.id);
        }
        Err(e) => tracing::warn!("quorum: first snapshot not taken: {e}"),
    }
}

/// One step towards the configured membership.
async fn reconcile(r: &Replicated) -> Result<(), String> {
    let m = r.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership().clone();
    if membership.get_joint_config().len() > 1 {
        return Ok(()); // a change is under way
    }
    let nodes: BTreeMap<u64, String> = membership.nodes().map(|(id, n)| (*id, n.addr.clone())).collect();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let configured = r.configured();
    for (id, addr) in &configured {
        if nodes.get(id) != Some(addr) {
            tracing::info!(member = id, %addr, "quorum: adding master {id} as a learner");
            // Not blocking: a member that is down is added now and catches up when it starts.
            r.raft.add_learner(*id, basic(addr), false).await.map_err(|e| format!("adding master {id}: {e}"))?;
            return Ok(());
        }
    }
    // A learner becomes a voter only once it holds most of the log: promoting a member that
    // is down or far behind would cost the quorum a vote it cannot give.
    let matched = m.replication.clone().unwrap_or_default();
    let last = m.last_log_index.unwrap_or(0);
    let ready: BTreeSet<u64> = configured
        .keys()
        .copied()
        .filter(|id| !voters.contains(id) && matched.get(id).copied().flatten().is_some_and(|l| l.index + 100 >= last))
        .collect();
    if !ready.is_empty() {
        tracing::info!(voters = ?voters, adding = ?ready, "quorum: promoting caught-up members to voters");
        r.raft.change_membership(ChangeMembers::AddVoterIds(ready), false).await.map_err(|e| format!("promoting voters: {e}"))?;
    }
    Ok(())
}
