//! The cache engine's benchmark: every figure is printed next to a reference measured in the
//! same run on the same machine, as a ratio.
//!
//! 1. Cold sequential read of one large object through the mount vs one single-stream GET of
//!    it from the same S3 server (SeaweedFS on 127.0.0.1).
//! 2. Warm sequential read through the mount vs reading the cache file directly (tmpfs).
//! 3. Cold random 4 KiB reads through the mount vs ranged GETs of the same 4 KiB, and how many
//!    bytes each read pulled from the S3 server (read amplification).
//! 4. Eviction churn: two passes over the object with a cache a quarter of its size.
//!
//! `cargo bench -p cistern-cli --bench cache` (or `bench/cache.sh`); `CISTERN_BENCH_MIB`
//! sets the object size (default 1024).

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;
use support::s3::{self, ACCESS_KEY, BUCKET, SECRET_KEY};
use support::*;

const MIB: u64 = 1 << 20;
const OBJECT: &str = "bench/big.bin";

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks; nothing to list
    }
    let mib: u64 = std::env::var("CISTERN_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let size = mib * MIB;
    let server = s3::server();
    let op = s3::operator(server);
    let rt = tokio::runtime::Runtime::new().unwrap();
    eprintln!("uploading a {mib} MiB object to {} ...", server.endpoint);
    rt.block_on(upload(&op, size));

    let single_get = rt.block_on(single_stream_get(&op)).max(rt.block_on(single_stream_get(&op)));
    println!("reference: single-stream GET of {mib} MiB from the S3 server: {:.0} MiB/s", single_get);

    let s = Scratch::new();
    let shm = tempfile::Builder::new().prefix("cistern-bench-").tempdir_in("/dev/shm").unwrap();

    // 1 and 2: a cache large enough for the object.
    let file = s.write("big.yaml", &yaml(&server.endpoint, shm.path(), &format!("{}Mi", mib * 2), "0.95", "0.7"));
    let up = Up::start(&s, &file, &[], "default", "bench");
    let target = up.mountpoint.join("big.bin");
    let cold = read_through(&target, size);
    row("cold sequential read through the mount", cold, "single-stream GET", single_get);
    // Best of three: the first open right after the cold pass may still find the cold
    // descriptor's release in flight and read normally instead of by passthrough.
    let warm = (0..3).map(|_| read_through(&target, size)).fold(0.0, f64::max);
    let cache_file = tree::largest_file(shm.path());
    let direct = (0..3).map(|_| read_through(&cache_file, size)).fold(0.0, f64::max);
    row("warm sequential read through the mount (best of 3)", warm, "reading the cache file directly", direct);
    drop(up);

    // 3: random 4 KiB reads on a cold cache.
    let up = Up::start(&s, &file, &[], "default", "bench");
    let base = Up::web_url(&s, "default", "bench");
    let offsets: Vec<u64> = (0..1000u64).map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) % (size - 4096)).collect();
    let target = up.mountpoint.join("big.bin");
    let f = std::fs::File::open(&target).unwrap();
    let mut buf = vec![0u8; 4096];
    let t = Instant::now();
    for &off in &offsets {
        f.read_exact_at(&mut buf, off).unwrap();
    }
    let mount_rate = offsets.len() as f64 / t.elapsed().as_secs_f64();
    let fetched = metric(&http("GET", &format!("{base}/metrics")).1, "cistern_ufs_fetched_bytes_total{").unwrap_or(0);
    let t = Instant::now();
    rt.block_on(async {
        for &off in &offsets {
            op.read_with(OBJECT).range(off..off + 4096).await.unwrap();
        }
    });
    let get_rate = offsets.len() as f64 / t.elapsed().as_secs_f64();
    println!(
        "cold random 4 KiB reads through the mount: {mount_rate:.0}/s vs ranged GETs: {get_rate:.0}/s (ratio {:.2}); \
         {:.0} KiB fetched per read (a whole 4 MiB block would be 4096 KiB)",
        mount_rate / get_rate,
        fetched as f64 / offsets.len() as f64 / 1024.0
    );
    drop(up);

    // 4: eviction churn with a cache a quarter of the object.
    let quota = (mib / 4).max(16);
    let small = s.write("small.yaml", &yaml(&server.endpoint, shm.path(), &format!("{quota}Mi"), "0.9", "0.7"));
    let up = Up::start(&s, &small, &[], "default", "bench");
    let target = up.mountpoint.join("big.bin");
    let first = read_through(&target, size);
    let second = read_through(&target, size);
    row(&format!("churn, pass 1 ({quota} MiB cache)"), first, "single-stream GET", single_get);
    row(&format!("churn, pass 2 ({quota} MiB cache)"), second, "single-stream GET", single_get);
    drop(up);

    // 5: the same object on a far server, where each connection is limited as object stores
    //    limit them (tests/support/far.rs): what parallel range fetches are for.
    let link = match support::far::FarLink::up(FAR_MIB_PER_CONNECTION) {
        Ok(link) => link,
        Err(e) => return println!("far server: skipped ({e})"),
    };
    let far = s3::far_server(&link);
    let op = s3::operator(&far);
    eprintln!("uploading the object to the far server {} ...", far.endpoint);
    rt.block_on(upload(&op, size));
    let far_get = rt.block_on(single_stream_get(&op));
    let parallel = rt.block_on(parallel_ranged_get(&op, size, 8));
    println!(
        "far server ({FAR_MIB_PER_CONNECTION} MiB/s per connection): single-stream GET {far_get:.0} MiB/s, 8 ranged GETs at once {parallel:.0} MiB/s"
    );
    let far_file = s.write("far.yaml", &yaml(&far.endpoint, shm.path(), &format!("{}Mi", mib * 2), "0.95", "0.7"));
    let up = Up::start(&s, &far_file, &[], "default", "bench");
    let cold = read_through(&up.mountpoint.join("big.bin"), size);
    row("far server: cold sequential read through the mount", cold, "single-stream GET", far_get);
    drop(up);
    drop(link);
}

/// The per-connection rate of the far server.
const FAR_MIB_PER_CONNECTION: u64 = 85;

/// The object read as `streams` ranged GETs at a time, in 4 MiB ranges; MiB/s.
async fn parallel_ranged_get(op: &opendal::Operator, size: u64, streams: usize) -> f64 {
    use futures::StreamExt;
    let t = Instant::now();
    let part = 4 * MIB;
    let reads = (0..size.div_ceil(part)).map(|i| {
        let op = op.clone();
        async move { op.read_with(OBJECT).range(i * part..((i + 1) * part).min(size)).await.unwrap().len() as u64 }
    });
    let n: u64 = futures::stream::iter(reads).buffer_unordered(streams).fold(0, |a, b| async move { a + b }).await;
    n as f64 / MIB as f64 / t.elapsed().as_secs_f64()
}

fn row(what: &str, value: f64, reference: &str, ref_value: f64) {
    println!("{what}: {value:.0} MiB/s vs {reference}: {ref_value:.0} MiB/s (ratio {:.2})", value / ref_value);
}

fn yaml(endpoint: &str, tier: &Path, quota: &str, high: &str, low: &str) -> String {
    format!(
        "apiVersion: data.fluid.io/v1alpha1
kind: Dataset
metadata:
  name: bench
spec:
  mounts:
    - mountPoint: s3://{BUCKET}/bench
      name: bench
      path: /
      options:
        fs.s3.endpoint: {endpoint}
        fs.s3.region: us-east-1
        fs.s3.accessKeyId: {ACCESS_KEY}
        fs.s3.accessKeySecret: {SECRET_KEY}
---
apiVersion: data.fluid.io/v1alpha1
kind: JindoRuntime
metadata:
  name: bench
spec:
  replicas: 1
  tieredstore:
    levels:
      - mediumtype: MEM
        path: {tier}
        quota: {quota}
        high: \"{high}\"
        low: \"{low}\"
",
        tier = tier.display()
    )
}

async fn upload(op: &opendal::Operator, size: u64) {
    let part = 16 * MIB;
    let mut w = op.writer_with(OBJECT).chunk(part as usize).concurrent(4).await.unwrap();
    for i in 0..size.div_ceil(part) {
        w.write(tree::bytes(i + 1, part.min(size - i * part) as usize)).await.unwrap();
    }
    w.close().await.unwrap();
}

/// One GET of the whole object, streamed; MiB/s.
async fn single_stream_get(op: &opendal::Operator) -> f64 {
    use futures::TryStreamExt;
    let t = Instant::now();
    let mut stream = op.reader(OBJECT).await.unwrap().into_bytes_stream(..).await.unwrap();
    let mut n = 0u64;
    while let Some(chunk) = stream.try_next().await.unwrap() {
        n += chunk.len() as u64;
    }
    n as f64 / MIB as f64 / t.elapsed().as_secs_f64()
}

/// Reads a file from start to end in 1 MiB reads after dropping its page cache; MiB/s.
fn read_through(path: &Path, expect: u64) -> f64 {
    tree::drop_page_cache(path.parent().unwrap());
    tree::sequential_read_mib_s(path, expect)
}
