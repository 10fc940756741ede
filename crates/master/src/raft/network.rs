//! Raft between masters over Cistern's own gRPC (`MasterRaft`), under mutual TLS with the
//! master's certificate: openraft's requests travel as JSON in a [`pb::RaftMessage`] (a
//! snapshot chunk's bytes beside it, not inside the JSON), its answers back the same way.

use super::TypeConfig;
use cistern_rpc::pb;
use cistern_rpc::pb::master_raft_client::MasterRaftClient;
use cistern_rpc::tls::Role;
use cistern_rpc::{Address, MAX_MESSAGE};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;

pub const APPEND: &str = "append";
pub const VOTE: &str = "vote";
pub const SNAPSHOT: &str = "snapshot";

/// A channel to the master at `address` (a `MasterRaft` client).
pub fn raft_client(address: &str) -> Result<MasterRaftClient<Channel>, String> {
    let channel = Address::parse(address)?.channel(Role::Master)?;
    Ok(MasterRaftClient::new(channel).max_decoding_message_size(MAX_MESSAGE).max_encoding_message_size(MAX_MESSAGE))
}

#[derive(Clone, Default)]
pub struct Network;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        let client = raft_client(&node.addr);
        if let Err(e) = &client {
            tracing::warn!(target, address = %node.addr, "cannot reach master: {e}");
        }
        PeerClient { target, client: client.ok() }
    }
}

pub struct PeerClient {
    target: u64,
    client: Option<MasterRaftClient<Channel>>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Failure(String);

impl PeerClient {
    async fn call<Req, Resp, E>(&mut self, kind: &str, req: &Req, data: Vec<u8>, option: &RPCOption) -> Result<Resp, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let Some(client) = self.client.as_mut() else {
            return Err(RPCError::Unreachable(Unreachable::new(&Failure(format!("master {}: bad address", self.target)))));
        };
        let payload = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let message = pb::RaftMessage { kind: kind.to_string(), payload, data };
        let answer = match tokio::time::timeout(option.hard_ttl(), client.raft(message)).await {
            Err(_) => return Err(RPCError::Unreachable(Unreachable::new(&Failure(format!("master {}: no answer within {:?}", self.target, option.hard_ttl()))))),
            Ok(Err(status)) => return Err(RPCError::Unreachable(Unreachable::new(&Failure(format!("master {}: {}", self.target, status.message()))))),
            Ok(Ok(a)) => a.into_inner(),
        };
        match serde_json::from_slice::<Result<Resp, RaftError<u64, E>>>(&answer.payload) {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(APPEND, &rpc, Vec::new(), &option).await
    }

    async fn install_snapshot(
        &mut self,
        mut rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>> {
        let data = std::mem::take(&mut rpc.data);
        self.call(SNAPSHOT, &rpc, data, &option).await
    }

    async fn vote(&mut self, rpc: VoteRequest<u64>, option: RPCOption) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(VOTE, &rpc, Vec::new(), &option).await
    }
}
