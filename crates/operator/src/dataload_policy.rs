//! What a DataLoad's spec asks beyond "load these paths once":
//! - **pod placement** (`affinity`, `tolerations`, `nodeSelector`, `schedulerName`,
//!   `podMetadata`) goes onto the loader's pod;
//! - **`policy: Cron`** with `schedule` runs the loader as a CronJob; the DataLoad mirrors its
//!   last Job and records `lastScheduleTime`/`lastSuccessfulTime`;
//! - **`runAfter`** waits until the named operation is Complete, and with an
//!   `affinityStrategy` places the loader on (`Require`) or near (`Prefer`) the node where that
//!   operation's pod ran, matching the node labels it names (`kubernetes.io/hostname` by default);
//! - **`policy: OnEvent`** loads again whenever the Dataset's content changes, as the master sees
//!   it: the event is a change of the Dataset's `status.ufsTotal` or `status.fileNum` (which the
//!   operator copies from the master at every sync). The figures the last run started from are
//!   kept in the DataLoad's `status.infos`; when the Dataset's differ and no run is going, the
//!   finished Job is replaced by a new one;
//! - **`ttlSecondsAfterFinished`** deletes a finished DataLoad (and so its Job) after that long.

use crate::controller::Error;
use cistern_api::{DataLoad, OperationRef};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobTemplateSpec};
use k8s_openapi::api::core::v1::{Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodTemplateSpec, PreferredSchedulingTerm};
use kube::api::ObjectMeta;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

/// The `policy` a loader runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Once,
    Cron,
    OnEvent,
}

/// The DataLoad's policy, or why it cannot run (`Cron` needs a schedule).
pub fn policy(dl: &DataLoad) -> Result<Policy, String> {
    match dl.spec.policy.as_deref().unwrap_or("Once") {
        "" | "Once" => Ok(Policy::Once),
        "Cron" if dl.spec.schedule.trim().is_empty() => Err("spec.schedule: `policy: Cron` needs a schedule in cron format (`0 * * * *`)".into()),
        "Cron" => Ok(Policy::Cron),
        "OnEvent" => Ok(Policy::OnEvent),
        other => Err(format!("spec.policy: `{other}` is not one of Once, Cron, OnEvent")),
    }
}

/// Puts the DataLoad's placement and pod metadata on the loader's pod template.
pub fn place(template: &mut PodTemplateSpec, dl: &DataLoad) {
    let spec = &dl.spec;
    let meta = template.metadata.get_or_insert_with(Default::default);
    let labels = meta.labels.get_or_insert_with(Default::default);
    for (k, v) in &spec.pod_metadata.labels {
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if !spec.pod_metadata.annotations.is_empty() {
        meta.annotations.get_or_insert_with(Default::default).extend(spec.pod_metadata.annotations.clone());
    }
    let pod = template.spec.get_or_insert_with(Default::default);
    if let Some(a) = &spec.affinity {
        pod.affinity = Some(a.clone());
    }
    if !spec.tolerations.is_empty() {
        pod.tolerations = Some(spec.tolerations.clone());
    }
    if !spec.node_selector.is_empty() {
        pod.node_selector = Some(spec.node_selector.clone());
    }
    if !spec.scheduler_name.is_empty() {
        pod.scheduler_name = Some(spec.scheduler_name.clone());
    }
    if let Some(r) = &spec.resources {
        for c in &mut pod.containers {
            c.resources = Some(r.clone());
        }
    }
}

/// DataLoad fields Cistern accepts but does not act on for this runtime, each with why: a
/// JuiceFSRuntime's load reads through a mount of the volume, where neither a listing from the
/// under storage nor copies on other workers can be asked for.
pub fn unapplied(dl: &DataLoad, runtime: &cistern_api::Runtime) -> Vec<String> {
    let mut out = Vec::new();
    if !matches!(runtime, cistern_api::Runtime::JuiceFS(_)) {
        return out;
    }
    if dl.spec.load_metadata {
        out.push("spec.loadMetadata: not applied to a JuiceFSRuntime; its load reads through a mount of the volume".to_string());
    }
    if dl.spec.target.iter().any(|t| t.replicas.is_some_and(|r| r > 1)) {
        out.push("spec.target[].replicas: not applied to a JuiceFSRuntime; each node's JuiceFS client keeps its own cache".to_string());
    }
    out
}

/// Wraps a loader Job into the CronJob that runs it on `schedule`.
pub fn cron_job(job: Job, schedule: &str) -> CronJob {
    let labels = job.metadata.labels.clone();
    CronJob {
        metadata: job.metadata,
        spec: CronJobSpec {
            schedule: schedule.into(),
            // One load at a time: a slow one is not overlapped by the next.
            concurrency_policy: Some("Forbid".into()),
            successful_jobs_history_limit: Some(1),
            failed_jobs_history_limit: Some(1),
            job_template: JobTemplateSpec { metadata: Some(ObjectMeta { labels, ..Default::default() }), spec: job.spec },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Whether the operation `run_after` names is Complete; `Err` says what is awaited.
pub async fn preceding_done(client: &Client, ns: &str, run_after: &OperationRef) -> Result<Result<(), String>, Error> {
    if run_after.kind != "DataLoad" {
        return Ok(Err(format!("spec.runAfter: waiting on a {} is not supported; only DataLoads run in Cistern", run_after.kind)));
    }
    let ns = if run_after.namespace.is_empty() { ns } else { &run_after.namespace };
    let phase = Api::<DataLoad>::namespaced(client.clone(), ns)
        .get_opt(&run_after.name)
        .await?
        .and_then(|d| d.status.map(|s| s.phase))
        .unwrap_or_default();
    Ok(match phase.as_str() {
        "Complete" => Ok(()),
        "" => Err(format!("waiting for DataLoad {ns}/{} to start", run_after.name)),
        p => Err(format!("waiting for DataLoad {ns}/{} ({p})", run_after.name)),
    })
}

/// The node affinity that puts this loader where the preceding operation's pod ran.
pub async fn follow(client: &Client, ns: &str, run_after: &OperationRef) -> Result<Option<NodeAffinity>, Error> {
    let Some(strategy) = &run_after.affinity_strategy else { return Ok(None) };
    let ns = if run_after.namespace.is_empty() { ns } else { &run_after.namespace };
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = format!("fluid.io/dataload={}", cistern_api::names::label_value(&run_after.name));
    let node = pods.list(&ListParams::default().labels(&selector)).await?.items.into_iter().find_map(|p| p.spec.and_then(|s| s.node_name));
    let Some(node) = node else { return Ok(None) };
    let Some(node) = Api::<Node>::all(client.clone()).get_opt(&node).await? else { return Ok(None) };
    let labels = node.labels();
    let mut keys: Vec<String> = strategy.requires.iter().map(|r| r.name.clone()).collect();
    let prefers: Vec<(String, i32)> = strategy.prefers.iter().map(|p| (p.name.clone(), p.weight.max(1))).collect();
    if keys.is_empty() && prefers.is_empty() {
        keys.push("kubernetes.io/hostname".into());
    }
    let expr = |k: &str| labels.get(k).map(|v| NodeSelectorRequirement { key: k.into(), operator: "In".into(), values: Some(vec![v.clone()]) });
    let term = |e: NodeSelectorRequirement| NodeSelectorTerm { match_expressions: Some(vec![e]), ..Default::default() };
    if strategy.policy == "Prefer" {
        let weighted = |(k, w): (&str, i32)| expr(k).map(|e| PreferredSchedulingTerm { weight: w, preference: term(e) });
        let mut terms: Vec<PreferredSchedulingTerm> = prefers.iter().filter_map(|(k, w)| weighted((k, *w))).collect();
        terms.extend(keys.iter().filter_map(|k| weighted((k, 50))));
        return Ok((!terms.is_empty()).then(|| NodeAffinity { preferred_during_scheduling_ignored_during_execution: Some(terms), ..Default::default() }));
    }
    let exprs: Vec<NodeSelectorRequirement> = keys.iter().filter_map(|k| expr(k)).collect();
    let required = NodeSelector { node_selector_terms: vec![NodeSelectorTerm { match_expressions: Some(exprs.clone()), ..Default::default() }] };
    Ok((!exprs.is_empty()).then(|| NodeAffinity { required_during_scheduling_ignored_during_execution: Some(required), ..Default::default() }))
}

/// The Dataset content figures an OnEvent load compares: `(ufsTotal, fileNum)`.
pub fn content_of(ds: &cistern_api::Dataset) -> (String, String) {
    let s = ds.status.clone().unwrap_or_default();
    (s.ufs_total, s.file_num)
}

/// Whether an OnEvent load must run again: its last run started from other figures.
pub fn content_changed(dl: &DataLoad, now: &(String, String)) -> bool {
    let infos = dl.status.as_ref().map(|s| &s.infos);
    let was = (infos.and_then(|i| i.get("ufsTotal")).cloned().unwrap_or_default(), infos.and_then(|i| i.get("fileNum")).cloned().unwrap_or_default());
    was != *now
}

/// Seconds left before a DataLoad finished at `finished` (RFC 3339) expires; `None` without a TTL.
pub fn ttl_left(dl: &DataLoad, finished: Option<&str>) -> Option<i64> {
    let ttl = i64::from(dl.spec.ttl_seconds_after_finished?);
    let finished: jiff::Timestamp = finished?.parse().ok()?;
    Some((finished + jiff::SignedDuration::from_secs(ttl)).as_second() - jiff::Timestamp::now().as_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> DataLoad {
        serde_saphyr::from_str(&format!("apiVersion: data.fluid.io/v1alpha1\nkind: DataLoad\nmetadata: {{name: l, namespace: ns}}\nspec:\n{yaml}")).unwrap()
    }

    #[test]
    fn policies() {
        assert_eq!(policy(&load("  dataset: {name: d}\n")), Ok(Policy::Once));
        assert_eq!(policy(&load("  policy: Cron\n  schedule: '*/5 * * * *'\n")), Ok(Policy::Cron));
        assert!(policy(&load("  policy: Cron\n")).unwrap_err().contains("spec.schedule"));
        assert_eq!(policy(&load("  policy: OnEvent\n")), Ok(Policy::OnEvent));
        assert!(policy(&load("  policy: Sometimes\n")).unwrap_err().contains("Once, Cron, OnEvent"));
    }

    #[test]
    fn placement_reaches_the_pod_and_cron_wraps_the_job() {
        let dl = load("  tolerations: [{key: gpu, operator: Exists}]\n  nodeSelector: {zone: a}\n  schedulerName: volcano\n  podMetadata: {labels: {team: x}}\n  affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: k, operator: Exists}]}]}}}\n");
        let mut template = PodTemplateSpec {
            metadata: Some(ObjectMeta { labels: Some([("app".to_string(), "cistern".to_string())].into()), ..Default::default() }),
            spec: Some(Default::default()),
        };
        place(&mut template, &dl);
        let pod = template.spec.clone().unwrap();
        assert_eq!(pod.tolerations.unwrap()[0].key.as_deref(), Some("gpu"));
        assert_eq!(pod.node_selector.unwrap()["zone"], "a");
        assert_eq!(pod.scheduler_name.as_deref(), Some("volcano"));
        assert_eq!(template.metadata.as_ref().unwrap().labels.as_ref().unwrap()["team"], "x");
        assert!(pod.affinity.unwrap().node_affinity.is_some());
        let job = Job {
            metadata: ObjectMeta { name: Some("l-loader".into()), labels: Some([("a".to_string(), "b".to_string())].into()), ..Default::default() },
            spec: Some(k8s_openapi::api::batch::v1::JobSpec { template, ..Default::default() }),
            ..Default::default()
        };
        let cron = serde_json::to_value(cron_job(job, "0 * * * *")).unwrap();
        assert_eq!((cron["kind"].as_str(), cron["spec"]["schedule"].as_str()), (Some("CronJob"), Some("0 * * * *")));
        assert_eq!(cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["schedulerName"], "volcano");
    }

    #[test]
    fn ttl_counts_from_the_finish() {
        let dl = load("  ttlSecondsAfterFinished: 300\n");
        let just_now = jiff::Timestamp::now().to_string();
        let left = ttl_left(&dl, Some(&just_now)).unwrap();
        assert!((295..=300).contains(&left), "{left}");
        assert_eq!(ttl_left(&load("  dataset: {name: d}\n"), Some(&just_now)), None);
    }
}
