//! The client over real gRPC: a master and a worker served on a Unix socket and on TCP
//! (127.0.0.1), found through the master, and a read that waits out a master that goes away
//! and comes back on the same address. Then short-circuit reads: the worker answers with a
//! place in its cache file, a damaged chunk there is never served, and only a client on the
//! worker's node is given a place.

use cistern_client::Client;
use cistern_master::rpc::{MasterService, WorkerRegistry};
use cistern_master::{Namespace, NsMount, Summary, ROOT_INO};
use cistern_rpc::{pb, Address, Backoff, RefKey};
use cistern_ufs::Ufs;
use cistern_worker::rpc::WorkerService;
use cistern_worker::{LevelSpec, ReadOptions, Worker};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Cluster {
    ns: Arc<Namespace>,
    registry: Arc<WorkerRegistry>,
    refs: RefKey,
}

/// Serves the master at `addr` until the returned task is aborted.
async fn serve_master(c: &Cluster, addr: &Address) -> (tokio::task::JoinHandle<()>, Address) {
    let service = MasterService {
        ns: c.ns.clone(),
        registry: c.registry.clone(),
        summary: Arc::new(Mutex::new(Summary::Calculating)),
        replicas: Arc::new(std::sync::atomic::AtomicU32::new(1)),
        data_replicas: 1,
        log_levels: Default::default(),
        refs: c.refs.clone(),
    };
    install_tls();
    let (incoming, bound) = addr.bind().await.unwrap();
    let router = incoming.server().unwrap().add_service(service.into_server());
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
    /// The worker's cache directory and its descriptor socket's directory.
    cache_dir: std::path::PathBuf,
    fd_dir: std::path::PathBuf,
    _dirs: (tempfile::TempDir, tempfile::TempDir, tempfile::TempDir),
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
        refs: RefKey::generate(),
    };
    let (master, master_addr) = serve_master(&c, &master_addr).await;

    let cache = tempfile::tempdir().unwrap();
    let worker = Worker::open(0, &[LevelSpec::single("SSD", cache.path(), 64 << 20, 1.0, 1.0)], ReadOptions::default()).unwrap();
    let (incoming, worker_addr) = worker_addr.bind().await.unwrap();
    let router = incoming.server().unwrap().add_service(WorkerService { worker: worker.clone(), mounts: vec![ufs], refs: c.refs.clone() }.into_server());
    tokio::spawn(async move { incoming.serve(router, std::future::pending()).await });
    c.registry.report(pb::WorkerReport { id: 0, address: worker_addr.to_string(), figures: Some(worker.figures()), identity: worker.identity, ..Default::default() });
    let fd_dir = tempfile::tempdir().unwrap();
    cistern_worker::descriptors::serve(&cistern_rpc::descriptors::socket_path(fd_dir.path(), 0), worker.clone(), c.refs.clone()).unwrap();
    let (cache_dir, fd_path) = (cache.path().to_path_buf(), fd_dir.path().to_path_buf());
    Served { c, master, master_addr, worker, worker_addr, data, cache_dir, fd_dir: fd_path, _dirs: (root, cache, fd_dir) }
}

/// TCP needs mutual TLS: this test process plays every role, so it holds one certificate of
/// all three (a real component holds one role; see `cistern_rpc::tls`).
fn install_tls() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let ca = cistern_rpc::tls::Authority::generate().unwrap();
        cistern_rpc::tls::install(ca.credentials(cistern_rpc::tls::Role::Client, &cistern_rpc::tls::Role::ALL).unwrap());
    });
}

fn client_of(s: &Served) -> Client {
    Client::remote(&s.master_addr).unwrap().with_backoff(Backoff { first: Duration::from_millis(5), max: Duration::from_millis(50), budget: Duration::from_secs(10) })
}

async fn check_transport(master_addr: Address, worker_addr: Address) {
    let s = serve(master_addr, worker_addr).await;
    // No short-circuit: every byte over the RPC here.
    let client = client_of(&s);
    let (c, master, master_addr, data) = (&s.c, s.master, s.master_addr.clone(), s.data.clone());
    assert_eq!(client.refresh_workers().await.unwrap(), 1);
    let dir = client.lookup(ROOT_INO, "m").await.unwrap();
    let f = client.lookup(dir.ino, "model.bin").await.unwrap();
    assert_eq!(&client.read(f.ino, 0, 3_000_000).await.unwrap()[..], &data[..]);
    assert_eq!(client.lookup(dir.ino, "absent").await.unwrap_err().errno, cistern_rpc::Errno::NotFound, "an answered error is final, not retried");

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
    let client = client_of(&s).with_short_circuit(Some(s.fd_dir.clone()));
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
    // The second pass asked the worker nothing: every chunk was vouched for by the first.
    assert_eq!(count(&s.worker.counters.short_circuit_bytes), 3_000_000, "the warm pass made read RPCs");
    assert_eq!(count(&s.worker.counters.ufs_fetched_bytes), 3_000_000, "fetched once");

    // Only a client on the worker's node is handed a place in a file.
    let mut raw = pb::worker_client::WorkerClient::new(s.worker_addr.channel(cistern_rpc::tls::Role::Worker).unwrap());
    let file_ref = f.file_ref.clone().expect("the master signed a reference");
    let ask = |node: &str| pb::ReadRequest { file: Some(file_ref.clone()), offset: 0, len: 4096, short_circuit_node: node.into(), recheck: false, ..Default::default() };
    let here = raw.read(ask(&cistern_rpc::node_name())).await.unwrap().into_inner();
    assert!(here.local.is_some() && here.data.is_empty());
    let elsewhere = raw.read(ask("another-node")).await.unwrap().into_inner();
    assert!(elsewhere.local.is_none());
    assert_eq!(&elsewhere.data[..], &s.data[..4096]);

    // One byte flipped in the cache file, as bit rot would: the client's check fails, the
    // worker's own read drops the block and fetches it again, and the right bytes come back.
    let key = s.c.refs.verify(&file_ref).unwrap().key;
    let cache_file = s.worker.tiers().unwrap().complete_file(&key).expect("the file is complete");
    let file = std::fs::OpenOptions::new().write(true).open(&cache_file).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[s.data[1_500_000] ^ 0xff], 1_500_000).unwrap();
    let got = client.read(f.ino, 1_499_000, 4096).await.unwrap();
    assert_eq!(&got[..], &s.data[1_499_000..1_503_096]);
    assert_eq!(client.short_circuit_figures().1, 1, "the damaged chunk was not caught by the client");
    assert_eq!(s.worker.corrupt_blocks(), 1);
}

/// A peer that reaches the worker's port (TCP here) but does not hold the Dataset's reference
/// key: unsigned, forged, path-escaping, NUL-holding, tampered and oversized requests are all
/// refused, and no file is created, truncated or removed, in the tier or anywhere else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_references_are_refused_and_touch_no_file() {
    use prost::Message;
    use tonic::Code;
    let dir = tempfile::tempdir().unwrap();
    let s = serve(Address::Unix(dir.path().join("m.sock")), Address::Tcp("127.0.0.1:0".into())).await;
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let listing = |d: &std::path::Path| {
        let mut v: Vec<_> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect();
        v.sort();
        v
    };
    let before = listing(&s.cache_dir);
    let client = client_of(&s);
    client.refresh_workers().await.unwrap();
    let m = client.lookup(ROOT_INO, "m").await.unwrap();
    let legit = client.lookup(m.ino, "model.bin").await.unwrap().file_ref.expect("signed by the master");

    let evil = RefKey::generate();
    let victim_path = victim.to_str().unwrap();
    let cases: Vec<(&str, pb::FileRef, u64, Code)> = vec![
        ("unsigned", pb::FileRef { mac: vec![], ..legit.clone() }, 4096, Code::InvalidArgument),
        ("absolute path, another key", evil.sign(0, victim_path, 8, &[1; 16]), 4096, Code::PermissionDenied),
        ("../ path, another key", evil.sign(0, "../../victim", 8, &[1; 16]), 4096, Code::PermissionDenied),
        ("NUL in the path", pb::FileRef { path: "m/a\0b".into(), ..legit.clone() }, 4096, Code::InvalidArgument),
        ("size changed after signing", pb::FileRef { size: 1 << 40, ..legit.clone() }, 4096, Code::PermissionDenied),
        ("path changed after signing", pb::FileRef { path: victim_path.into(), ..legit.clone() }, 4096, Code::PermissionDenied),
        ("a mount that does not exist", s.c.refs.sign(7, "m/model.bin", 3_000_000, &[1; 16]), 4096, Code::InvalidArgument),
        ("1 TiB in one read", legit.clone(), 1 << 40, Code::InvalidArgument),
    ];
    let mut raw = pb::worker_client::WorkerClient::new(s.worker_addr.channel(cistern_rpc::tls::Role::Worker).unwrap());
    for (what, file, len, code) in cases {
        let r = pb::ReadRequest { file: Some(file), offset: 0, len, short_circuit_node: String::new(), recheck: true, ..Default::default() };
        let e = raw.read(r).await.expect_err(what);
        assert_eq!(e.code(), code, "{what}: {e:?}");
        assert_eq!(listing(&s.cache_dir), before, "{what}: the tier changed");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious", "{what}: the victim changed");
    }
    // An answered refusal is final for the client, not retried like a transport failure.
    assert_eq!(cistern_rpc::RpcError::from(raw.read(pb::ReadRequest { file: Some(evil.sign(0, "x", 1, b"v")), ..Default::default() }).await.unwrap_err()).errno, cistern_rpc::Errno::PermissionDenied);

    // The descriptor socket refuses the same forgeries, with no descriptor attached.
    let sock = cistern_rpc::descriptors::connect(&cistern_rpc::descriptors::socket_path(&s.fd_dir, 0)).unwrap();
    for file in [evil.sign(0, victim_path, 8, &[1; 16]), pb::FileRef { mac: vec![], ..legit.clone() }] {
        let req = pb::OpenRequest { file: Some(file), complete_only: false }.encode_to_vec();
        cistern_rpc::descriptors::send(&sock, &req, None).unwrap();
        let (reply, fd) = cistern_rpc::descriptors::recv(&sock).unwrap().unwrap();
        let reply = pb::OpenReply::decode(reply.as_slice()).unwrap();
        assert!(reply.errno == 13 || reply.errno == 22, "{reply:?}");
        assert!(fd.is_none());
    }
    // Garbage is answered, not a crash; the worker still serves the legit reference.
    cistern_rpc::descriptors::send(&sock, b"\xff\xff\xff", None).unwrap();
    let (reply, _) = cistern_rpc::descriptors::recv(&sock).unwrap().unwrap();
    assert_eq!(pb::OpenReply::decode(reply.as_slice()).unwrap().errno, 22);
    let ok = raw.read(pb::ReadRequest { file: Some(legit.clone()), offset: 0, len: 4096, ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(&ok.data[..], &s.data[..4096]);
    // Reading as a peer worker takes a worker's certificate; an unknown mode is refused.
    for (mode, code) in [(pb::PeerRead::CachedOnly as i32, Code::PermissionDenied), (pb::PeerRead::Fetch as i32, Code::PermissionDenied), (99, Code::InvalidArgument)] {
        let r = pb::ReadRequest { file: Some(legit.clone()), offset: 0, len: 4096, peer: mode, ..Default::default() };
        assert_eq!(raw.read(r).await.expect_err("a peer read without a worker's certificate").code(), code, "mode {mode}");
    }
}

/// A fake worker (registered over the master's Unix socket, which the client trusts for
/// metadata) answers every read with "the bytes are in the file with this inode", naming a
/// root-only file and even sending its true checksums. The client has no path to open: it
/// asks only its own run directory's descriptor sockets, finds none for this worker, and
/// reads through the worker, which sends no bytes. The victim's content never comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_worker_cannot_make_the_client_read_a_local_file() {
    use std::os::unix::fs::MetadataExt;
    struct Fake {
        file_id: u64,
        crcs: Vec<u32>,
        len: u64,
    }
    #[tonic::async_trait]
    impl pb::worker_server::Worker for Fake {
        async fn read(&self, _r: tonic::Request<pb::ReadRequest>) -> Result<tonic::Response<pb::ReadReply>, tonic::Status> {
            let local = pb::LocalRange { file_id: self.file_id, offset: 0, end: self.len, crcs: self.crcs.clone() };
            Ok(tonic::Response::new(pb::ReadReply { data: Default::default(), local: Some(local), ..Default::default() }))
        }
        async fn figures(&self, _r: tonic::Request<pb::FiguresRequest>) -> Result<tonic::Response<pb::WorkerFigures>, tonic::Status> {
            Ok(tonic::Response::new(pb::WorkerFigures::default()))
        }
        async fn warm(&self, _r: tonic::Request<pb::WarmRequest>) -> Result<tonic::Response<pb::WarmReply>, tonic::Status> {
            Ok(tonic::Response::new(pb::WarmReply::default()))
        }
        async fn cached(&self, _r: tonic::Request<pb::CachedRequest>) -> Result<tonic::Response<pb::CachedReply>, tonic::Status> {
            Ok(tonic::Response::new(pb::CachedReply::default()))
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let s = serve(Address::Unix(dir.path().join("m.sock")), Address::Unix(dir.path().join("w.sock"))).await;
    let victim = dir.path().join("shadow");
    let secret = vec![b'S'; 4096];
    std::fs::write(&victim, &secret).unwrap();
    let fake = Fake { file_id: std::fs::metadata(&victim).unwrap().ino(), crcs: vec![crc32c::crc32c(&secret)], len: 4096 };
    let fake_addr = Address::Unix(dir.path().join("fake.sock"));
    let (incoming, _) = fake_addr.bind().await.unwrap();
    let router = incoming.server().unwrap().add_service(pb::worker_server::WorkerServer::new(fake));
    tokio::spawn(async move { incoming.serve(router, std::future::pending()).await });
    // The fake takes the real worker's place in the registry.
    s.c.registry.report(pb::WorkerReport { id: 0, address: fake_addr.to_string(), figures: None, ..Default::default() });

    let own_run_dir = tempfile::tempdir().unwrap();
    let client = client_of(&s).with_short_circuit(Some(own_run_dir.path().to_path_buf()));
    client.refresh_workers().await.unwrap();
    let m = client.lookup(ROOT_INO, "m").await.unwrap();
    let f = client.lookup(m.ino, "model.bin").await.unwrap();
    let got = client.read(f.ino, 0, 4096).await.unwrap_or_default();
    assert!(!got.windows(64).any(|w| w == &secret[..64]), "the victim's bytes were served");
    assert!(client.local_file(&f).unwrap().is_none(), "a passthrough file from a fake worker");
}

/// A certificate the peer refuses (another Dataset's CA) is final: the caller learns it at
/// once instead of retrying for the whole budget as it would a restarting peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_certificate_is_final_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(Address::Unix(dir.path().join("m.sock")), Address::Tcp("127.0.0.1:0".into())).await;
    let Address::Tcp(hostport) = &s.worker_addr else { unreachable!() };
    let foreign = cistern_rpc::tls::Authority::generate().unwrap().credentials(cistern_rpc::tls::Role::Client, &[cistern_rpc::tls::Role::Client]).unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{hostport}"))
        .unwrap()
        .tls_config(foreign.client_config(cistern_rpc::tls::Role::Worker))
        .unwrap()
        .connect_lazy();
    let started = std::time::Instant::now();
    let r = cistern_rpc::with_retry("figures", Backoff::default(), || {
        let mut c = pb::worker_client::WorkerClient::new(channel.clone());
        async move { c.figures(pb::FiguresRequest {}).await }
    })
    .await;
    let e = r.expect_err("a foreign certificate was accepted");
    assert!(cistern_rpc::retry::is_final(&e), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "retried for {:?}", started.elapsed());
}

/// The first lookup in a small directory lists it, and that listing answers every later lookup
/// there without the master (here: stopped after the first); a directory over the limit is not
/// listed for a lookup, so its other names still need the master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_listing_answers_every_lookup_in_a_small_directory() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(Address::Unix(dir.path().join("m.sock")), Address::Unix(dir.path().join("w.sock"))).await;
    let ufs_root = s._dirs.0.path().to_path_buf();
    for i in 0..50 {
        std::fs::write(ufs_root.join(format!("m/f{i:03}")), b"x").unwrap();
    }
    std::fs::create_dir(ufs_root.join("big")).unwrap();
    for i in 0..4097 {
        std::fs::write(ufs_root.join(format!("big/e{i:04}")), b"").unwrap();
    }
    let client = Client::remote(&s.master_addr).unwrap().with_backoff(Backoff { first: Duration::from_millis(5), max: Duration::from_millis(20), budget: Duration::from_millis(300) });
    client.set_entry_ttl(Duration::from_secs(60));
    let m = client.lookup(ROOT_INO, "m").await.unwrap();
    let big = client.lookup(ROOT_INO, "big").await.unwrap();
    assert_eq!(client.lookup(m.ino, "f000").await.unwrap().name, "f000");
    assert_eq!(client.lookup(big.ino, "e0000").await.unwrap().name, "e0000");
    s.master.abort();
    let _ = s.master.await;
    for i in 1..50 {
        let name = format!("f{i:03}");
        assert_eq!(client.lookup(m.ino, &name).await.unwrap().name, name, "answered from the listing");
    }
    assert!(client.lookup(big.ino, "e0001").await.is_err(), "a directory over the limit was listed for a lookup");
}
