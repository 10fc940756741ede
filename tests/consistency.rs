//! An object that changes on the S3 server (SeaweedFS on 127.0.0.1) is read new through the
//! mount once the sync interval has passed, whether or not a descriptor of the old version is
//! still open, and a descriptor opened before the change never returns bytes of the new
//! version: it keeps the old bytes (passthrough, page cache) or fails with ESTALE.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::time::Duration;
use support::s3::{self, ACCESS_KEY, BUCKET, SECRET_KEY};
use support::*;

const SIZE: usize = 3 << 20;

fn version(v: u8) -> Vec<u8> {
    (0..SIZE).map(|i| ((i % 241) as u8).wrapping_add(v.wrapping_mul(37))).collect()
}

fn upload(content: Vec<u8>) {
    s3::upload("cons", &BTreeMap::from([("model.bin".to_string(), content)]));
}


#[test]
fn a_rewritten_object_is_read_new_and_an_old_descriptor_never_mixes_versions() {
    let s = Scratch::new();
    upload(version(1));
    let endpoint = &s3::server().endpoint;
    let secret = format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: keys}}\nstringData: {{id: {ACCESS_KEY}, secret: {SECRET_KEY}}}\n---\n");
    let extra = format!(
        "      options: {{fs.s3.endpoint: '{endpoint}', fs.s3.region: us-east-1}}\n      encryptOptions:\n        - {{name: fs.s3.accessKeyId, valueFrom: {{secretKeyRef: {{name: keys, key: id}}}}}}\n        - {{name: fs.s3.accessKeySecret, valueFrom: {{secretKeyRef: {{name: keys, key: secret}}}}}}\n"
    );
    // Alluxio's property: listings and the kernel's entries are trusted for 1 s.
    let spec = format!(
        "  replicas: 1\n  properties:\n    alluxio.user.file.metadata.sync.interval: 1s\n  tieredstore:\n    levels:\n      - {{mediumtype: SSD, path: {}, quota: 256Mi}}\n",
        s.path("ssd").display()
    );
    let file = s.write("cons.yaml", &(secret + &dataset_with_runtime("cons", &format!("s3://{BUCKET}/cons"), &extra, "JindoRuntime", &spec)));
    let up = Up::start(&s, &file, &[], "default", "cons");
    let path = up.mountpoint.join("model.bin");
    let past_the_interval = || std::thread::sleep(Duration::from_millis(2500));

    // 1. No descriptor open: read whole (cached, complete: passthrough from now on), rewritten
    //    at the same size, read new.
    assert!(read_all(&path) == version(1));
    assert!(read_all(&path) == version(1), "warm");
    upload(version(2));
    past_the_interval();
    assert!(read_all(&path) == version(2), "a same-size rewrite read old after the sync interval");

    // 2. A descriptor of version 2 stays open across the change to version 3.
    let old = std::fs::File::open(&path).unwrap();
    let mut head = vec![0u8; 4096];
    old.read_exact_at(&mut head, 0).unwrap();
    assert!(head == version(2)[..4096]);
    upload(version(3));
    past_the_interval();
    assert!(read_all(&path) == version(3), "a new open read the old version while an old descriptor was open");
    let mut buf = vec![0u8; 1 << 20];
    match old.read_exact_at(&mut buf, 1 << 20) {
        Ok(()) => assert!(buf == version(2)[1 << 20..2 << 20], "the old descriptor returned bytes of another version"),
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ESTALE), "{e}"),
    }
    drop(old);

    // 3. Replaced by an object of another size between two reads of one descriptor.
    let held = std::fs::File::open(&path).unwrap();
    held.read_exact_at(&mut head, 0).unwrap();
    let v4: Vec<u8> = version(4)[..SIZE / 2].to_vec();
    upload(v4.clone());
    past_the_interval();
    match held.read_exact_at(&mut buf, 1 << 20) {
        Ok(()) => assert!(buf == version(3)[1 << 20..2 << 20], "a mix of two versions"),
        Err(e) => assert!(matches!(e.raw_os_error(), Some(libc::ESTALE)) || e.kind() == std::io::ErrorKind::UnexpectedEof, "{e}"),
    }
    assert!(read_all(&path) == v4, "the replaced object");
}

/// What a worker's UFS reads are conditional on: SeaweedFS (like S3) honours `If-Match` on a
/// ranged GET, so a read of the version the master listed fails with ESTALE once the object is
/// replaced (same size), instead of caching bytes of the new version under the old one's key.
#[test]
fn ranged_reads_are_conditional_on_the_listed_etag() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    s3::upload("cond", &BTreeMap::from([("obj.bin".to_string(), version(1))]));
    let op = s3::operator(s3::server());
    let ufs = cistern_ufs::Ufs::from_operator(op, "s3://test");
    let listed = rt.block_on(ufs.stat("cond/obj.bin")).unwrap();
    let v1 = cistern_ufs::ObjectVersion { size: SIZE as u64, etag: listed.etag.clone(), mtime: None };
    assert!(v1.etag.is_some(), "SeaweedFS lists ETags");
    let got = rt.block_on(ufs.read_version("cond/obj.bin", 4096, 4096, &v1)).unwrap();
    assert!(got[..] == version(1)[4096..8192]);
    s3::upload("cond", &BTreeMap::from([("obj.bin".to_string(), version(2))]));
    let e = rt.block_on(ufs.read_version("cond/obj.bin", 8192, 4096, &v1)).expect_err("a read of a replaced version");
    assert_eq!(e.errno(), cistern_rpc::Errno::Stale, "{e}");
    let v2 = cistern_ufs::ObjectVersion { etag: rt.block_on(ufs.stat("cond/obj.bin")).unwrap().etag, ..v1 };
    assert!(rt.block_on(ufs.read_version("cond/obj.bin", 8192, 4096, &v2)).unwrap()[..] == version(2)[8192..12288]);
}
