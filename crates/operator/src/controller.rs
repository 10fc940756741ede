//! The operator's reconcilers, in the kube-rs `reconcile` + `error_policy` + finalizer style:
//! - Datasets: a finalizer; phase NotBound until a runtime of the same name and namespace
//!   exists, then Bound with the runtime named in `status.runtimes`; deletion waits while a
//!   running pod mounts the Dataset's PVC.
//! - Runtimes (one reconcile for every kind): the objects of [`crate::render`] applied with
//!   server-side apply, owned by the runtime, and the runtime's phases from their statuses;
//!   the nodes that hold the cache are labelled ([`crate::locality`]).

use crate::render::{render, RenderOptions};
use cistern_api::{AlluxioRuntime, Dataset, JindoRuntime, JuiceFSRuntime, Manifest, Runtime, SecretStore};
use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolume, Pod};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::finalizer::{finalizer, Event};
use kube::{Client, Resource, ResourceExt};
use serde_json::{json, Value};
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

/// The master's own view (`/api/v1/status`): the Dataset's UFS totals and cache figures.
/// `None` while the master is not reachable; the phases then come from Kubernetes alone.
async fn master_status(base: &str) -> Option<Value> {
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

async fn bind(ds: &Dataset, ctx: &Context) -> Result<Action, Error> {
    let (ns, name) = (ds.namespace().unwrap_or_else(|| "default".into()), ds.name_any());
    let reference = crate::reference::target(ds).transpose().map_err(Error::Invalid)?;
    let status = match &reference {
        Some((pns, pname)) => crate::reference::bind(ds, ctx, (pns, pname)).await?,
        None => match find_runtime(&ctx.client, &ns, &name).await? {
        Some(rt) => json!({"phase": "Bound", "runtimes": [{"name": name, "namespace": ns, "category": "Accelerate", "type": rt.kind().trim_end_matches("Runtime").to_lowercase()}]}),
        None => json!({"phase": "NotBound", "runtimes": []}),
        },
    };
    let api: Api<Dataset> = Api::namespaced(ctx.client.clone(), &ns);
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await?;
    let was = ds.status.as_ref().map(|s| s.phase.as_str()).unwrap_or_default();
    if status["phase"] != was {
        let note = match (status["runtimes"][0]["type"].as_str(), status["conditions"][0]["message"].as_str()) {
            (Some(kind), _) => format!("bound to the {kind} runtime {}/{}", status["runtimes"][0]["namespace"].as_str().unwrap_or(&ns), status["runtimes"][0]["name"].as_str().unwrap_or(&name)),
            (None, Some(why)) => why.to_string(),
            (None, None) => format!("no runtime named {name} in {ns} yet: create a JindoRuntime, AlluxioRuntime or JuiceFSRuntime of that name"),
        };
        ctx.event(ds, false, status["phase"].as_str().unwrap_or_default(), note).await;
    }
    if reference.is_some() && status["phase"] == "NotBound" {
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
        return Ok(Action::await_change()); // owned objects go with it (garbage collection)
    }
    let (ns, name) = (rt.namespace().unwrap_or_else(|| "default".into()), rt.name_any());
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(dataset) = Api::<Dataset>::namespaced(ctx.client.clone(), &ns).get_opt(&name).await? else {
        let status = json!({"masterPhase": "NotReady", "workerPhase": "NotReady", "fusePhase": "NotReady"});
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await?;
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
        for o in objects.iter_mut().filter(|o| o["spec"]["template"].is_object()) {
            o["spec"]["template"]["metadata"]["annotations"][crate::credentials::SERIAL] = json!(serial);
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
                .and_then(|v| v["runtime"]["status"]["desiredWorkerNumberScheduled"].as_u64())
                .map(|d| d == plan.replicas as u64),
            _ => None,
        };
        if let Some(held) = hold_scale_in(current, plan.replicas, seen) {
            holding_scale_in = true;
            for o in objects.iter_mut().filter(|o| o["kind"] == "StatefulSet" && o["metadata"]["name"] == json!(format!("{name}-worker"))) {
                o["spec"]["replicas"] = json!(held);
            }
        }
    }
    for mut object in objects {
        if object["kind"] != "PersistentVolume" {
            // Cluster-scoped objects cannot be owned by a namespaced runtime.
            object["metadata"]["ownerReferences"] = json!([owner]);
        }
        apply(&ctx.client, &object, &params).await?;
    }
    // JuiceFS runs its own engine: no Cistern master to wait for or to ask for figures.
    let has_master = !matches!(plan.runtime, Runtime::JuiceFS(_));
    let mut status = runtime_status(&ctx.client, &ns, &name, plan.replicas, has_master).await?;
    let holding = crate::locality::label_cache_nodes(&ctx.client, &ns, &name).await?;
    if !holding.is_empty() {
        let key = crate::locality::cache_label(&ns, &name);
        status["cacheAffinity"] = json!({"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": key, "operator": "In", "values": ["true"]}]}
        ]}});
    }
    let figures = if has_master { master_status(&ctx.master_web(&ns, &name, web_port)).await } else { None };
    if let Some(cache) = figures.as_ref().map(|f| &f["runtime"]["status"]["cacheStates"]).filter(|c| c.is_object()) {
        status["cacheStates"] = cache.clone();
    }
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await?;
    let before = serde_json::to_value(rt.as_ref()).ok().map(|v| v["status"].clone()).unwrap_or_default();
    let phases = |s: &Value| ["masterPhase", "workerPhase", "fusePhase"].map(|k| s[k].as_str().unwrap_or_default().to_string());
    if phases(&before) != phases(&status) {
        // Fields accepted but not acted on are said once per phase change, never dropped in silence.
        let ignored = crate::pod_shape::unhonoured(&plan);
        if !ignored.is_empty() {
            ctx.event(rt.as_ref(), true, "FieldsNotApplied", ignored.join("; ")).await;
        }
        let [m, w, f] = phases(&status);
        let note = format!(
            "master {m}, workers {w} ({}/{} ready), FUSE {f}",
            status["workerNumberReady"], status["desiredWorkerNumberScheduled"]
        );
        let all_ready = [&m, &w, &f].iter().all(|p| p.as_str() == "Ready");
        ctx.event(rt.as_ref(), false, if all_ready { "RuntimeReady" } else { "RuntimePhaseChanged" }, note).await;
    }
    if let Some(ds) = figures.as_ref().map(|f| &f["dataset"]["status"]).filter(|s| s.is_object()) {
        // What `kubectl get dataset` prints: UFS total, cached, capacity, cached %.
        let copied = json!({"ufsTotal": ds["ufsTotal"], "fileNum": ds["fileNum"], "cacheStates": ds["cacheStates"]});
        Api::<Dataset>::namespaced(ctx.client.clone(), &ns).patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": copied}))).await?;
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

/// Server-side apply of one rendered object.
pub async fn apply(client: &Client, object: &Value, params: &PatchParams) -> Result<(), Error> {
    let (api_version, kind) = (object["apiVersion"].as_str().unwrap_or_default(), object["kind"].as_str().unwrap_or_default());
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.patch(name, params, &Patch::Apply(object)).await?;
    Ok(())
}

/// Phases from the StatefulSets and the DaemonSet, as Fluid reports them.
async fn runtime_status(client: &Client, ns: &str, name: &str, replicas: u32, has_master: bool) -> Result<Value, Error> {
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let ready = |s: Option<StatefulSet>| s.and_then(|s| s.status).and_then(|s| s.ready_replicas).unwrap_or(0);
    let master_ready = if has_master { ready(sets.get_opt(&format!("{name}-master")).await?) } else { 1 };
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
    Ok(json!({
        "masterPhase": phase(master_ready, 1),
        "workerPhase": phase(workers_ready, replicas as i32),
        // FUSE pods run only where a pod uses the Dataset: none wanted is fine.
        "fusePhase": if fuse_desired == 0 { "Ready" } else { phase(fuse_ready, fuse_desired) },
        "desiredMasterNumberScheduled": 1,
        "masterNumberReady": master_ready,
        "desiredWorkerNumberScheduled": replicas,
        "workerNumberReady": workers_ready,
        "workerNumberAvailable": workers_ready,
        "currentWorkerNumberScheduled": workers_current,
        "currentMasterNumberScheduled": if has_master { 1 } else { 0 },
        // The workers' pods, for the scale subresource (an HPA reads it).
        "selector": format!("app=cistern,release={},role=worker", cistern_api::names::label_value(name)),
        "desiredFuseNumberScheduled": fuse_desired,
        "fuseNumberReady": fuse_ready,
    }))
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
