//! Ports of a Dataset's master and workers. On the pod network every Dataset uses the same
//! well-known ports (19998 master, 19999 web, 29999 worker). With `networkMode: HostNetwork`
//! (Fluid's default for its runtimes) pods bind the node's ports, so two Datasets on one node
//! would collide: the operator then allocates three ports per Dataset from a range (the chart's
//! `hostPortRange`, default 20000-26000, as Fluid's `--runtime-node-port-range`) and records
//! them on the runtime (annotation `cistern.io/host-ports: master=…,web=…,worker=…`), where the
//! renderer reads them. Allocation runs under one lock in the single reconciling replica (the
//! Lease holder) and takes what every runtime in the cluster already records into account.

use crate::controller::Error;
use cistern_api::{AlluxioRuntime, DatasetPlan, JindoRuntime, JuiceFSRuntime, Runtime, RuntimeSpec};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, Resource};
use crate::objects::MetadataPatch;
use std::collections::BTreeSet;
use tokio::sync::Mutex;

pub const ANNOTATION: &str = "cistern.io/host-ports";
pub const DEFAULT_RANGE: (u16, u16) = (20000, 26000);

/// The ports a Dataset's pods listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub master: u16,
    pub web: u16,
    pub worker: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Ports { master: crate::render::MASTER_PORT, web: crate::render::WEB_PORT, worker: crate::render::WORKER_PORT }
    }
}

impl Ports {
    /// `master=…,web=…,worker=…`.
    pub fn parse(text: &str) -> Option<Ports> {
        let mut p = (None, None, None);
        for part in text.split(',') {
            let (k, v) = part.trim().split_once('=')?;
            let v: u16 = v.trim().parse().ok().filter(|v| *v > 0)?;
            match k.trim() {
                "master" => p.0 = Some(v),
                "web" => p.1 = Some(v),
                "worker" => p.2 = Some(v),
                _ => return None,
            }
        }
        Some(Ports { master: p.0?, web: p.1?, worker: p.2? })
    }

    pub fn to_annotation(self) -> String {
        format!("master={},web={},worker={}", self.master, self.web, self.worker)
    }

    /// The ports the runtime records, or the well-known ones.
    pub fn of(runtime: &Runtime) -> Ports {
        runtime.metadata().annotations.as_ref().and_then(|a| a.get(ANNOTATION)).and_then(|t| Ports::parse(t)).unwrap_or_default()
    }

    pub fn of_plan(plan: &DatasetPlan) -> Ports {
        Ports::of(&plan.runtime)
    }
}

/// Whether the master's or workers' pods use the node's network.
pub fn wants_host_network(spec: &RuntimeSpec) -> bool {
    let host = |m: &Option<String>| m.as_deref() == Some("HostNetwork");
    host(&spec.master.network_mode) || host(&spec.worker.network_mode) || host(&spec.network_mode)
}

/// `low-high` (inclusive).
pub fn parse_range(text: &str) -> Result<(u16, u16), String> {
    let (a, b) = text.split_once('-').ok_or_else(|| format!("`{text}` is not LOW-HIGH"))?;
    let (a, b): (u16, u16) = (a.trim().parse().map_err(|_| format!("`{a}` is not a port"))?, b.trim().parse().map_err(|_| format!("`{b}` is not a port"))?);
    if a == 0 || b < a || b - a < 2 {
        return Err(format!("`{text}` must hold at least three ports, lowest first"));
    }
    Ok((a, b))
}

/// The lowest three consecutive free ports of `range`.
pub fn first_free(range: (u16, u16), used: &BTreeSet<u16>) -> Option<Ports> {
    let mut p = range.0;
    while p.checked_add(2).is_some_and(|top| top <= range.1) {
        if (p..=p + 2).all(|q| !used.contains(&q)) {
            return Some(Ports { master: p, web: p + 1, worker: p + 2 });
        }
        p += 1;
    }
    None
}

static ALLOCATING: Mutex<()> = Mutex::const_new(());

/// Gives the runtime its ports when its pods use the node's network and it has none yet;
/// returns the runtime as it now is.
pub async fn ensure(client: &Client, runtime: Runtime, range: (u16, u16)) -> Result<Runtime, Error> {
    if !wants_host_network(&runtime.spec()) || runtime.metadata().annotations.as_ref().is_some_and(|a| a.contains_key(ANNOTATION)) {
        return Ok(runtime);
    }
    let _lock = ALLOCATING.lock().await;
    let mut used = BTreeSet::new();
    let mut record = |annotations: Option<&std::collections::BTreeMap<String, String>>| {
        if let Some(p) = annotations.and_then(|a| a.get(ANNOTATION)).and_then(|t| Ports::parse(t)) {
            used.extend([p.master, p.web, p.worker]);
        }
    };
    for r in Api::<JindoRuntime>::all(client.clone()).list(&ListParams::default()).await? {
        record(r.meta().annotations.as_ref());
    }
    for r in Api::<AlluxioRuntime>::all(client.clone()).list(&ListParams::default()).await? {
        record(r.meta().annotations.as_ref());
    }
    for r in Api::<JuiceFSRuntime>::all(client.clone()).list(&ListParams::default()).await? {
        record(r.meta().annotations.as_ref());
    }
    let ports = first_free(range, &used)
        .ok_or_else(|| Error::Invalid(format!("no three free host ports left in {}-{}: widen the chart's hostPortRange", range.0, range.1)))?;
    let patch = Patch::Merge(MetadataPatch::annotation(ANNOTATION, Some(&ports.to_annotation())));
    let (ns, name) = (runtime.namespace().to_string(), runtime.name().to_string());
    let pp = PatchParams::default();
    let runtime = match runtime {
        Runtime::Jindo(_) => Runtime::Jindo(Api::<JindoRuntime>::namespaced(client.clone(), &ns).patch(&name, &pp, &patch).await?),
        Runtime::Alluxio(_) => Runtime::Alluxio(Api::<AlluxioRuntime>::namespaced(client.clone(), &ns).patch(&name, &pp, &patch).await?),
        Runtime::JuiceFS(_) => Runtime::JuiceFS(Api::<JuiceFSRuntime>::namespaced(client.clone(), &ns).patch(&name, &pp, &patch).await?),
    };
    tracing::info!(namespace = ns, runtime = name, ports = ports.to_annotation(), "host ports allocated");
    Ok(runtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_and_allocate_without_overlap() {
        let p = Ports::parse("master=20000,web=20001,worker=20002").unwrap();
        assert_eq!(Ports::parse(&p.to_annotation()), Some(p));
        assert!(Ports::parse("master=1,web=2").is_none() && Ports::parse("master=0,web=1,worker=2").is_none());
        let used: BTreeSet<u16> = [20000, 20001, 20002, 20004].into();
        assert_eq!(first_free((20000, 26000), &used), Some(Ports { master: 20005, web: 20006, worker: 20007 }));
        assert_eq!(first_free((20000, 20003), &used), None);
        assert_eq!(parse_range("20000-26000"), Ok((20000, 26000)));
        assert!(parse_range("20000-20001").is_err() && parse_range("x").is_err());
    }
}
