//! Figures of the other processes, which report to the master: durations of UFS requests
//! (workers) and FUSE operations (FUSE clients) as Prometheus histograms, and each process's
//! CPU, memory and descriptors, labelled by `component` and `instance`.

use super::{family, Figures};
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::sync::Mutex;

/// One histogram as a process reported it (buckets of `cistern_rpc::latency::BOUNDS`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LatencyFigures {
    /// `worker` (UFS requests) or `fuse` (file system operations).
    pub component: String,
    /// The worker's id, or the FUSE client's node and process id.
    pub instance: String,
    pub op: String,
    pub buckets: Vec<u64>,
    pub sum_seconds: f64,
}

/// A reporting process's own figures.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ProcessFigures {
    pub component: String,
    pub instance: String,
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub open_fds: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    dataset_namespace: String,
    dataset: String,
    instance: String,
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabels {
    dataset_namespace: String,
    dataset: String,
    component: String,
    instance: String,
}

/// A histogram whose counts were made elsewhere: set once, then encoded.
#[derive(Debug, Default)]
struct ReportedHistogram(Mutex<(Vec<u64>, f64)>);

impl TypedMetric for ReportedHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for ReportedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (counts, sum) = self.0.lock().expect("histogram lock").clone();
        let bounds = cistern_rpc::latency::BOUNDS.iter().copied().chain(std::iter::once(f64::INFINITY));
        let buckets: Vec<(f64, u64)> = bounds.zip(counts.iter().copied()).collect();
        encoder.encode_histogram::<NoLabelSet>(sum, counts.iter().sum(), &buckets, None)
    }
    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

pub(super) fn encode(f: &Figures, reg: &mut Registry) {
    let ufs = family::<OpLabels, ReportedHistogram>(reg, "cistern_ufs_request_duration_seconds", "Durations of the workers' requests to the under storage");
    let fuse = family::<OpLabels, ReportedHistogram>(reg, "cistern_fuse_operation_duration_seconds", "Durations of the FUSE clients' file system operations");
    for l in &f.latencies {
        let labels = OpLabels { dataset_namespace: f.namespace.clone(), dataset: f.dataset.clone(), instance: l.instance.clone(), op: l.op.clone() };
        let target = if l.component == "worker" { &ufs } else { &fuse };
        *target.get_or_create(&labels).0.lock().expect("histogram lock") = (l.buckets.clone(), l.sum_seconds);
    }
    let cpu = family::<ComponentLabels, Counter<f64, std::sync::atomic::AtomicU64>>(reg, "cistern_component_cpu_seconds", "CPU time of a worker or FUSE client process, user and system");
    let rss = family::<ComponentLabels, Gauge>(reg, "cistern_component_resident_memory_bytes", "Resident memory of a worker or FUSE client process");
    let fds = family::<ComponentLabels, Gauge>(reg, "cistern_component_open_fds", "Open file descriptors of a worker or FUSE client process");
    for p in &f.processes {
        let labels = ComponentLabels { dataset_namespace: f.namespace.clone(), dataset: f.dataset.clone(), component: p.component.clone(), instance: p.instance.clone() };
        cpu.get_or_create(&labels).inc_by(p.cpu_seconds);
        rss.get_or_create(&labels).set(p.resident_bytes as i64);
        fds.get_or_create(&labels).set(p.open_fds as i64);
    }
}
