//! Fluid-shaped statuses of a running Dataset and runtime, and the tables `get` prints.

use cistern_api::quantity::format_bytes;
use cistern_client::CacheStats;
use cistern_master::Summary;
use cistern_api::{DatasetStatus, RuntimeRef, RuntimeStatus};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::SystemTime;

pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "0.0%".into();
    }
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}

/// `status` of the Dataset, as Fluid's dataset controller fills it.
pub fn dataset_status(phase: &str, summary: &Summary, stats: &CacheStats, runtime: (&str, &str, &str)) -> DatasetStatus {
    let (ufs_total, file_num, total) = match summary {
        Summary::Done(s) => (format_bytes(s.total_bytes), s.files.to_string(), Some(s.total_bytes)),
        Summary::Calculating => ("[Calculating]".into(), "[Calculating]".into(), None),
        Summary::Failed(_) => ("[Unknown]".into(), "[Unknown]".into(), None),
    };
    let served = stats.local_bytes + stats.remote_bytes + stats.ufs_bytes;
    let mut cache = BTreeMap::new();
    cache.insert("cacheCapacity".to_string(), format_bytes(stats.capacity));
    cache.insert("cached".into(), format_bytes(stats.cached));
    cache.insert("cachedPercentage".into(), total.map(|t| percent(stats.cached.min(t), t)).unwrap_or_else(|| "0.0%".into()));
    cache.insert("cacheHitRatio".into(), percent(stats.local_bytes + stats.remote_bytes, served));
    cache.insert("localHitRatio".into(), percent(stats.local_bytes, served));
    cache.insert("remoteHitRatio".into(), percent(stats.remote_bytes, served));
    let runtime = RuntimeRef { name: runtime.0.into(), namespace: runtime.1.into(), category: "Accelerate".into(), type_: runtime.2.into(), master_replicas: None };
    DatasetStatus { phase: phase.into(), ufs_total, file_num, cache_states: cache, runtimes: vec![runtime], ..Default::default() }
}

pub fn runtime_status(replicas: u32, workers_ready: u32, stats: &CacheStats) -> RuntimeStatus {
    let workers_ready = workers_ready.min(replicas);
    let worker_phase = match workers_ready {
        0 => "NotReady",
        n if n < replicas => "PartialReady",
        _ => "Ready",
    };
    // Written by the master, which is up; the FUSE client is supervised by `cistern up`.
    let cache = BTreeMap::from([("cacheCapacity".to_string(), format_bytes(stats.capacity)), ("cached".to_string(), format_bytes(stats.cached))]);
    RuntimeStatus {
        master_phase: "Ready".into(),
        worker_phase: worker_phase.into(),
        fuse_phase: "Ready".into(),
        desired_master_number_scheduled: 1,
        master_number_ready: 1,
        desired_worker_number_scheduled: replicas as i32,
        worker_number_ready: workers_ready as i32,
        worker_number_available: workers_ready as i32,
        desired_fuse_number_scheduled: 1,
        fuse_number_ready: 1,
        cache_states: cache,
        ..Default::default()
    }
}

/// `kubectl`-style age: `45s`, `5m35s`, `3h12m`, `2d4h`.
pub fn age(created: &str) -> String {
    let Ok(t) = created.parse::<jiff::Timestamp>() else { return "<unknown>".into() };
    let now = jiff::Timestamp::try_from(SystemTime::now()).unwrap_or(t);
    let s = (now.as_second() - t.as_second()).max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=599 => format!("{}m{}s", s / 60, s % 60),
        600..=3599 => format!("{}m", s / 60),
        3600..=86399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

/// Prints rows under headers, columns separated by three spaces like kubectl.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        for (i, c) in cells.iter().enumerate() {
            out.push_str(c);
            if i < last {
                out.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            }
        }
        out.push('\n');
    };
    line(headers.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

fn s(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A column: its header and where its value sits in the object.
type Column = (&'static str, &'static [&'static str]);

const DATASET_COLUMNS: &[Column] = &[
    ("NAME", &["metadata", "name"]),
    ("UFS TOTAL SIZE", &["status", "ufsTotal"]),
    ("CACHED", &["status", "cacheStates", "cached"]),
    ("CACHE CAPACITY", &["status", "cacheStates", "cacheCapacity"]),
    ("CACHED PERCENTAGE", &["status", "cacheStates", "cachedPercentage"]),
    ("PHASE", &["status", "phase"]),
];
const DATASET_WIDE: &[Column] =
    &[("FILE NUM", &["status", "fileNum"]), ("CACHE HIT RATIO", &["status", "cacheStates", "cacheHitRatio"])];

const RUNTIME_COLUMNS: &[Column] = &[
    ("NAME", &["metadata", "name"]),
    ("MASTER PHASE", &["status", "masterPhase"]),
    ("WORKER PHASE", &["status", "workerPhase"]),
    ("FUSE PHASE", &["status", "fusePhase"]),
    ("MASTERS", &["status", "masters"]),
    ("LEADER", &["status", "leader"]),
];
const RUNTIME_WIDE: &[Column] = &[
    ("KIND", &["kind"]),
    ("READY MASTERS", &["status", "masterNumberReady"]),
    ("DESIRED MASTERS", &["status", "desiredMasterNumberScheduled"]),
    ("READY WORKERS", &["status", "workerNumberReady"]),
    ("DESIRED WORKERS", &["status", "desiredWorkerNumberScheduled"]),
];

pub fn dataset_table(objs: &[Value], wide: bool) -> String {
    object_table(objs, DATASET_COLUMNS, if wide { DATASET_WIDE } else { &[] })
}

pub fn runtime_table(objs: &[Value], wide: bool) -> String {
    object_table(objs, RUNTIME_COLUMNS, if wide { RUNTIME_WIDE } else { &[] })
}

/// The columns, then the wide ones, then AGE, as kubectl orders them.
fn object_table(objs: &[Value], columns: &[Column], wide: &[Column]) -> String {
    let cols: Vec<&Column> = columns.iter().chain(wide).collect();
    let mut headers: Vec<&str> = cols.iter().map(|c| c.0).collect();
    headers.push("AGE");
    let rows: Vec<Vec<String>> = objs
        .iter()
        .map(|o| {
            let mut r: Vec<String> = cols.iter().map(|c| s(o, c.1)).collect();
            r.push(age(&s(o, &["metadata", "creationTimestamp"])));
            r
        })
        .collect();
    table(&headers, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_like_kubectl() {
        let t = table(&["NAME", "PHASE"], &[vec!["demo".into(), "Bound".into()], vec!["a-longer-name".into(), "NotBound".into()]]);
        assert_eq!(t, "NAME            PHASE\ndemo            Bound\na-longer-name   NotBound\n");
    }

    #[test]
    fn percentages() {
        assert_eq!(percent(0, 0), "0.0%");
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(percent(5, 5), "100.0%");
    }
}
