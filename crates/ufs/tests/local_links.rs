//! A `local://` mount never serves a file through a symbolic link that leads out of its root:
//! `allow_other` readers of the mount would otherwise read files they cannot read directly.

use cistern_api::Manifest;
use cistern_ufs::Ufs;
use std::os::unix::fs::symlink;

fn local_ufs(root: &std::path::Path) -> Ufs {
    let yaml = format!(
        "apiVersion: data.fluid.io/v1alpha1\nkind: Dataset\nmetadata: {{name: d}}\nspec:\n  mounts:\n  - mountPoint: local://{}\n---\napiVersion: data.fluid.io/v1alpha1\nkind: AlluxioRuntime\nmetadata: {{name: d}}\nspec:\n  tieredstore:\n    levels: [{{mediumtype: MEM, path: /dev/shm, quota: 1Gi}}]\n",
        root.display()
    );
    let mut m = Manifest::default();
    m.add_yaml(&yaml, "test").unwrap();
    Ufs::from_mount(&m.plan(None).unwrap().mounts[0]).unwrap()
}

#[tokio::test]
async fn links_out_of_the_root_are_neither_listed_nor_read() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"root only").unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("inside.txt"), b"data").unwrap();
    std::fs::create_dir(root.path().join("sub")).unwrap();
    symlink(outside.path().join("secret"), root.path().join("escape")).unwrap();
    symlink(outside.path(), root.path().join("dirlink")).unwrap();
    symlink(root.path().join("inside.txt"), root.path().join("ok")).unwrap();
    symlink("../../../../../../../../etc/shadow", root.path().join("sub/up")).unwrap();
    let ufs = local_ufs(root.path());

    let mut names: Vec<String> = ufs.list("").await.unwrap().into_iter().map(|e| e.name).collect();
    names.sort();
    assert_eq!(names, ["inside.txt", "ok", "sub"]);
    assert!(ufs.list("sub").await.unwrap().is_empty());
    for path in ["escape", "dirlink/secret", "sub/up"] {
        let e = ufs.read(path, 0, 100).await.expect_err(path);
        assert_eq!(e.errno(), cistern_rpc::Errno::NotFound, "{path}: {e}");
        assert!(ufs.stat(path).await.is_err(), "{path}");
    }
    assert_eq!(&ufs.read("ok", 0, 4).await.unwrap()[..], b"data", "a link inside the root is served");
}

/// Local files have no ETag: a read is checked against the listed size and modification time
/// around it, so a file rewritten since it was listed is ESTALE, never a mix.
#[tokio::test]
async fn a_local_read_of_a_rewritten_file_is_stale() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f.bin"), vec![1u8; 10_000]).unwrap();
    let ufs = local_ufs(root.path());
    let listed = ufs.list("").await.unwrap().into_iter().find(|e| e.name == "f.bin").unwrap();
    let to_pair = |t: std::time::SystemTime| {
        let d = t.duration_since(std::time::UNIX_EPOCH).unwrap();
        (d.as_secs() as i64, d.subsec_nanos())
    };
    let v = cistern_ufs::ObjectVersion { size: listed.size, etag: listed.etag.clone(), mtime: listed.mtime.map(to_pair) };
    assert_eq!(&ufs.read_version("f.bin", 0, 10, &v).await.unwrap()[..], &[1u8; 10]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(root.path().join("f.bin"), vec![2u8; 10_000]).unwrap();
    let e = ufs.read_version("f.bin", 0, 10, &v).await.expect_err("a rewritten file was read as the listed one");
    assert_eq!(e.errno(), cistern_rpc::Errno::Stale, "{e}");
}
