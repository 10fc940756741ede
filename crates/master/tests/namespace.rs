//! The namespace against an in-memory UFS: stable inode numbers, mounts under their paths, and
//! re-listing that notices a changed object (so its cache key changes).

use cistern_master::{Namespace, NsMount, ROOT_INO};
use cistern_ufs::Ufs;
use std::time::Duration;

async fn memory_ufs(files: &[(&str, &[u8])]) -> Ufs {
    let op = opendal::Operator::new(opendal::services::Memory::default()).unwrap();
    for (p, d) in files {
        op.write(p, d.to_vec()).await.unwrap();
    }
    Ufs::from_operator(op, "memory://t")
}

#[tokio::test]
async fn a_changed_object_gets_a_new_cache_key_and_keeps_its_inode() {
    let ufs = memory_ufs(&[("dir/a.txt", b"one"), ("b.txt", b"bee")]).await;
    let ns = Namespace::new(vec![NsMount { ufs: ufs.clone(), path: "/".into() }], Some(Duration::ZERO));
    let dir = ns.lookup(ROOT_INO, "dir").await.unwrap();
    let a = ns.lookup(dir.ino, "a.txt").await.unwrap();
    assert_eq!(a.size, 3);
    ufs.operator().write("dir/a.txt", b"changed!".to_vec()).await.unwrap();
    let a2 = ns.lookup(dir.ino, "a.txt").await.unwrap();
    assert_eq!(a2.ino, a.ino, "same path, same inode");
    assert_eq!(a2.size, 8);
    assert_ne!(a2.cache_key(), a.cache_key(), "a changed object must not reuse the old cache");
    // Removed from the UFS: gone from the namespace too.
    ufs.operator().delete("b.txt").await.unwrap();
    assert_eq!(ns.lookup(ROOT_INO, "b.txt").await.unwrap_err().errno, 2);
}

#[tokio::test]
async fn without_auto_sync_a_listing_is_kept() {
    let ufs = memory_ufs(&[("a.txt", b"one")]).await;
    let ns = Namespace::new(vec![NsMount { ufs: ufs.clone(), path: "/".into() }], None);
    assert_eq!(ns.readdir(ROOT_INO).await.unwrap().len(), 1);
    ufs.operator().write("new.txt", b"x".to_vec()).await.unwrap();
    assert_eq!(ns.readdir(ROOT_INO).await.unwrap().len(), 1);
    assert_eq!(ufs.counters.list_requests.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test]
async fn mounts_appear_under_their_paths_with_made_up_parents() {
    let a = memory_ufs(&[("x", b"1")]).await;
    let b = memory_ufs(&[("y", b"2")]).await;
    let ns = Namespace::new(
        vec![NsMount { ufs: a, path: "/first".into() }, NsMount { ufs: b, path: "/deep/second".into() }],
        None,
    );
    let names: Vec<String> = ns.readdir(ROOT_INO).await.unwrap().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["deep", "first"]);
    let deep = ns.lookup(ROOT_INO, "deep").await.unwrap();
    let second = ns.lookup(deep.ino, "second").await.unwrap();
    assert_eq!(ns.lookup(second.ino, "y").await.unwrap().size, 1);
    let total = cistern_master::summary::count(&ns).await.unwrap();
    assert_eq!((total.files, total.total_bytes), (2, 2));
}
