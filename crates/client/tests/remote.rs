//! The client over real gRPC: a master and a worker served on a Unix socket and on TCP
//! (127.0.0.1), found through the master, and a read that waits out a master that goes away
//! and comes back on the same address.

use cistern_client::Client;
use cistern_master::rpc::{MasterService, WorkerRegistry};
use cistern_master::{Namespace, NsMount, Summary, ROOT_INO};
use cistern_rpc::{pb, Address, Backoff};
use cistern_ufs::Ufs;
use cistern_worker::rpc::WorkerService;
use cistern_worker::{LevelSpec, ReadOptions, Worker};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Cluster {
    ns: Arc<Namespace>,
    registry: Arc<WorkerRegistry>,
}

/// Serves the master at `addr` until the returned task is aborted.
async fn serve_master(c: &Cluster, addr: &Address) -> (tokio::task::JoinHandle<()>, Address) {
    let service = MasterService {
        ns: c.ns.clone(),
        registry: c.registry.clone(),
        summary: Arc::new(Mutex::new(Summary::Calculating)),
        replicas: 1,
    };
    let (incoming, bound) = addr.bind().await.unwrap();
    let router = tonic::transport::Server::builder().add_service(service.into_server());
    let task = tokio::spawn(async move {
        let _ = incoming.serve(router, std::future::pending()).await;
    });
    (task, bound)
}

async fn check_transport(master_addr: Address, worker_addr: Address) {
    let root = tempfile::tempdir().unwrap();
    let op = opendal::Operator::new(opendal::services::Fs::default().root(root.path().to_str().unwrap())).unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    op.write("m/model.bin", data.clone()).await.unwrap();
    let ufs = Ufs::from_operator(op, "local://r");
    let c = Cluster {
        ns: Arc::new(Namespace::new(vec![NsMount { ufs: ufs.clone(), path: "/".into() }], None)),
        registry: Arc::new(WorkerRegistry::default()),
    };
    let (master, master_addr) = serve_master(&c, &master_addr).await;

    let cache = tempfile::tempdir().unwrap();
    let worker = Worker::open(0, &[LevelSpec::single("SSD", cache.path(), 64 << 20, 1.0, 1.0)], ReadOptions::default()).unwrap();
    let (incoming, worker_addr) = worker_addr.bind().await.unwrap();
    let router = tonic::transport::Server::builder().add_service(WorkerService { worker: worker.clone(), mounts: vec![ufs] }.into_server());
    tokio::spawn(async move { incoming.serve(router, std::future::pending()).await });
    c.registry.report(pb::WorkerReport { id: 0, address: worker_addr.to_string(), figures: Some(worker.figures()) });

    let client = Client::remote(&master_addr)
        .with_backoff(Backoff { first: Duration::from_millis(5), max: Duration::from_millis(50), budget: Duration::from_secs(10) });
    assert_eq!(client.refresh_workers().await.unwrap(), 1);
    let dir = client.lookup(ROOT_INO, "m").await.unwrap();
    let f = client.lookup(dir.ino, "model.bin").await.unwrap();
    assert_eq!(&client.read(f.ino, 0, 3_000_000).await.unwrap()[..], &data[..]);
    assert_eq!(client.lookup(dir.ino, "absent").await.unwrap_err().errno, 2, "an answered error is final, not retried");

    // The master goes away; a read whose metadata must be fetched again waits for it.
    master.abort();
    let _ = master.await;
    tokio::time::sleep(cistern_client::INODE_TTL + Duration::from_millis(100)).await;
    let pending = {
        let client = Arc::new(client);
        let c2 = client.clone();
        (tokio::spawn(async move { c2.read(f.ino, 1_000_000, 4096).await }), client)
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pending.0.is_finished(), "the read did not wait for the master");
    let (_master, _) = serve_master(&c, &master_addr).await;
    let got = tokio::time::timeout(Duration::from_secs(10), pending.0).await.unwrap().unwrap().unwrap();
    assert_eq!(&got[..], &data[1_000_000..1_004_096]);
    let (stats, _) = pending.1.stats().await.unwrap();
    assert_eq!(stats.capacity, 64 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_unix_sockets() {
    let dir = tempfile::tempdir().unwrap();
    check_transport(Address::Unix(dir.path().join("m.sock")), Address::Unix(dir.path().join("w.sock"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tcp_on_loopback() {
    // The master comes back on the same port, so it is chosen once here.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    check_transport(Address::Tcp(format!("127.0.0.1:{port}")), Address::Tcp("127.0.0.1:0".into())).await;
}
