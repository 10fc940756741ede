//! The seeds' YAML (../shared/examples) must load and plan unchanged once placeholders are filled.

use cistern_api::{Manifest, Medium, Scheme};
use std::path::PathBuf;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/examples")
}

/// Replaces each `<PLACEHOLDER>` with a plausible lowercase value.
fn fill(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start..].find('>') else { break };
        out.push_str(&rest[..start]);
        let inner = &rest[start + 1..start + len];
        out.push_str(&inner.to_lowercase().replace('_', "-"));
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

fn load(file: &str) -> Manifest {
    let path = examples().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (the tests expect ../shared beside the checkout)", path.display()));
    let mut m = Manifest::default();
    m.add_yaml(&fill(&text), file).unwrap();
    m
}

#[test]
fn seed_001_jindo_with_secret() {
    let m = load("seed-001-jindo-fuse-recovery.yaml");
    let plan = m.plan(None).unwrap();
    assert_eq!(plan.name, "demo-dataset");
    assert_eq!(plan.runtime_kind, "JindoRuntime");
    assert_eq!(plan.replicas, 2);
    assert_eq!(plan.mounts[0].scheme, Scheme::Oss);
    assert_eq!(plan.mounts[0].path, "/");
    assert_eq!(plan.mounts[0].option(&["fs.oss.accessKeyId"]).unwrap(), "your-access-key-id");
    assert_eq!(plan.tiers[0].medium, Medium::Mem);
    assert_eq!(plan.tiers[0].quota(), 2 << 30);
    assert_eq!((plan.tiers[0].high, plan.tiers[0].low), (0.99, 0.95));
    // Secrets never print.
    let dbg = format!("{plan:?}");
    assert!(!dbg.contains("your-access-key-secret"), "secret leaked in Debug");
}

#[test]
fn seed_002_meta_dir_and_capacity() {
    let m = load("seed-002-jindo-meta-persist.yaml");
    assert_eq!(m.others, vec!["PersistentVolumeClaim".to_string()]);
    let plan = m.plan(None).unwrap();
    assert_eq!(plan.meta_dir, PathBuf::from("/root/jindofsx-meta"));
    // Seed 000 prints CACHE CAPACITY 24.00GiB for 2 workers x 12Gi.
    assert_eq!(cistern_api::quantity::format_bytes(plan.cache_capacity()), "24.00GiB");
    assert_eq!(plan.runtime.spec().volumes[0].name, "meta-vol");
}

#[test]
fn seed_004_juicefs_quota_is_mib() {
    let m = load("seed-004-juicefs.yaml");
    let plan = m.plan(None).unwrap();
    assert_eq!(plan.runtime_kind, "JuiceFSRuntime");
    assert_eq!(plan.mounts[0].scheme, Scheme::JuiceFs);
    assert_eq!(plan.tiers[0].quota(), 40960 << 20);
}

#[test]
fn app_pods_are_accepted_as_other_kinds() {
    let m = load("seed-app-pods.yaml");
    assert_eq!(m.others.len(), 3);
    assert!(m.plan(None).unwrap_err().contains("no `kind: Dataset`"));
}
