//! What the client needs from a master and from a worker, as two traits with the gRPC surface
//! (results are tonic statuses, so one retry policy covers both), implemented over the wire
//! ([`crate::remote`]) and in this process (here: tests and tools that need no processes).

use cistern_master::rpc::{MasterService, WorkerRegistry};
use cistern_master::{Ino, Inode, Namespace, Summary};
use cistern_rpc::pb;
use cistern_rpc::pb::master_server::Master;
use cistern_rpc::pb::worker_server::Worker as _;
use cistern_worker::rpc::WorkerService;
use cistern_worker::Worker;
use std::sync::{Arc, Mutex};
use tonic::{Request, Status};

#[async_trait::async_trait]
pub trait MetaService: Send + Sync {
    async fn getattr(&self, ino: Ino) -> Result<Inode, Status>;
    async fn lookup(&self, parent: Ino, name: &str) -> Result<Inode, Status>;
    /// `sync`: as the UFS lists it now ([`pb::ReadDirRequest::sync`]).
    async fn readdir(&self, ino: Ino, sync: bool) -> Result<Vec<Inode>, Status>;
    /// A directory's entries if it has at most `limit`, else `None`.
    async fn readdir_limited(&self, ino: Ino, limit: u32) -> Result<Option<Vec<Inode>>, Status>;
    /// The live workers with their figures, and the Dataset's UFS totals; `report` is this
    /// client's own figures, for the master's metrics.
    async fn cluster(&self, report: Option<pb::ClientReport>) -> Result<pb::ClusterReply, Status>;
}

#[async_trait::async_trait]
pub trait DataService: Send + Sync {
    async fn read(&self, r: pb::ReadRequest) -> Result<pb::ReadReply, Status>;
}

/// A master in this process: the same service the `cistern master` process runs, called
/// directly, with these workers as its registry.
pub struct LocalMaster {
    service: MasterService,
    workers: Vec<(Arc<Worker>, String)>,
}

impl LocalMaster {
    pub fn new(ns: Arc<Namespace>, workers: &[Arc<Worker>], refs: cistern_rpc::RefKey) -> LocalMaster {
        let service = MasterService {
            ns,
            registry: Arc::new(WorkerRegistry::default()),
            summary: Arc::new(Mutex::new(Summary::Calculating)),
            replicas: Arc::new(std::sync::atomic::AtomicU32::new(workers.len() as u32)),
            data_replicas: 1,
            log_levels: Default::default(),
            refs,
        };
        LocalMaster { service, workers: workers.iter().map(|w| (w.clone(), format!("local:{}", w.id))).collect() }
    }
}

#[async_trait::async_trait]
impl MetaService for LocalMaster {
    async fn getattr(&self, ino: Ino) -> Result<Inode, Status> {
        Ok(self.service.get_attr(Request::new(pb::GetAttrRequest { ino })).await?.into_inner().into())
    }
    async fn lookup(&self, parent: Ino, name: &str) -> Result<Inode, Status> {
        let r = pb::LookupRequest { parent, name: name.to_string() };
        Ok(self.service.lookup(Request::new(r)).await?.into_inner().into())
    }
    async fn readdir(&self, ino: Ino, sync: bool) -> Result<Vec<Inode>, Status> {
        let r = self.service.read_dir(Request::new(pb::ReadDirRequest { ino, sync, limit: 0 })).await?;
        Ok(r.into_inner().entries.into_iter().map(Inode::from).collect())
    }
    async fn readdir_limited(&self, ino: Ino, limit: u32) -> Result<Option<Vec<Inode>>, Status> {
        let r = self.service.read_dir(Request::new(pb::ReadDirRequest { ino, sync: false, limit })).await?.into_inner();
        Ok((!r.over_limit).then(|| r.entries.into_iter().map(Inode::from).collect()))
    }
    async fn cluster(&self, report: Option<pb::ClientReport>) -> Result<pb::ClusterReply, Status> {
        for (w, address) in &self.workers {
            let report = pb::WorkerReport { id: w.id as u32, address: address.clone(), figures: Some(w.figures()), identity: w.identity, node: cistern_rpc::node_name(), log_level: String::new() };
            self.service.registry.report(report);
        }
        Ok(self.service.cluster(Request::new(pb::ClusterRequest { client: report })).await?.into_inner())
    }
}

/// A worker in this process, through the same service the `cistern worker` process runs.
pub struct LocalWorker(pub WorkerService);

#[async_trait::async_trait]
impl DataService for LocalWorker {
    async fn read(&self, r: pb::ReadRequest) -> Result<pb::ReadReply, Status> {
        Ok(self.0.read(Request::new(r)).await?.into_inner())
    }
}
