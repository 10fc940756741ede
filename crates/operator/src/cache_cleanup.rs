//! Cleaning a deleted runtime's cache off the nodes (Fluid's `cleanCachePolicy`). A worker's
//! hostPath tier outlives its pod: without this, every deleted runtime would leave its cache
//! on the nodes it ran on. Runtimes carry the finalizer [`FINALIZER`]; when one is deleted:
//! 1. its workers' StatefulSet is deleted, and the cleanup waits until no worker pod is left
//!    (nothing writes the cache while it is removed);
//! 2. on every node that held the cache (the nodes labelled `fluid.io/s-<ns>-<name>`, and any
//!    node a worker pod was on), a Job `<name>-clean-cache-<node>` pinned to the node empties
//!    the Dataset's own directory of each hostPath tier (`<path>/<engine>/<ns>-<name>`, the only
//!    directories it mounts), as root with `DAC_OVERRIDE` only (a `runAs` user's files too);
//!    `gracePeriodSeconds` (default 60) bounds each Job (`activeDeadlineSeconds`) and
//!    `maxRetryAttempts` (default 3) its retries (`backoffLimit`);
//! 3. once every Job is finished, an Event says which nodes were cleaned and which failed
//!    (their directory stays: the Event names it), the nodes lose the cache label, and the
//!    finalizer goes. The Jobs are owned by the runtime and go with it.
//! emptyDir tiers go with their pods and PVC-backed tiers are the user's claims: neither is
//! touched. The metadata store (`namespace.meta-dir`) is not cache and stays.

use crate::controller::{Context, Error, RuntimeKind, MANAGER};
use crate::objects::{host_path_volume, mount, string_map, MetadataPatch, Object};
use cistern_api::Runtime;
use json_patch::{AddOperation, PatchOperation, RemoveOperation, TestOperation};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Capabilities, Container, Node, Pod, PodSpec, PodTemplateSpec, SecurityContext, Toleration};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::ResourceExt;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The finalizer every runtime carries until its cache is cleaned off the nodes.
pub const FINALIZER: &str = "data.fluid.io/cistern-cache-cleanup";
const DEFAULT_GRACE_SECONDS: i64 = 60;
const DEFAULT_RETRIES: i32 = 3;
const WAIT: Duration = Duration::from_secs(2);

/// How long cleaning one node may take, and how often it is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanPolicy {
    pub grace_seconds: i64,
    pub retries: i32,
}

/// The runtime's `cleanCachePolicy` (Jindo's and JuiceFS's own field, else
/// `management.cleanCachePolicy`), checked.
pub fn policy(runtime: &Runtime) -> Result<CleanPolicy, String> {
    let own = match runtime {
        Runtime::Jindo(r) => r.spec.clean_cache_policy.clone(),
        Runtime::JuiceFS(r) => r.spec.clean_cache_policy.clone(),
        Runtime::Alluxio(_) => None,
    };
    let given = own.or(runtime.spec().management.clean_cache_policy).unwrap_or_default();
    let grace = given.grace_period_seconds.map_or(DEFAULT_GRACE_SECONDS, i64::from);
    let retries = given.max_retry_attempts.unwrap_or(DEFAULT_RETRIES);
    if grace < 1 {
        return Err(format!("spec.cleanCachePolicy.gracePeriodSeconds: {grace}; give 1 or more seconds"));
    }
    if retries < 0 {
        return Err(format!("spec.cleanCachePolicy.maxRetryAttempts: {retries}; give 0 or more"));
    }
    Ok(CleanPolicy { grace_seconds: grace, retries })
}

/// Where a Dataset's workers keep their cache in a hostPath tier at `path` on a node.
pub fn own_tier_dir(path: &Path, engine_dir: &str, ns: &str, name: &str) -> PathBuf {
    path.join(engine_dir).join(format!("{ns}-{name}"))
}

/// The Dataset's own directories of the runtime's hostPath tiers.
pub fn hostpath_dirs(runtime: &Runtime) -> Result<Vec<PathBuf>, String> {
    let (ns, name) = (runtime.namespace(), runtime.name());
    let engine_dir = if matches!(runtime, Runtime::JuiceFS(_)) { "juicefs-cache" } else { "cistern" };
    let levels = &runtime.spec().tieredstore.levels;
    let tiers = cistern_api::plan::runtime_tiers(runtime)?;
    let mut dirs = Vec::new();
    for (i, tier) in tiers.iter().enumerate() {
        let level = levels.get(i);
        let on_host = level.and_then(|l| l.volume_type.as_deref()).unwrap_or("hostPath") == "hostPath";
        let claim = level.and_then(|l| l.volume_source.as_ref()).is_some_and(|v| v.get("persistentVolumeClaim").is_some());
        if on_host && !claim {
            dirs.extend(tier.paths.iter().map(|p| own_tier_dir(p, engine_dir, &ns, &name)));
        }
    }
    Ok(dirs)
}

/// The Job that empties `dirs` on `node`.
pub fn clean_job(runtime: &Runtime, node: &str, dirs: &[PathBuf], policy: CleanPolicy, image: &str) -> Job {
    let (ns, name) = (runtime.namespace(), runtime.name());
    let release = cistern_api::names::label_value(&name);
    let node_label = cistern_api::names::label_value(node);
    let labels = string_map([("app", "cistern"), ("release", release.as_str()), ("role", "clean-cache"), ("cistern.io/node", node_label.as_str())]);
    let job_name = cistern_api::names::shorten(&format!("{name}-clean-cache-{node}"), 63);
    let inside: Vec<String> = (0..dirs.len()).map(|i| format!("/clean/{i}")).collect();
    let volumes = dirs.iter().enumerate().map(|(i, d)| host_path_volume(&format!("tier-{i}"), d.display().to_string())).collect();
    let mounts = inside.iter().enumerate().map(|(i, p)| mount(&format!("tier-{i}"), p.clone(), false)).collect();
    // The directories come as arguments, never pasted into the script.
    let mut args = vec![r#"for d in "$@"; do find "$d" -mindepth 1 -delete || exit 1; done"#.to_string(), "clean-cache".into()];
    args.extend(inside);
    let cleaner = Container {
        name: "clean-cache".into(),
        image: Some(image.into()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec!["sh".into(), "-c".into()]),
        args: Some(args),
        volume_mounts: Some(mounts),
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: Some(vec!["DAC_OVERRIDE".into()]) }),
            ..Default::default()
        }),
        ..Default::default()
    };
    Job {
        metadata: ObjectMeta { name: Some(job_name), namespace: Some(ns.to_string()), labels: Some(labels.clone()), ..Default::default() },
        spec: Some(JobSpec {
            backoff_limit: Some(policy.retries),
            active_deadline_seconds: Some(policy.grace_seconds),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
                spec: Some(PodSpec {
                    // Pinned to the node that holds the cache, tainted or not.
                    node_name: Some(node.into()),
                    tolerations: Some(vec![Toleration { operator: Some("Exists".into()), ..Default::default() }]),
                    restart_policy: Some("Never".into()),
                    containers: vec![cleaner],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Adds the finalizer to a runtime that lacks it (a JSON Patch that fails if the list
/// changed meanwhile, so another controller's finalizer is never lost).
pub async fn ensure_finalizer<K: RuntimeKind>(api: &Api<K>, rt: &K) -> Result<(), Error> {
    let current = rt.meta().finalizers.clone();
    if current.iter().flatten().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let ops = match current {
        None => vec![add(&["metadata", "finalizers"], serde_json::to_value([FINALIZER]).unwrap_or_default())],
        Some(list) => vec![
            PatchOperation::Test(TestOperation { path: crate::webhook::pointer(["metadata", "finalizers"]), value: serde_json::to_value(&list).unwrap_or_default() }),
            add(&["metadata", "finalizers", "-"], FINALIZER.into()),
        ],
    };
    api.patch(&rt.name_any(), &PatchParams::default(), &Patch::Json::<()>(json_patch::Patch(ops))).await?;
    Ok(())
}

fn add(path: &[&str], value: serde_json::Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path: crate::webhook::pointer(path.iter().copied()), value })
}

async fn remove_finalizer<K: RuntimeKind>(api: &Api<K>, rt: &K) -> Result<(), Error> {
    let list = rt.meta().finalizers.clone().unwrap_or_default();
    let Some(i) = list.iter().position(|f| f == FINALIZER) else { return Ok(()) };
    let path = crate::webhook::pointer(["metadata", "finalizers"]);
    let ops = vec![
        PatchOperation::Test(TestOperation { path: path.clone(), value: serde_json::to_value(&list).unwrap_or_default() }),
        PatchOperation::Remove(RemoveOperation { path: crate::webhook::pointer(["metadata", "finalizers", i.to_string().as_str()]) }),
    ];
    api.patch(&rt.name_any(), &PatchParams::default(), &Patch::Json::<()>(json_patch::Patch(ops))).await?;
    Ok(())
}

/// One step of cleaning a deleted runtime's cache; the finalizer goes once it is done.
pub async fn cleanup<K: RuntimeKind>(rt: &K, ctx: &Context) -> Result<Action, Error> {
    if !rt.meta().finalizers.iter().flatten().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let runtime = rt.clone().wrap();
    let (ns, name) = (runtime.namespace(), runtime.name());
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    // An invalid policy or tier cannot stop a deletion: the defaults apply, and it is said.
    let policy = policy(&runtime).unwrap_or(CleanPolicy { grace_seconds: DEFAULT_GRACE_SECONDS, retries: DEFAULT_RETRIES });
    let dirs = hostpath_dirs(&runtime).unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let worker_pods = pods.list(&ListParams::default().labels(&format!("release={},role=worker", cistern_api::names::label_value(&name)))).await?;
    let label = crate::locality::cache_label(&ns, &name);
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let labelled: BTreeSet<String> = nodes.list(&ListParams::default().labels(&label)).await?.items.iter().map(|n| n.name_any()).collect();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let job_selector = format!("release={},role=clean-cache", cistern_api::names::label_value(&name));
    let existing = jobs.list(&ListParams::default().labels(&job_selector)).await?.items;
    if !worker_pods.items.is_empty() {
        // 1. No worker may write while its cache is removed. The nodes they are on are noted
        // with the cache label, so that a restart of the operator still knows them.
        for node in worker_pods.items.iter().filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone())) {
            if !labelled.contains(&node) {
                nodes.patch(&node, &PatchParams::default(), &Patch::Merge(MetadataPatch::label(&label, Some("true")))).await?;
            }
        }
        let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
        match sets.delete(&format!("{name}-worker"), &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(Action::requeue(WAIT));
    }
    let owner = rt.controller_owner_ref(&()).ok_or_else(|| Error::Invalid(format!("runtime {ns}/{name} has no uid")))?;
    if !dirs.is_empty() {
        // 2. One Job per node that held the cache.
        let params = PatchParams::apply(MANAGER).force();
        let mut unfinished = Vec::new();
        for node in &labelled {
            let mut job = clean_job(&runtime, node, &dirs, policy, &ctx.opts.image);
            let job_name = job.metadata.name.clone().unwrap_or_default();
            match existing.iter().find(|j| j.metadata.name.as_deref() == Some(&job_name)) {
                Some(j) if finished(j).is_some() => continue,
                Some(_) => unfinished.push(node.clone()),
                None => {
                    job.metadata.owner_references = Some(vec![owner.clone()]);
                    Object::from(job).apply(&ctx.client, &params).await?;
                    unfinished.push(node.clone());
                }
            }
        }
        if !unfinished.is_empty() {
            return Ok(Action::requeue(WAIT));
        }
    }
    // 3. Said, unlabelled, done.
    let failed: Vec<String> = existing.iter().filter(|j| finished(j) == Some(false)).filter_map(|j| j.labels().get("cistern.io/node").cloned()).collect();
    let cleaned: Vec<&String> = labelled.iter().filter(|n| !failed.contains(&cistern_api::names::label_value(n))).collect();
    let paths: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    if dirs.is_empty() {
        ctx.event(rt, false, "CacheCleaned", "no hostPath tier: nothing of the cache stays on the nodes".into()).await;
    } else if failed.is_empty() {
        ctx.event(rt, false, "CacheCleaned", format!("emptied {} on {} node(s): {cleaned:?}", paths.join(", "), cleaned.len())).await;
    } else {
        let note = format!("cleaning the cache failed on {failed:?} within {}s and {} retries: remove {} there by hand", policy.grace_seconds, policy.retries, paths.join(", "));
        ctx.event(rt, true, "CacheCleanFailed", note).await;
    }
    for node in &labelled {
        nodes.patch(node, &PatchParams::default(), &Patch::Merge(MetadataPatch::label(&label, None))).await?;
    }
    tracing::info!(namespace = ns, runtime = name, nodes = labelled.len(), failed = failed.len(), "cache cleaned off the nodes");
    remove_finalizer(&api, rt).await?;
    Ok(Action::await_change())
}

/// `Some(true)`: the Job succeeded; `Some(false)`: it failed for good; `None`: still going.
fn finished(job: &Job) -> Option<bool> {
    let status = job.status.as_ref()?;
    let condition = |kind: &str| status.conditions.iter().flatten().any(|c| c.type_ == kind && c.status == "True");
    if status.succeeded.unwrap_or(0) > 0 || condition("Complete") {
        Some(true)
    } else if condition("Failed") {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(extra: &str) -> Runtime {
        let yaml = format!("apiVersion: data.fluid.io/v1alpha1\nkind: JindoRuntime\nmetadata: {{name: demo, namespace: ns}}\nspec:\n  tieredstore:\n    levels:\n      - {{mediumtype: SSD, path: '/mnt/a,/mnt/b', quota: 1Gi}}\n      - {{mediumtype: MEM, path: /dev/shm, volumeType: emptyDir, quota: 1Gi}}\n{extra}");
        Runtime::Jindo(serde_saphyr::from_str(&yaml).unwrap())
    }

    #[test]
    fn policy_defaults_and_bounds() {
        assert_eq!(policy(&runtime("")), Ok(CleanPolicy { grace_seconds: 60, retries: 3 }));
        assert_eq!(policy(&runtime("  cleanCachePolicy: {gracePeriodSeconds: 30, maxRetryAttempts: 1}\n")), Ok(CleanPolicy { grace_seconds: 30, retries: 1 }));
        assert_eq!(
            policy(&runtime("  management: {cleanCachePolicy: {gracePeriodSeconds: 5}}\n")),
            Ok(CleanPolicy { grace_seconds: 5, retries: 3 }),
            "management.cleanCachePolicy for kinds without their own"
        );
        assert!(policy(&runtime("  cleanCachePolicy: {gracePeriodSeconds: 0}\n")).unwrap_err().contains("gracePeriodSeconds"));
        assert!(policy(&runtime("  cleanCachePolicy: {maxRetryAttempts: -1}\n")).unwrap_err().contains("maxRetryAttempts"));
    }

    #[test]
    fn the_job_empties_only_the_datasets_own_hostpath_dirs_on_its_node() {
        let rt = runtime("");
        let dirs = hostpath_dirs(&rt).unwrap();
        assert_eq!(dirs, [PathBuf::from("/mnt/a/cistern/ns-demo"), PathBuf::from("/mnt/b/cistern/ns-demo")], "emptyDir tiers go with their pods");
        let job = serde_json::to_value(clean_job(&rt, "node-1", &dirs, CleanPolicy { grace_seconds: 30, retries: 2 }, "img")).unwrap();
        assert_eq!((job["spec"]["activeDeadlineSeconds"].as_i64(), job["spec"]["backoffLimit"].as_i64()), (Some(30), Some(2)));
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["nodeName"], "node-1");
        let host: Vec<&str> = pod["volumes"].as_array().unwrap().iter().filter_map(|v| v["hostPath"]["path"].as_str()).collect();
        assert_eq!(host, ["/mnt/a/cistern/ns-demo", "/mnt/b/cistern/ns-demo"]);
        let c = &pod["containers"][0];
        assert_eq!(c["securityContext"]["capabilities"]["add"], serde_json::json!(["DAC_OVERRIDE"]));
        let args: Vec<&str> = c["args"].as_array().unwrap().iter().filter_map(|a| a.as_str()).collect();
        assert_eq!(&args[2..], ["/clean/0", "/clean/1"], "paths as arguments, not in the script");
    }
}
