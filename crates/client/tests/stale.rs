//! A UFS object that changes is never served from the cache of its old content once the
//! metadata has seen the change (size, mtime or etag are part of the cache key).

use cistern_client::Client;
use cistern_master::{Namespace, NsMount, ROOT_INO};
use cistern_ufs::Ufs;
use cistern_worker::{LevelSpec, ReadOptions, Worker};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_object_is_read_anew_not_from_the_old_cache() {
    // A local directory: it reports mtimes (the in-memory service reports none).
    let root = tempfile::tempdir().unwrap();
    let op = opendal::Operator::new(opendal::services::Fs::default().root(root.path().to_str().unwrap())).unwrap();
    op.write("model.bin", vec![1u8; 300_000]).await.unwrap();
    let ufs = Ufs::from_operator(op.clone(), "local://m");
    // A zero sync TTL: every lookup re-lists, as autoSync does once its TTL has passed.
    let ns = Arc::new(Namespace::new(vec![NsMount { ufs: ufs.clone(), path: "/".into() }], Some(Duration::ZERO)));
    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::open(0, &[LevelSpec::single("SSD", dir.path(), 64 << 20, 1.0, 1.0)], ReadOptions::default()).unwrap();
    let client = Client::local(ns, vec![worker]);

    let f = client.lookup(ROOT_INO, "model.bin").await.unwrap();
    assert_eq!(&client.read(f.ino, 0, 300_000).await.unwrap()[..], &vec![1u8; 300_000][..]);
    assert_eq!(&client.read(f.ino, 1000, 10).await.unwrap()[..], &[1u8; 10], "served from the cache");
    let fetched = ufs.counters.read_bytes.load(std::sync::atomic::Ordering::Relaxed);

    // Same size, new content: only the mtime/etag tell them apart.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    op.write("model.bin", vec![2u8; 300_000]).await.unwrap();
    let f2 = client.lookup(ROOT_INO, "model.bin").await.unwrap();
    assert_eq!(f2.ino, f.ino, "same path, same inode");
    assert_eq!(&client.read(f2.ino, 1000, 10).await.unwrap()[..], &[2u8; 10], "stale bytes served");
    assert!(ufs.counters.read_bytes.load(std::sync::atomic::Ordering::Relaxed) > fetched, "the new content came from the UFS");
}
