//! The operator's reconcilers, in the kube-rs `reconcile` + `error_policy` + finalizer style:
//! - Datasets: a finalizer; phase NotBound until a runtime of the same name and namespace
//!   exists, then Bound with the runtime named in `status.runtimes`; deletion waits while a
//!   running pod mounts the Dataset's PVC.
//! - Runtimes (one reconcile for every kind): the objects of [`crate::render`] applied with
//!   server-side apply, owned by the runtime, and the runtime's phases from their statuses;
//!   the nodes that hold the cache are labelled ([`crate::locality`]).

use crate::render::{render, RenderOptions};
use crate::objects::{patch_status, Object};
use cistern_api::{AlluxioRuntime, Condition, Dataset, JindoRuntime, JuiceFSRuntime, Manifest, Runtime, RuntimeRef, RuntimeStatus, SecretStore};
use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolume, Pod};
use k8s_openapi::api::core::v1::{NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};
use kube::api::{Api, ListParams, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::finalizer::{finalizer, Event};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub const FINALIZER: &str = "data.fluid.io/cistern-dataset-controller";
/// The field manager of everything the operator applies.
pub const MANAGER: &str = "cistern-operator";
/// How often statuses are refreshed when nothing changes.
pub const SYNC_PERIOD: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("Dataset {0} is in use by pod {1}; it is deleted once no running pod mounts its PVC")]
    InUse(String, String),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

pub struct Context {
    pub client: Client,
    pub opts: RenderOptions,
    /// The masters' web base URL for every Dataset (tests); by default each master's Service,
    /// `http://<name>-master.<ns>.svc:19999`.
    pub master_web: Option<String>,
    /// A file of `<namespace>/<name> <url>` lines, read at every reconcile: where a Dataset's
    /// master answers when the operator runs outside the cluster's network (tests on kwok
    /// nodes, whose pods run nothing; a real `cistern master` stands in for the pod).
    pub master_web_map: Option<std::path::PathBuf>,
    /// Publishes Kubernetes Events (`kubectl describe` shows them); none in the scripted tests.
    pub recorder: Option<Recorder>,
}

impl Context {
    pub fn new(client: Client, opts: RenderOptions) -> Context {
        Context { client, opts, master_web: None, master_web_map: None, recorder: None }
    }

    fn master_web(&self, ns: &str, name: &str, web_port: u16) -> String {
        if let Some(url) = self.master_web_map.as_ref().and_then(|f| mapped_master(f, ns, name)) {
            return url;
        }
        self.master_web.clone().unwrap_or_else(|| format!("http://{name}-master.{ns}.svc:{web_port}"))
    }

    /// Publishes an Event about `obj`; a failure to publish is logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(&self, obj: &K, warning: bool, reason: &str, note: String) {
        let Some(recorder) = &self.recorder else { return };
        let event = KubeEvent {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            // The Events API bounds a note to 1 kB.
            note: Some(note.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::debug!("publishing event {reason}: {e}");
        }
    }
}

/// The URL `file` maps `ns/name` to, if any. The file is small, operator-owned test input;
/// a line that does not parse is skipped.
fn mapped_master(file: &std::path::Path, ns: &str, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let key = format!("{ns}/{name}");
    text.lines().find_map(|l| {
        let (k, url) = l.trim().split_once(char::is_whitespace)?;
        (k == key).then(|| url.trim().to_string())
    })
}

/// What the master's `/api/v1/status` answers: the Dataset and runtime with its statuses.
#[derive(serde::Deserialize, Debug, Default)]
struct MasterView {
    #[serde(default)]
    dataset: StatusOf<cistern_api::DatasetStatus>,
    #[serde(default)]
    runtime: StatusOf<RuntimeStatus>,
}

#[derive(serde::Deserialize, Debug)]
struct StatusOf<S> {
    #[serde(default = "Option::default")]
    status: Option<S>,
}

impl<S> Default for StatusOf<S> {
    fn default() -> Self {
        StatusOf { status: None }
    }
}

/// The master's own view (`/api/v1/status`): the Dataset's UFS totals and cache figures.
/// `None` while the master is not reachable; the phases then come from Kubernetes alone.
async fn master_status(base: &str) -> Option<MasterView> {
    // reqwest is built with rustls but no provider of its own (one provider for the whole
    // binary: ring, as kube uses); plain HTTP still builds its TLS config.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().ok()?;
    match client.get(format!("{base}/api/v1/status")).send().await.and_then(|r| r.error_for_status()) {
        Ok(r) => r.json().await.ok(),
        Err(e) => {
            tracing::debug!("master status at {base}: {e}");
            None
        }
    }
}

/// Requeues a failed reconcile after a pause, and says why in an Event on the object.
pub fn error_policy<K>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
{
    tracing::warn!("reconcile of {} failed: {error}", obj.meta().name.as_deref().unwrap_or("?"));
    ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (reason, note) = match error {
        Error::InUse(..) => ("DatasetInUse", error.to_string()),
        _ => ("ReconcileFailed", error.to_string()),
    };
    if ctx.recorder.is_some() {
        tokio::spawn(async move { ctx.event(obj.as_ref(), true, reason, note).await });
    }
    Action::requeue(Duration::from_secs(10))
}

/// Failed reconciles since start (logged; the count is what a metric would export).
pub static ERRORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

// ---- Datasets ----

pub async fn reconcile_dataset(ds: Arc<Dataset>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = ds.namespace().unwrap_or_else(|| "default".into());
    let api: Api<Dataset> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, ds, |event| async {
        match event {
            Event::Apply(ds) => bind(&ds, &ctx).await,
            Event::Cleanup(ds) => release(&ds, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

/// The runtime of the same name and namespace, of whichever kind.
pub async fn find_runtime(client: &Client, ns: &str, name: &str) -> Result<Option<Runtime>, Error> {
    if let Some(r) = Api::<JindoRuntime>::namespaced(client.clone(), ns).get_opt(name).await? {
        return Ok(Some(Runtime::Jindo(r)));
    }
    if let Some(r) = Api::<AlluxioRuntime>::namespaced(client.clone(), ns).get_opt(name).await? {
        return Ok(Some(Runtime::Alluxio(r)));
    }
    Ok(Api::<JuiceFSRuntime>::namespaced(client.clone(), ns).get_opt(name).await?.map(Runtime::JuiceFS))
}

/// The part of a Dataset's status its binding decides: written whole each time (an empty
/// list clears what an earlier binding said), leaving the figures the runtime copies alone.
#[derive(Serialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct Binding {
    pub phase: String,
    pub runtimes: Vec<RuntimeRef>,
    pub conditions: Vec<Condition>,
}

impl Binding {
    pub fn not_bound(reason: &str, why: String) -> Binding {
        let waiting = Condition { type_: "Ready".into(), status: "False".into(), reason: reason.into(), message: why, ..Default::default() };
        Binding { phase: "NotBound".into(), runtimes: Vec::new(), conditions: vec![waiting] }
    }
}

/// The figures of a Dataset that its runtime's master reports (`kubectl get dataset` prints them).
#[derive(Serialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
struct Figures {
    ufs_total: String,
    file_num: String,
    cache_states: BTreeMap<String, String>,
}

async fn bind(ds: &Dataset, ctx: &Context) -> Result<Action, Error> {
    let (ns, name) = (ds.namespace().unwrap_or_else(|| "default".into()), ds.name_any());
    let reference = crate::reference::target(ds).transpose().map_err(Error::Invalid)?;
    let status = match &reference {
        Some((pns, pname)) => crate::reference::bind(ds, ctx, (pns, pname)).await?,
        None => match find_runtime(&ctx.client, &ns, &name).await? {
            Some(rt) => {
                let kind = rt.kind().trim_end_matches("Runtime").to_lowercase();
                let runtime = RuntimeRef { name: name.clone(), namespace: ns.clone(), category: "Accelerate".into(), type_: kind, master_replicas: None };
                Binding { phase: "Bound".into(), runtimes: vec![runtime], conditions: Vec::new() }
            }
            None => Binding { phase: "NotBound".into(), ..Default::default() },
        },
    };
    let api: Api<Dataset> = Api::namespaced(ctx.client.clone(), &ns);
    patch_status(&api, &name, &status).await?;
    let was = ds.status.as_ref().map(|s| s.phase.as_str()).unwrap_or_default();
    if status.phase != was {
        let note = match (status.runtimes.first(), status.conditions.first()) {
            (Some(rt), _) => format!("bound to the {} runtime {}/{}", rt.type_, rt.namespace, rt.name),
            (None, Some(c)) => c.message.clone(),
            (None, None) => format!("no runtime named {name} in {ns} yet: create a JindoRuntime, AlluxioRuntime or JuiceFSRuntime of that name"),
        };
        ctx.event(ds, false, &status.phase, note).await;
    }
    if reference.is_some() && status.phase == "NotBound" {
        // Waiting on another Dataset (its binding, or its owner's consent): look again soon.
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    Ok(Action::requeue(SYNC_PERIOD))
}

/// Lets the Dataset go once no running pod mounts its PVC (named after it).
async fn release(ds: &Dataset, ctx: &Context) -> Result<Action, Error> {
    let (ns, name) = (ds.namespace().unwrap_or_else(|| "default".into()), ds.name_any());
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    for pod in pods.list(&ListParams::default()).await? {
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()).is_some_and(|p| p == "Running" || p == "Pending");
        let mounts = pod.spec.as_ref().is_some_and(|s| {
            s.volumes.iter().flatten().any(|v| v.persistent_volume_claim.as_ref().is_some_and(|c| c.claim_name == name))
        });
        if running && mounts {
            return Err(Error::InUse(format!("{ns}/{name}"), pod.name_any()));
        }
    }
    // The PV is cluster-scoped, so no namespaced owner takes it away: it goes with its Dataset.
    drop_volume(&ctx.client, &ns, &name, false).await?;
    if let Some(Ok((pns, pname))) = crate::reference::target(ds) {
        crate::reference::release(ds, ctx, (&pns, &pname)).await?;
    }
    Ok(Action::await_change())
}

/// Deletes the Dataset's PersistentVolume (`<ns>-<name>`, labelled with its dataset id) when
/// it is there, and with `only_released` only once its claim is gone (phase Released): a
/// Released PV never binds again, so a re-created runtime's claim would stay Pending.
/// Returns whether a PV was deleted.
async fn drop_volume(client: &Client, ns: &str, name: &str, only_released: bool) -> Result<bool, Error> {
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let id = format!("{ns}-{name}");
    let Some(pv) = pvs.get_opt(&id).await? else { return Ok(false) };
    let ours = pv.labels().get("fluid.io/dataset-id").is_some_and(|v| *v == cistern_api::names::label_value(&id));
    let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    if !ours || (only_released && !released) {
        return Ok(false);
    }
    pvs.delete(&id, &Default::default()).await?;
    tracing::info!(pv = id, "deleted the Dataset's PersistentVolume");
    Ok(true)
}

// ---- Runtimes ----

/// What the runtime reconcile needs of each runtime kind.
pub trait RuntimeKind: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize + Send + Sync + 'static {
    fn wrap(self) -> Runtime;
}
impl RuntimeKind for JindoRuntime {
    fn wrap(self) -> Runtime {
        Runtime::Jindo(self)
    }
}
impl RuntimeKind for AlluxioRuntime {
    fn wrap(self) -> Runtime {
        Runtime::Alluxio(self)
    }
}
impl RuntimeKind for JuiceFSRuntime {
    fn wrap(self) -> Runtime {
        Runtime::JuiceFS(self)
    }
}

pub async fn reconcile_runtime<K: RuntimeKind>(rt: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    if rt.meta().deletion_timestamp.is_some() {
        // The cache comes off the nodes first; the owned objects then go with the runtime
        // (garbage collection).
        return crate::cache_cleanup::cleanup(rt.as_ref(), &ctx).await;
    }
    let (ns, name) = (rt.namespace().unwrap_or_else(|| "default".into()), rt.name_any());
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    crate::cache_cleanup::ensure_finalizer(&api, rt.as_ref()).await?;
    let Some(dataset) = Api::<Dataset>::namespaced(ctx.client.clone(), &ns).get_opt(&name).await? else {
        let not_ready = || "NotReady".to_string();
        let status = RuntimeStatus { master_phase: not_ready(), worker_phase: not_ready(), fuse_phase: not_ready(), ..Default::default() };
        patch_status(&api, &name, &PhasesOnly::of(&status)).await?;
        return Ok(Action::requeue(Duration::from_secs(10)));
    };
    if drop_volume(&ctx.client, &ns, &name, true).await? {
        // Its claim was deleted with an earlier runtime; applied anew once it is gone.
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    let owner = rt.controller_owner_ref(&()).ok_or_else(|| Error::Invalid(format!("runtime {ns}/{name} has no uid yet")))?;
    // Host-network pods get ports of their own (recorded on the runtime) before rendering.
    let runtime = crate::host_ports::ensure(&ctx.client, (*rt).clone().wrap(), ctx.opts.host_port_range).await?;
    let manifest = Manifest {
        datasets: vec![dataset],
        runtimes: vec![runtime],
        // Pods mount the Secrets by name; their values never pass through the operator.
        secrets: SecretStore::references_only(),
        ..Default::default()
    };
    let plan = manifest.plan(Some(&name)).map_err(|e| Error::Invalid(format!("{ns}/{name}: {e}")))?;
    let params = PatchParams::apply(MANAGER).force();
    let mut objects = render(&plan, &ctx.opts).map_err(Error::Invalid)?;
    if !matches!(plan.runtime, Runtime::JuiceFS(_)) {
        let serial = crate::credentials::ensure(&ctx.client, &ns, &name, owner.clone()).await?;
        // A renewal changes the serial, which rolls the pods onto the new certificates.
        for template in objects.iter_mut().filter_map(Object::pod_template_mut) {
            let meta = template.metadata.get_or_insert_with(Default::default);
            meta.annotations.get_or_insert_with(BTreeMap::new).insert(crate::credentials::SERIAL.into(), serial.clone());
        }
    }
    // Scale-in waits for the master: a leaving worker hands its files over only once the master
    // says it is leaving (see the README, "Scale-in hands the cache over").
    let web_port = crate::host_ports::Ports::of_plan(&plan).web;
    let mut holding_scale_in = false;
    if !matches!(plan.runtime, Runtime::JuiceFS(_)) {
        let sets: Api<k8s_openapi::api::apps::v1::StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
        let current = sets.get_opt(&format!("{name}-worker")).await?.and_then(|s| s.spec.replicas);
        let seen = match current {
            Some(c) if c > plan.replicas as i32 => master_status(&ctx.master_web(&ns, &name, web_port))
                .await
                .and_then(|v| v.runtime.status.map(|s| s.desired_worker_number_scheduled))
                .map(|d| d == plan.replicas as i32),
            _ => None,
        };
        if let Some(held) = hold_scale_in(current, plan.replicas, seen) {
            holding_scale_in = true;
            let worker_set = format!("{name}-worker");
            for o in objects.iter_mut() {
                if let Object::StatefulSet(set) = o {
                    if set.metadata.name.as_deref() == Some(&worker_set) {
                        set.spec.replicas = Some(held);
                    }
                }
            }
        }
    }
    for mut object in objects {
        if !matches!(object, Object::PersistentVolume(_)) {
            // Cluster-scoped objects cannot be owned by a namespaced runtime.
            object.meta_mut().owner_references = Some(vec![owner.clone()]);
        }
        object.apply(&ctx.client, &params).await?;
    }
    // JuiceFS runs its own engine: no Cistern master to wait for or to ask for figures.
    let has_master = !matches!(plan.runtime, Runtime::JuiceFS(_));
    let mut status = runtime_status(&ctx.client, &ns, &name, plan.replicas, if has_master { plan.masters.max(1) } else { 0 }).await?;
    let holding = crate::locality::label_cache_nodes(&ctx.client, &ns, &name).await?;
    if !holding.is_empty() {
        let on_cache_nodes = NodeSelectorRequirement { key: crate::locality::cache_label(&ns, &name), operator: "In".into(), values: Some(vec!["true".into()]) };
        let term = NodeSelectorTerm { match_expressions: Some(vec![on_cache_nodes]), ..Default::default() };
        status.cache_affinity = Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector { node_selector_terms: vec![term] }),
            ..Default::default()
        });
    }
    let figures = if has_master { master_status(&ctx.master_web(&ns, &name, web_port)).await } else { None };
    if let Some(cache) = figures.as_ref().and_then(|f| f.runtime.status.as_ref()).map(|s| &s.cache_states).filter(|c| !c.is_empty()) {
        status.cache_states = cache.clone();
    }
    patch_status(&api, &name, &status).await?;
    let before = serde_json::to_value(rt.as_ref()).ok().and_then(|v| serde_json::from_value::<RuntimeStatus>(v["status"].clone()).ok()).unwrap_or_default();
    let phases = |s: &RuntimeStatus| [s.master_phase.clone(), s.worker_phase.clone(), s.fuse_phase.clone()];
    if phases(&before) != phases(&status) {
        // Fields accepted but not acted on are said once per phase change, never dropped in silence.
        let ignored = crate::pod_shape::unhonoured(&plan);
        if !ignored.is_empty() {
            ctx.event(rt.as_ref(), true, "FieldsNotApplied", ignored.join("; ")).await;
        }
        let [m, w, f] = phases(&status);
        let note = format!("master {m}, workers {w} ({}/{} ready), FUSE {f}", status.worker_number_ready, status.desired_worker_number_scheduled);
        let all_ready = [&m, &w, &f].iter().all(|p| p.as_str() == "Ready");
        ctx.event(rt.as_ref(), false, if all_ready { "RuntimeReady" } else { "RuntimePhaseChanged" }, note).await;
    }
    if let Some(ds) = figures.and_then(|f| f.dataset.status) {
        // What `kubectl get dataset` prints: UFS total, cached, capacity, cached %.
        let copied = Figures { ufs_total: ds.ufs_total, file_num: ds.file_num, cache_states: ds.cache_states };
        patch_status(&Api::<Dataset>::namespaced(ctx.client.clone(), &ns), &name, &copied).await?;
    }
    Ok(Action::requeue(if holding_scale_in { Duration::from_secs(5) } else { SYNC_PERIOD }))
}

/// The worker count to keep for now while scaling in from `current` to `desired`: `current`
/// until the master has seen `desired` in its configuration (`master_has_it`; the kubelet
/// delivers the rewritten ConfigMap up to a minute later), so that the leaving workers, asking
/// the master on SIGTERM, know they leave and hand their files over. `None`: apply `desired`
/// (no scale-in, or no master to ask: never held forever on an unreachable master).
pub(crate) fn hold_scale_in(current: Option<i32>, desired: u32, master_has_it: Option<bool>) -> Option<i32> {
    match (current, master_has_it) {
        (Some(c), Some(false)) if c > desired as i32 => Some(c),
        _ => None,
    }
}

/// Phases from the StatefulSets and the DaemonSet, as Fluid reports them.
/// `masters`: how many the runtime asks for (0: a JuiceFS runtime, which has none of ours).
async fn runtime_status(client: &Client, ns: &str, name: &str, replicas: u32, masters: u32) -> Result<RuntimeStatus, Error> {
    let has_master = masters > 0;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let ready = |s: Option<StatefulSet>| s.and_then(|s| s.status).and_then(|s| s.ready_replicas).unwrap_or(0);
    let master_set = if has_master { sets.get_opt(&format!("{name}-master")).await? } else { None };
    let masters_current = master_set.as_ref().and_then(|s| s.status.as_ref()).map_or(0, |s| s.replicas);
    let master_ready = if has_master { ready(master_set) } else { 1 };
    let worker_set = sets.get_opt(&format!("{name}-worker")).await?;
    // Pods the workers' StatefulSet has now (the scale subresource's status replicas).
    let workers_current = worker_set.as_ref().and_then(|s| s.status.as_ref()).map_or(0, |s| s.replicas);
    let workers_ready = ready(worker_set);
    let fuse = Api::<DaemonSet>::namespaced(client.clone(), ns).get_opt(&format!("{name}-fuse")).await?.and_then(|d| d.status);
    let (fuse_desired, fuse_ready) = fuse.map_or((0, 0), |s| (s.desired_number_scheduled, s.number_ready));
    let phase = |ready: i32, want: i32| match (ready, want) {
        (r, w) if r >= w && w > 0 => "Ready",
        (r, _) if r > 0 => "PartialReady",
        _ => "NotReady",
    };
    let masters_wanted = masters.max(1) as i32;
    // Several masters serve while a majority runs: fewer than all is PartialReady, as Fluid
    // says of workers; fewer than a majority serves no new listing (NotReady).
    let master_phase = match master_ready {
        r if r >= masters_wanted => "Ready",
        r if r > masters_wanted / 2 => "PartialReady",
        _ => "NotReady",
    };
    Ok(RuntimeStatus {
        master_phase: master_phase.into(),
        worker_phase: phase(workers_ready, replicas as i32).into(),
        // FUSE pods run only where a pod uses the Dataset: none wanted is fine.
        fuse_phase: if fuse_desired == 0 { "Ready".into() } else { phase(fuse_ready, fuse_desired).into() },
        desired_master_number_scheduled: masters_wanted,
        master_number_ready: master_ready,
        desired_worker_number_scheduled: replicas as i32,
        worker_number_ready: workers_ready,
        worker_number_available: workers_ready,
        current_worker_number_scheduled: workers_current,
        current_master_number_scheduled: if has_master { masters_current } else { 0 },
        // The workers' pods, for the scale subresource (an HPA reads it).
        selector: format!("app=cistern,release={},role=worker", cistern_api::names::label_value(name)),
        desired_fuse_number_scheduled: fuse_desired,
        fuse_number_ready: fuse_ready,
        ..Default::default()
    })
}

/// Only the phases of a runtime's status (its counts are left as they are).
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct PhasesOnly<'a> {
    master_phase: &'a str,
    worker_phase: &'a str,
    fuse_phase: &'a str,
}

impl<'a> PhasesOnly<'a> {
    fn of(s: &'a RuntimeStatus) -> PhasesOnly<'a> {
        PhasesOnly { master_phase: &s.master_phase, worker_phase: &s.worker_phase, fuse_phase: &s.fuse_phase }
    }
}

#[cfg(test)]
mod tests {
    use super::hold_scale_in;

    #[test]
    fn scale_in_waits_for_the_master_but_never_forever() {
        // 4 → 3 while the master still says 4: keep 4 workers for now.
        assert_eq!(hold_scale_in(Some(4), 3, Some(false)), Some(4));
        // The master has seen 3: the leaving worker will know it leaves.
        assert_eq!(hold_scale_in(Some(4), 3, Some(true)), None);
        // No master to ask (JuiceFS, or unreachable): not held.
        assert_eq!(hold_scale_in(Some(4), 3, None), None);
        // Scale-out and first creation are never held.
        assert_eq!(hold_scale_in(Some(3), 4, Some(false)), None);
        assert_eq!(hold_scale_in(None, 3, Some(false)), None);
    }
}
