//! The client over real gRPC: a master and a worker served on a Unix socket and on TCP
//! (127.0.0.1), found through the master, and a read that waits out a master that goes away
//! and comes back on the same address. Then short-circuit reads: the worker answers with a
//! place in its cache file, a damaged chunk there is never served, and only a client on the
//! worker's node is given a place.

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

/// A master and one worker (SSD tier) serving `m/model.bin` from a local UFS.
struct Served {
    c: Cluster,
    master: tokio::task::JoinHandle<()>,
    master_addr: Address,
    worker: Arc<Worker>,
    worker_addr: Address,
    data: Vec<u8>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

async fn serve(master_addr: Address, worker_addr: Address) -> Served {
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
    Served { c, master, master_addr, worker, worker_addr, data, _dirs: (root, cache) }
}

fn client_of(s: &Served) -> Client {
    Client::remote(&s.master_addr).with_backoff(Backoff { first: Duration::from_millis(5), max: Duration::from_millis(50), budget: Duration::from_secs(10) })
}

async fn check_transport(master_addr: Address, worker_addr: Address) {
    let s = serve(master_addr, worker_addr).await;
    let mut client = client_of(&s);
    let (c, master, master_addr, data) = (&s.c, s.master, s.master_addr.clone(), s.data.clone());
    client.set_short_circuit(false); // every byte over the RPC here
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
    let (_master, _) = serve_master(c, &master_addr).await;
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

fn count(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_circuit_reads_come_from_the_cache_file_and_a_damaged_chunk_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(Address::Unix(dir.path().join("m.sock")), Address::Unix(dir.path().join("w.sock"))).await;
    let client = client_of(&s);
    client.refresh_workers().await.unwrap();
    let m = client.lookup(ROOT_INO, "m").await.unwrap();
    let f = client.lookup(m.ino, "model.bin").await.unwrap();

    // Cold, then warm: the worker fetches and stores, and the bytes come from its file.
    for pass in 0..2 {
        let mut got = Vec::new();
        for off in (0..3_000_000u64).step_by(1 << 20) {
            got.extend_from_slice(&client.read(f.ino, off, 1 << 20).await.unwrap());
        }
        assert!(got == s.data, "pass {pass}: wrong bytes");
    }
    assert_eq!(client.short_circuit_figures(), (6_000_000, 0));
    assert_eq!(count(&s.worker.counters.short_circuit_bytes), 6_000_000);
    assert!(count(&s.worker.counters.local_bytes) >= 3_000_000, "the second pass counts as cache hits");
    assert_eq!(count(&s.worker.counters.ufs_fetched_bytes), 3_000_000, "fetched once");

    // Only a client on the worker's node is handed a place in a file.
    let mut raw = pb::worker_client::WorkerClient::new(s.worker_addr.channel());
    let file_ref = pb::FileRef { mount: 0, path: "m/model.bin".into(), size: 3_000_000, key: f.cache_key() };
    let ask = |node: &str| pb::ReadRequest { file: Some(file_ref.clone()), offset: 0, len: 4096, short_circuit_node: node.into(), recheck: false };
    let here = raw.read(ask(&cistern_rpc::node_name())).await.unwrap().into_inner();
    assert!(here.local.is_some() && here.data.is_empty());
    let elsewhere = raw.read(ask("another-node")).await.unwrap().into_inner();
    assert!(elsewhere.local.is_none());
    assert_eq!(&elsewhere.data[..], &s.data[..4096]);

    // One byte flipped in the cache file, as bit rot would: the client's check fails, the
    // worker's own read drops the block and fetches it again, and the right bytes come back.
    let cache_file = s.worker.tiers().complete_file(&f.cache_key()).expect("the file is complete");
    let file = std::fs::OpenOptions::new().write(true).open(&cache_file).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[s.data[1_500_000] ^ 0xff], 1_500_000).unwrap();
    let got = client.read(f.ino, 1_499_000, 4096).await.unwrap();
    assert_eq!(&got[..], &s.data[1_499_000..1_503_096]);
    assert_eq!(client.short_circuit_figures().1, 1, "the damaged chunk was not caught by the client");
    assert_eq!(s.worker.corrupt_blocks(), 1);
}
