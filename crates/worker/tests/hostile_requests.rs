//! Property test of the worker's request handlers against hostile peers: arbitrary file
//! references (forged, unsigned, tampered, path-escaping, NUL-holding, oversized), offsets and
//! lengths through the gRPC service and the descriptor socket's handler. Whatever comes in:
//! no panic, no hang, forgeries refused, nothing created outside the tier and no file in the
//! tier that is not a cache key, and every byte served for a signed reference is the object's.
//!
//! Cases: `PROPTEST_CASES` (CI: the default 256 per property, about a second; a longer run:
//! `PROPTEST_CASES=100000 cargo test -p cistern-worker --test hostile_requests`). Failing
//! cases found are kept in `<test>.proptest-regressions` beside the test (the corpus) and replayed first.

use cistern_rpc::pb::worker_server::Worker as _;
use cistern_rpc::{pb, CacheKey, RefKey};
use cistern_ufs::Ufs;
use cistern_worker::rpc::WorkerService;
use cistern_worker::{LevelSpec, ReadOptions, Worker};
use proptest::prelude::*;
use std::sync::{Arc, OnceLock};

const SIZE: usize = 300_000;

struct Fixture {
    rt: tokio::runtime::Runtime,
    service: WorkerService,
    refs: RefKey,
    content: Vec<u8>,
    tier: std::path::PathBuf,
    outside: std::path::PathBuf,
    _dirs: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dirs = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..SIZE).map(|i| (i * 13 % 251) as u8).collect();
        let op = opendal::Operator::new(opendal::services::Memory::default()).unwrap();
        rt.block_on(op.write("d/obj.bin", content.clone())).unwrap();
        let tier = dirs.path().join("tier");
        let worker = Worker::open(0, &[LevelSpec::single("SSD", &tier, 8 << 20, 0.9, 0.5)], ReadOptions::default()).unwrap();
        let refs = RefKey::generate();
        let service = WorkerService { worker, mounts: vec![Ufs::from_operator(op, "memory://t")], refs: refs.clone() };
        let outside = dirs.path().join("victim");
        std::fs::write(&outside, b"precious").unwrap();
        Fixture { rt, service, refs, content, tier, outside, _dirs: dirs }
    })
}

fn path_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("d/obj.bin".to_string()),
        Just("../../victim".to_string()),
        Just("/etc/passwd".to_string()),
        Just("d/\0obj".to_string()),
        "[a-z./]{0,40}",
        any::<String>(),
        proptest::collection::vec(any::<char>(), 0..5000).prop_map(|v| v.into_iter().collect()),
    ]
}

/// How a reference is made: signed right, signed then tampered, by another key, or not at all.
#[derive(Debug, Clone)]
enum Signing {
    Right,
    Tampered(u64),
    OtherKey,
    Garbage(Vec<u8>),
}

fn signing() -> impl Strategy<Value = Signing> {
    prop_oneof![
        3 => Just(Signing::Right),
        1 => any::<u64>().prop_map(Signing::Tampered),
        1 => Just(Signing::OtherKey),
        1 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Signing::Garbage),
    ]
}

fn make_ref(f: &Fixture, mount: u32, path: &str, size: u64, version: &[u8], how: &Signing) -> (pb::FileRef, bool) {
    match how {
        Signing::Right => (f.refs.sign(mount, path, size, version), true),
        Signing::Tampered(size2) => {
            let r = f.refs.sign(mount, path, size, version);
            let forged = *size2 != size;
            (pb::FileRef { size: *size2, ..r }, !forged)
        }
        Signing::OtherKey => (RefKey::generate().sign(mount, path, size, version), false),
        Signing::Garbage(mac) => (pb::FileRef { mount, path: path.to_string(), size, version: version.to_vec(), mac: mac.clone(), ..Default::default() }, false),
    }
}

fn tier_is_clean(f: &Fixture) {
    for e in std::fs::read_dir(&f.tier).unwrap().flatten() {
        let name = e.file_name().into_string().unwrap();
        if name == cistern_worker::store::identity::IDENTITY_FILE {
            continue; // the worker's own, made at start
        }
        let key = name.strip_suffix(".crc").unwrap_or(&name);
        assert!(CacheKey::parse(key).is_some(), "a file in the tier that is no cache key: {name}");
    }
    assert_eq!(std::fs::read(&f.outside).unwrap(), b"precious");
}

proptest! {
    #[test]
    fn read_requests_never_panic_and_serve_only_the_objects_bytes(
        mount in prop_oneof![Just(0u32), any::<u32>()],
        path in path_strategy(),
        size in prop_oneof![Just(SIZE as u64), any::<u64>(), 0u64..(SIZE as u64 * 2)],
        version in proptest::collection::vec(any::<u8>(), 0..80),
        how in signing(),
        offset in prop_oneof![0u64..(SIZE as u64 + 10), any::<u64>()],
        len in prop_oneof![0u64..(1 << 20), any::<u64>()],
        recheck in any::<bool>(),
    ) {
        let f = fixture();
        let (file, signed) = make_ref(f, mount, &path, size, &version, &how);
        let request = pb::ReadRequest { file: Some(file), offset, len, short_circuit_node: String::new(), recheck, ..Default::default() };
        let answer = f.rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(20), f.service.read(tonic::Request::new(request))).await
        }).expect("a read never hangs");
        match answer {
            Ok(reply) => {
                prop_assert!(signed, "a forged reference was served");
                let data = reply.into_inner().data;
                prop_assert!(data.len() as u64 <= len, "more bytes than asked");
                // A signed reference to the real object (with the real size) serves its bytes.
                if mount == 0 && path == "d/obj.bin" && size == SIZE as u64 && !data.is_empty() {
                    let start = offset as usize;
                    prop_assert_eq!(&data[..], &f.content[start..start + data.len()]);
                }
            }
            Err(status) => {
                if !signed {
                    prop_assert!(matches!(status.code(), tonic::Code::PermissionDenied | tonic::Code::InvalidArgument), "{status:?}");
                }
            }
        }
        tier_is_clean(f);
    }

    #[test]
    fn descriptor_requests_never_panic_and_forgeries_get_no_descriptor(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        path in path_strategy(),
        how in signing(),
        complete_only in any::<bool>(),
    ) {
        use prost::Message;
        let f = fixture();
        // Raw garbage first, then a well-formed request with a (possibly forged) reference.
        let (reply, fd) = cistern_worker::descriptors::answer(&bytes, &f.service.worker, &f.refs);
        prop_assert!(fd.is_none() || reply.errno == 0);
        let (file, signed) = make_ref(f, 0, &path, SIZE as u64, b"v1", &how);
        let request = pb::OpenRequest { file: Some(file), complete_only }.encode_to_vec();
        let (reply, fd) = cistern_worker::descriptors::answer(&request, &f.service.worker, &f.refs);
        if !signed {
            prop_assert!(fd.is_none() && (reply.errno == 13 || reply.errno == 22), "{reply:?}");
        }
        if let Some(file) = fd {
            // Read-only: a reader cannot change what the worker serves.
            prop_assert!(std::os::unix::fs::FileExt::write_at(&file, b"x", 0).is_err());
        }
        tier_is_clean(f);
    }
}

#[test]
fn the_fixture_serves_a_signed_read() {
    let f = fixture();
    let r = pb::ReadRequest { file: Some(f.refs.sign(0, "d/obj.bin", SIZE as u64, b"v")), offset: 10, len: 100, ..Default::default() };
    let data = f.rt.block_on(f.service.read(tonic::Request::new(r))).unwrap().into_inner().data;
    assert_eq!(&data[..], &f.content[10..110]);
    let _ = Arc::new(());
}
