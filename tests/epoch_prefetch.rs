//! Epoch-aware prefetch with real processes: once a reader has opened three files of a
//! directory, the directory's other files are fetched into the cache ahead of it (and not
//! with the prefetch turned off).

mod support;

use support::*;

fn cached_bytes(s: &Scratch) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(&s.cistern(&["get", "dataset", "-o", "json"]).stdout).unwrap();
    let text = v["status"]["cacheStates"]["cached"].as_str().unwrap_or("0B").to_string();
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let mult = match unit {
        "KiB" => 1u64 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => 1,
    };
    (n.parse::<f64>().unwrap_or(0.0) * mult as f64) as u64
}

fn run(prefetch: bool) -> u64 {
    let s = Scratch::new();
    let ufs = s.path("ufs");
    std::fs::create_dir_all(ufs.join("train")).unwrap();
    for i in 0..40 {
        std::fs::write(ufs.join(format!("train/sample-{i:03}.bin")), vec![i as u8; 256 << 10]).unwrap();
    }
    let yaml = dataset_yaml("ep", &format!("local://{}", ufs.display()), "", &s.path("cache"), "256Mi", 1);
    let file = s.write("ep.yaml", &yaml);
    if prefetch {
        // SAFETY: this test binary runs one test; `up` inherits the variable.
        unsafe { std::env::set_var("CISTERN_EPOCH_PREFETCH", "1") };
    }
    let up = Up::start(&s, &file, &[], "default", "ep");
    unsafe { std::env::remove_var("CISTERN_EPOCH_PREFETCH") };
    for i in [7, 3, 12] {
        let got = std::fs::read(up.mountpoint.join(format!("train/sample-{i:03}.bin"))).unwrap();
        assert!(got.len() == 256 << 10 && got.iter().all(|b| *b == i as u8));
    }
    // The status is rewritten every second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut cached = 0;
    while std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(500));
        cached = cached_bytes(&s);
        if cached >= 40 * (256 << 10) {
            break;
        }
    }
    // Every file still reads right.
    for i in 0..40 {
        let got = std::fs::read(up.mountpoint.join(format!("train/sample-{i:03}.bin"))).unwrap();
        assert!(got.len() == 256 << 10 && got.iter().all(|b| *b == i as u8), "sample {i}");
    }
    cached
}

#[test]
fn a_walk_through_a_directory_prefetches_the_rest_and_only_with_prefetch_on() {
    let with = run(true);
    assert!(with >= 40 * (256 << 10) * 99 / 100, "cached {with} of {} after three files were read", 40 * (256 << 10));
    let without = run(false);
    assert!(without < 10 * (256 << 10), "cached {without} with the prefetch off: more than the files read");
}
