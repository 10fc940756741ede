//! The `MasterRaft` service: what one master answers the others (Raft messages, listings
//! forwarded to the leader) and `cistern quorum`.
//!
//! Only a master's certificate (or the node-local socket) is served: a client or worker that
//! could send Raft messages could rewrite the namespace. Messages are bounded by the gRPC
//! message size and decoded into openraft's typed requests before anything acts on them.

use super::network::{APPEND, SNAPSHOT, VOTE};
use super::{basic, Replicated, TypeConfig};
use cistern_rpc::pb;
use cistern_rpc::pb::master_raft_server::{MasterRaft, MasterRaftServer};
use cistern_rpc::tls::{self, Peer, Role};
use cistern_rpc::{status_with_errno, Errno, MAX_MESSAGE};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Member ids are master ordinals: a quorum never needs more.
pub const MAX_MEMBER_ID: u64 = 64;

pub struct RaftService {
    pub replicated: Arc<Replicated>,
}

impl RaftService {
    pub fn into_server(self) -> MasterRaftServer<RaftService> {
        MasterRaftServer::new(self).max_decoding_message_size(MAX_MESSAGE).max_encoding_message_size(MAX_MESSAGE)
    }
}

fn only_masters<T>(r: &Request<T>, what: &str) -> Result<(), Status> {
    match tls::peer_role(r) {
        Peer::Local | Peer::Authenticated(Role::Master) => Ok(()),
        other => Err(status_with_errno(Errno::PermissionDenied, format!("{what}: only another master of this Dataset may ask (this peer: {other:?})"))),
    }
}

fn decode<T: serde::de::DeserializeOwned>(kind: &str, payload: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(payload).map_err(|e| status_with_errno(Errno::InvalidArgument, format!("raft {kind}: malformed request: {e}")))
}

fn answer<T: Serialize>(value: &T) -> Result<Response<pb::RaftMessage>, Status> {
    let payload = serde_json::to_vec(value).map_err(|e| Status::internal(format!("raft answer: {e}")))?;
    Ok(Response::new(pb::RaftMessage { kind: String::new(), payload, data: Vec::new() }))
}

#[tonic::async_trait]
impl MasterRaft for RaftService {
    async fn raft(&self, r: Request<pb::RaftMessage>) -> Result<Response<pb::RaftMessage>, Status> {
        only_masters(&r, "raft")?;
        let m = r.into_inner();
        let raft = &self.replicated.raft;
        match m.kind.as_str() {
            APPEND => answer(&raft.append_entries(decode::<AppendEntriesRequest<TypeConfig>>(APPEND, &m.payload)?).await),
            VOTE => answer(&raft.vote(decode::<VoteRequest<u64>>(VOTE, &m.payload)?).await),
            SNAPSHOT => {
                let mut req: InstallSnapshotRequest<TypeConfig> = decode(SNAPSHOT, &m.payload)?;
                req.data = m.data;
                answer(&raft.install_snapshot(req).await)
            }
            other => Err(status_with_errno(Errno::InvalidArgument, format!("raft: unknown message kind {:?}", other.chars().take(32).collect::<String>()))),
        }
    }

    async fn list(&self, r: Request<pb::ListRequest>) -> Result<Response<pb::ListReply>, Status> {
        only_masters(&r, "list")?;
        if !self.replicated.leads() {
            return Err(Status::unavailable(format!("master {} does not lead", self.replicated.id)));
        }
        let r = r.into_inner();
        self.replicated.ns.list(r.ino, r.sync).await.map_err(crate::rpc::status)?;
        let applied = self.replicated.raft.metrics().borrow().last_applied.map_or(0, |l| l.index);
        Ok(Response::new(pb::ListReply { applied }))
    }

    async fn quorum(&self, r: Request<pb::QuorumRequest>) -> Result<Response<pb::QuorumReply>, Status> {
        // Showing is for any holder of the Dataset's certificates; editing for masters and the
        // node-local socket (the CLI on a master's node).
        let peer = tls::peer_role(&r);
        if matches!(peer, Peer::Unknown) {
            return Err(status_with_errno(Errno::PermissionDenied, "quorum: the Dataset's certificate is needed"));
        }
        let q = r.into_inner();
        let rep = &self.replicated;
        match q.action.as_str() {
            "" => {}
            "add" | "remove" if !matches!(peer, Peer::Local | Peer::Authenticated(Role::Master)) => {
                return Err(status_with_errno(Errno::PermissionDenied, "quorum: only a master's certificate or the node-local socket may change it"));
            }
            _ if !rep.leads() => return Err(Status::unavailable(format!("master {} does not lead; ask the leader", rep.id))),
            "add" => {
                if q.id >= MAX_MEMBER_ID {
                    return Err(status_with_errno(Errno::InvalidArgument, format!("quorum add: member id {} is not below {MAX_MEMBER_ID}", q.id)));
                }
                cistern_rpc::Address::parse(&q.address).map_err(|e| status_with_errno(Errno::InvalidArgument, format!("quorum add: address {e}")))?;
                rep.raft.add_learner(q.id, basic(&q.address), true).await.map_err(|e| Status::unavailable(format!("quorum add: {e}")))?;
                rep.raft
                    .change_membership(openraft::ChangeMembers::AddVoterIds([q.id].into()), false)
                    .await
                    .map_err(|e| Status::unavailable(format!("quorum add: {e}")))?;
            }
            "remove" => {
                if rep.configured().contains_key(&q.id) {
                    return Err(status_with_errno(
                        Errno::InvalidArgument,
                        format!("quorum remove: master {} is configured (master.replicas); lower master.replicas instead, or it is added back", q.id),
                    ));
                }
                rep.raft
                    .change_membership(openraft::ChangeMembers::RemoveVoters([q.id].into()), false)
                    .await
                    .map_err(|e| Status::unavailable(format!("quorum remove: {e}")))?;
            }
            other => {
                return Err(status_with_errno(Errno::InvalidArgument, format!("quorum: unknown action {:?} (show, add or remove)", other.chars().take(32).collect::<String>())))
            }
        }
        let mut reply = quorum_reply(rep);
        if !q.with_digest {
            return Ok(Response::new(reply));
        }
        let db = rep.ns.db();
        // The digest and the index it belongs to, read in one transaction.
        let digest = tokio::task::spawn_blocking(move || super::snapshot::digest(&db)).await.map_err(|e| Status::internal(e.to_string()))?;
        let (applied, digest) = digest.map_err(crate::rpc::status)?;
        reply.last_applied = applied;
        reply.namespace_digest = digest;
        Ok(Response::new(reply))
    }
}

pub fn quorum_reply(rep: &Replicated) -> pb::QuorumReply {
    let view = rep.view();
    let m = rep.raft.metrics().borrow().clone();
    let matched = m.replication.clone().unwrap_or_default();
    pb::QuorumReply {
        leader: view.leader,
        term: view.term,
        last_applied: view.last_applied,
        members: view
            .members
            .into_iter()
            .map(|(id, (address, voter))| pb::QuorumMember {
                id,
                address,
                voter,
                matched: if id == rep.id { m.last_log_index } else { matched.get(&id).copied().flatten().map(|l| l.index) },
            })
            .collect(),
        answered_by: rep.id,
        namespace_digest: String::new(),
        log_entries: rep.log_len(),
        snapshot_index: m.snapshot.map(|l| l.index),
    }
}
