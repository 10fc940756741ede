//! The master and workers of other processes, over gRPC.

use crate::service::{DataService, MetaService};
use cistern_master::{Ino, Inode};
use cistern_rpc::pb;
use cistern_rpc::pb::worker_client::WorkerClient;
use cistern_rpc::tls::Role;
use cistern_rpc::{Address, MasterSet, MAX_MESSAGE};
use tonic::transport::Channel;
use tonic::Status;

/// The Dataset's master, or any of its masters under Raft (each answers; see
/// [`cistern_rpc::MasterSet`]).
pub struct RemoteMaster(MasterSet);

impl RemoteMaster {
    pub fn new(addresses: &[Address]) -> Result<RemoteMaster, String> {
        Ok(RemoteMaster(MasterSet::new(addresses)?))
    }
}

#[async_trait::async_trait]
impl MetaService for RemoteMaster {
    async fn getattr(&self, ino: Ino) -> Result<Inode, Status> {
        Ok(self.0.call(|mut m| async move { m.get_attr(pb::GetAttrRequest { ino }).await }).await?.into_inner().into())
    }
    async fn lookup(&self, parent: Ino, name: &str) -> Result<Inode, Status> {
        let r = pb::LookupRequest { parent, name: name.to_string() };
        Ok(self.0.call(|mut m| async move { m.lookup(r).await }).await?.into_inner().into())
    }
    async fn readdir(&self, ino: Ino, sync: bool) -> Result<Vec<Inode>, Status> {
        let r = self.0.call(|mut m| async move { m.read_dir(pb::ReadDirRequest { ino, sync, limit: 0 }).await }).await?;
        Ok(r.into_inner().entries.into_iter().map(Inode::from).collect())
    }
    async fn readdir_limited(&self, ino: Ino, limit: u32) -> Result<Option<Vec<Inode>>, Status> {
        let r = self.0.call(|mut m| async move { m.read_dir(pb::ReadDirRequest { ino, sync: false, limit }).await }).await?.into_inner();
        Ok((!r.over_limit).then(|| r.entries.into_iter().map(Inode::from).collect()))
    }
    async fn cluster(&self, report: Option<pb::ClientReport>) -> Result<pb::ClusterReply, Status> {
        Ok(self.0.call(|mut m| async move { m.cluster(pb::ClusterRequest { client: report }).await }).await?.into_inner())
    }
}

pub struct RemoteWorker(WorkerClient<Channel>);

impl RemoteWorker {
    pub fn new(address: &Address) -> Result<RemoteWorker, String> {
        Ok(RemoteWorker(WorkerClient::new(address.channel(Role::Worker)?).max_decoding_message_size(MAX_MESSAGE)))
    }
}

#[async_trait::async_trait]
impl DataService for RemoteWorker {
    async fn read(&self, r: pb::ReadRequest) -> Result<pb::ReadReply, Status> {
        Ok(self.0.clone().read(r).await?.into_inner())
    }
}
