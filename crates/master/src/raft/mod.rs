//! Several masters (three or five) that replicate the namespace with Raft (openraft).
//!
//! - The log is `raft.redb` ([`log_store`]); the state machine is the namespace's own
//!   `namespace.redb` ([`state_machine`]); a snapshot is a dump of its tables ([`snapshot`]).
//! - The namespace's only writes are directory listings ([`crate::listing::Listing`]). The
//!   leader lists the UFS and commits the listing; every member applies it alike, so inode
//!   numbers agree everywhere.
//! - Any master answers reads from its own store. A follower that needs a directory listed
//!   forwards the listing to the leader and answers once it has applied the result
//!   ([`Replicated::forward`]); with no leader, it serves the last listing if there is one.
//! - Members are master ids (the ordinal: `master-0`, `master-1`, ...) with their addresses.
//!   Master 0 starts the quorum alone; the leader then adds the configured members
//!   ([`members`]).

pub mod log_store;
mod members;
pub mod network;
pub mod service;
mod snapshot;
pub mod state_machine;

use crate::listing::Listing;
use crate::namespace::{BoxFuture, Forwarded, Replica};
use crate::{Ino, MetaError, Namespace};
use openraft::{BasicNode, Raft, ServerState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use state_machine::Applied;

/// A write to the namespace, as the log carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Listing(Listing),
    /// The mount table (URIs without options, and where each appears) and the new root's
    /// mtime: committed by a leader whose configuration differs from the stored table.
    Mounts { table: Vec<(String, String)>, root_mtime: (i64, u32) },
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Listing(l) => write!(f, "listing of inode {} ({} entries)", l.dir, l.entries.len()),
            Command::Mounts { table, .. } => write!(f, "mount table of {} mounts", table.len()),
        }
    }
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Command,
        R = Applied,
);

pub type MasterRaft = Raft<TypeConfig>;

/// How long a leader waits for a listing to commit before the caller retries.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a follower keeps trying to reach a leader for one listing; past it the caller
/// (a client) is answered "unavailable" and retries, on this master or another.
pub const FORWARD_BUDGET: Duration = Duration::from_secs(3);

/// Heartbeats every 150 ms, an election after 600–1200 ms without one: a leader's death is
/// noticed, and a new one elected, within about 1.5 s. A snapshot every `checkpoint_entries`
/// entries, after which the log keeps a tenth of that (at most 1 000) for followers just behind.
pub fn config(checkpoint_entries: u64) -> openraft::Config {
    openraft::Config {
        cluster_name: "cistern-masters".into(),
        heartbeat_interval: 150,
        election_timeout_min: 600,
        election_timeout_max: 1200,
        install_snapshot_timeout: 10_000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(checkpoint_entries),
        max_in_snapshot_log_to_keep: (checkpoint_entries / 10).min(1_000),
        snapshot_max_chunk_size: 8 << 20,
        ..Default::default()
    }
}

/// Who this master is among how many.
#[derive(Debug, Clone)]
pub struct RaftOptions {
    pub id: u64,
    /// Every configured master, this one included: id → address (`HOST:PORT` or a socket).
    pub members: BTreeMap<u64, String>,
    /// Where `raft.redb` and the snapshot go (the namespace's meta dir); `None`: in memory.
    pub meta_dir: Option<PathBuf>,
    /// A snapshot (and log compaction) after this many entries.
    pub checkpoint_entries: u64,
}

/// This master's part in the quorum.
pub struct Replicated {
    pub raft: MasterRaft,
    pub id: u64,
    pub ns: Arc<Namespace>,
    /// The configured members (may change when the configuration is re-read).
    configured: Mutex<BTreeMap<u64, String>>,
    log: log_store::LogStore,
}

/// Starts this master's Raft node over `ns` and makes `ns` replicate through it.
pub async fn start(ns: Arc<Namespace>, options: RaftOptions) -> Result<Arc<Replicated>, String> {
    if !options.members.contains_key(&options.id) {
        return Err(format!("master id {} is not among the configured masters {:?}", options.id, options.members.keys().collect::<Vec<_>>()));
    }
    let wipe = ns.was_reset();
    let log = match &options.meta_dir {
        Some(dir) => log_store::LogStore::open(dir, wipe)?,
        None => log_store::LogStore::in_memory(),
    };
    let sm = state_machine::StateMachine::new(ns.db(), options.meta_dir.clone(), wipe);
    let config = Arc::new(config(options.checkpoint_entries).validate().map_err(|e| format!("raft configuration: {e}"))?);
    let raft = Raft::new(options.id, config, network::Network, log.clone(), sm).await.map_err(|e| format!("raft: {e}"))?;
    let replicated = Arc::new(Replicated { raft, id: options.id, ns: ns.clone(), configured: Mutex::new(options.members), log });
    ns.set_replica(replicated.clone());
    tokio::spawn(members::run(replicated.clone()));
    Ok(replicated)
}

/// One master's view of the quorum, as `cistern quorum` and the status show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumView {
    pub leader: Option<u64>,
    pub term: u64,
    pub last_applied: u64,
    /// id → (address, voter)
    pub members: BTreeMap<u64, (String, bool)>,
}

impl Replicated {
    pub fn view(&self) -> QuorumView {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        // A master restarted from a vote it won before its death names itself until it hears
        // of the new term: it leads only once it is Leader again.
        let leader = m.current_leader.filter(|l| *l != self.id || m.state == ServerState::Leader);
        QuorumView {
            leader,
            term: m.current_term,
            last_applied: m.last_applied.map_or(0, |l| l.index),
            members: membership.nodes().map(|(id, n)| (*id, (n.addr.clone(), voters.contains(id)))).collect(),
        }
    }

    pub fn configured(&self) -> BTreeMap<u64, String> {
        self.configured.lock().expect("configured lock").clone()
    }

    /// Follows a re-read configuration (more or fewer masters).
    pub fn set_configured(&self, members: BTreeMap<u64, String>) {
        *self.configured.lock().expect("configured lock") = members;
    }

    /// Entries in this master's log (compaction keeps it bounded).
    pub fn log_len(&self) -> u64 {
        self.log.len()
    }

    fn leader_address(&self) -> Option<(u64, String)> {
        let m = self.raft.metrics().borrow().clone();
        let leader = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&leader)?.addr.clone();
        Some((leader, addr))
    }

    fn leads(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    /// Commits this master's mount table when the quorum's differs (its configuration changed):
    /// every master then drops its namespace alike. True when it was committed.
    pub(crate) async fn ensure_own_mount_table(&self) -> Result<bool, MetaError> {
        if self.ns.serves_own_mount_table()? {
            return Ok(false);
        }
        tracing::info!("the Dataset's mounts differ from the quorum's: committing this master's mount table (the namespace is listed again)");
        let root_mtime = crate::inode::to_mtime(Some(std::time::SystemTime::now()));
        self.write(Command::Mounts { table: self.ns.mount_table(), root_mtime }).await?;
        Ok(true)
    }

    async fn write(&self, command: Command) -> Result<(), MetaError> {
        match tokio::time::timeout(COMMIT_TIMEOUT, self.raft.client_write(command)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(MetaError::unavailable(format!("not committed: {e}"))),
            Err(_) => Err(MetaError::unavailable(format!("not committed within {COMMIT_TIMEOUT:?} (no quorum?)"))),
        }
    }

    async fn commit_listing(&self, listing: Listing) -> Result<(), MetaError> {
        // A listing is of this master's mounts: never put into a namespace of others.
        if self.ensure_own_mount_table().await? {
            return Err(MetaError::unavailable("the mount table changed; the namespace is listed again".into()));
        }
        match tokio::time::timeout(COMMIT_TIMEOUT, self.raft.client_write(Command::Listing(listing))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(MetaError::unavailable(format!("listing not committed: {e}"))),
            Err(_) => Err(MetaError::unavailable(format!("listing not committed within {COMMIT_TIMEOUT:?} (no quorum?)"))),
        }
    }

    async fn forward_listing(&self, ino: Ino, sync: bool) -> Result<Forwarded, MetaError> {
        let started = Instant::now();
        let mut last_error = String::from("no leader elected");
        while started.elapsed() < FORWARD_BUDGET {
            if self.leads() {
                return Ok(Forwarded::Leading);
            }
            if let Some((leader, addr)) = self.leader_address().filter(|(l, _)| *l != self.id) {
                // A leader that hangs (frozen, or its node cut off) may never answer, and a
                // listing may rightly take long: the ask is given up only when the quorum
                // elects someone else, and asked again of the new leader.
                let mut metrics = self.raft.metrics();
                let leader_changed = async move {
                    while metrics.changed().await.is_ok() {
                        if metrics.borrow().current_leader != Some(leader) {
                            return;
                        }
                    }
                    std::future::pending::<()>().await
                };
                let answer = tokio::select! {
                    answer = self.ask_leader(&addr, ino, sync) => answer,
                    _ = leader_changed => {
                        last_error = format!("master {leader} stopped leading while asked");
                        continue;
                    }
                };
                match answer {
                    Ok(applied) => {
                        let waiter = self.raft.wait(Some(COMMIT_TIMEOUT));
                        return match waiter.applied_index_at_least(Some(applied), "forwarded listing").await {
                            Ok(_) => Ok(Forwarded::Applied),
                            Err(e) => Err(MetaError::unavailable(format!("listing committed by master {leader} but not applied here: {e}"))),
                        };
                    }
                    // The leader answered with an errno (no such directory...): final.
                    Err(Some(e)) => return Err(e),
                    Err(None) => last_error = format!("master {leader} ({addr}) did not list it"),
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(MetaError::unavailable(format!("no master leads the namespace ({last_error}); a new listing waits for a quorum")))
    }

    /// The leader's applied index once it has listed `ino`; `Err(None)` for a failure worth
    /// another try (the leader gone or no longer leading).
    async fn ask_leader(&self, addr: &str, ino: Ino, sync: bool) -> Result<u64, Option<MetaError>> {
        let mut client = network::raft_client(addr).map_err(|_| None)?;
        match tokio::time::timeout(COMMIT_TIMEOUT * 3, client.list(cistern_rpc::pb::ListRequest { ino, sync })).await {
            Ok(Ok(r)) => Ok(r.into_inner().applied),
            Ok(Err(s)) => match cistern_rpc::errors::errno_of(&s) {
                Some(errno) => Err(Some(MetaError { retryable: false, errno, message: s.message().to_string() })),
                None => Err(None),
            },
            Err(_) => Err(None),
        }
    }
}

impl Replica for Replicated {
    fn is_leader(&self) -> bool {
        self.leads()
    }

    fn commit(&self, listing: Listing) -> BoxFuture<'_, Result<(), MetaError>> {
        Box::pin(self.commit_listing(listing))
    }

    fn forward(&self, ino: Ino, sync: bool) -> BoxFuture<'_, Result<Forwarded, MetaError>> {
        Box::pin(self.forward_listing(ino, sync))
    }
}

/// The members of a quorum named by their addresses in order: id 0, 1, 2...
pub fn members_from(addresses: &[String]) -> BTreeMap<u64, String> {
    addresses.iter().enumerate().map(|(i, a)| (i as u64, a.clone())).collect()
}

pub(crate) fn basic(addr: &str) -> BasicNode {
    BasicNode::new(addr)
}
