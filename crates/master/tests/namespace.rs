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
    assert_ne!(a2.version(), a.version(), "a changed object must not reuse the old cache");
    // Removed from the UFS: gone from the namespace too.
    ufs.operator().delete("b.txt").await.unwrap();
    assert_eq!(ns.lookup(ROOT_INO, "b.txt").await.unwrap_err().errno, cistern_rpc::Errno::NotFound);
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

type Entry = (String, u64, u64, (i64, u32), Option<String>);

/// Every path of the namespace with its inode number, size, mtime and etag.
async fn walk(ns: &Namespace) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut stack = vec![(ROOT_INO, String::new())];
    while let Some((dir, path)) = stack.pop() {
        for n in ns.readdir(dir).await.unwrap() {
            let p = format!("{path}/{}", n.name);
            if n.is_dir() {
                stack.push((n.ino, p.clone()));
            }
            out.push((p, n.ino, n.size, n.mtime, n.etag.clone()));
        }
    }
    out.sort();
    out
}

/// A UFS that cannot be reached (connection refused on 127.0.0.1:1), shown as `display`.
fn unreachable_ufs(display: &str) -> Ufs {
    cistern_ufs::install_tls_provider();
    let s3 = opendal::services::S3::default()
        .bucket("gone")
        .endpoint("http://127.0.0.1:1")
        .region("us-east-1")
        .disable_config_load()
        .disable_ec2_metadata()
        .skip_signature();
    Ufs::from_operator(opendal::Operator::new(s3).unwrap(), display)
}

#[tokio::test]
async fn a_reopened_store_serves_the_same_namespace_with_the_ufs_unreachable() {
    let meta = tempfile::tempdir().unwrap();
    let ufs = memory_ufs(&[("a/b/c.txt", b"ccc"), ("a/d.txt", b"dd"), ("e.txt", b"e"), ("a/b/deep/f", b"")]).await;
    let mounts = |u: &Ufs| vec![NsMount { ufs: u.clone(), path: "/".into() }];
    let before = {
        let ns = Namespace::open(meta.path(), mounts(&ufs), None).unwrap();
        let entries = walk(&ns).await;
        ns.store_summary(6, 4).unwrap();
        entries
    };
    assert_eq!(before.len(), 7, "{before:?}");
    // Reopened with the UFS unreachable: the same paths, inode numbers, sizes and mtimes.
    let gone = unreachable_ufs("memory://t");
    let ns = Namespace::open(meta.path(), mounts(&gone), None).unwrap();
    assert_eq!(walk(&ns).await, before);
    assert_eq!(ns.stored_summary(), Some((6, 4)), "the count survives too");
    let c = ns.lookup(before.iter().find(|e| e.0 == "/a/b").unwrap().1, "c.txt").await.unwrap();
    assert_eq!(c.ufs_path, "a/b/c.txt");
    assert_eq!(ns.getattr(c.ino).unwrap().ufs_path, "a/b/c.txt");
    drop(ns);
    // With autoSync on, a re-listing that fails keeps serving the stored listing, and the UFS
    // is then left alone for a while: one failed listing, not one wait per directory.
    let ns = Namespace::open(meta.path(), mounts(&gone), Some(Duration::ZERO)).unwrap();
    assert_eq!(walk(&ns).await, before);
    assert_eq!(walk(&ns).await, before);
    assert_eq!(gone.counters.list_requests.load(std::sync::atomic::Ordering::Relaxed), 1, "the unreachable UFS was tried again at once");
}

#[tokio::test]
async fn a_changed_mount_table_lists_again() {
    let meta = tempfile::tempdir().unwrap();
    let one = memory_ufs(&[("x.txt", b"x")]).await;
    {
        let ns = Namespace::open(meta.path(), vec![NsMount { ufs: one, path: "/".into() }], None).unwrap();
        assert_eq!(walk(&ns).await.len(), 1);
    }
    let op = opendal::Operator::new(opendal::services::Memory::default()).unwrap();
    op.write("y.txt", b"yy".to_vec()).await.unwrap();
    op.write("z.txt", b"z".to_vec()).await.unwrap();
    let two = Ufs::from_operator(op, "memory://other");
    let ns = Namespace::open(meta.path(), vec![NsMount { ufs: two, path: "/".into() }], None).unwrap();
    let names: Vec<String> = walk(&ns).await.into_iter().map(|e| e.0).collect();
    assert_eq!(names, ["/y.txt", "/z.txt"]);
    assert_eq!(ns.stored_summary(), None, "a count of the old mounts is dropped");
}
