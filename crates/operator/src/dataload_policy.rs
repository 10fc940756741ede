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
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};

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
pub fn place(template: &mut Value, dl: &DataLoad) {
    let spec = &dl.spec;
    for (k, v) in &spec.pod_metadata.labels {
        if template["metadata"]["labels"].get(k).is_none() {
            template["metadata"]["labels"][k] = json!(v);
        }
    }
    for (k, v) in &spec.pod_metadata.annotations {
        template["metadata"]["annotations"][k] = json!(v);
    }
    let pod = &mut template["spec"];
    if let Some(a) = &spec.affinity {
        pod["affinity"] = json!(a);
    }
    if !spec.tolerations.is_empty() {
        pod["tolerations"] = json!(spec.tolerations);
    }
    if !spec.node_selector.is_empty() {
        pod["nodeSelector"] = json!(spec.node_selector);
    }
    if !spec.scheduler_name.is_empty() {
        pod["schedulerName"] = json!(spec.scheduler_name);
    }
    if let Some(r) = &spec.resources {
        for c in pod["containers"].as_array_mut().into_iter().flatten() {
            c["resources"] = json!(r);
        }
    }
}

/// DataLoad fields Cistern accepts but does not act on, each with why.
pub fn unapplied(dl: &DataLoad) -> Vec<String> {
    let mut out = Vec::new();
    if dl.spec.load_metadata {
        out.push("spec.loadMetadata: not applied; the master lists directories as the load reads them (and again after the sync interval)".to_string());
    }
    if dl.spec.target.iter().any(|t| t.replicas.is_some_and(|r| r > 1)) {
        out.push("spec.target[].replicas: not applied; each file is cached once, on the worker that owns it".to_string());
    }
    out
}

/// Wraps a loader Job into the CronJob that runs it on `schedule`.
pub fn cron_job(job: &Value, schedule: &str) -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": job["metadata"],
        "spec": {
            "schedule": schedule,
            // One load at a time: a slow one is not overlapped by the next.
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {"metadata": {"labels": job["metadata"]["labels"]}, "spec": job["spec"]},
        },
    })
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
pub async fn follow(client: &Client, ns: &str, run_after: &OperationRef) -> Result<Option<Value>, Error> {
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
    let expr = |k: &str| labels.get(k).map(|v| json!({"key": k, "operator": "In", "values": [v]}));
    if strategy.policy == "Prefer" {
        let mut terms: Vec<Value> = prefers.iter().filter_map(|(k, w)| expr(k).map(|e| json!({"weight": w, "preference": {"matchExpressions": [e]}}))).collect();
        terms.extend(keys.iter().filter_map(|k| expr(k).map(|e| json!({"weight": 50, "preference": {"matchExpressions": [e]}}))));
        return Ok((!terms.is_empty()).then(|| json!({"preferredDuringSchedulingIgnoredDuringExecution": terms})));
    }
    let exprs: Vec<Value> = keys.iter().filter_map(|k| expr(k)).collect();
    Ok((!exprs.is_empty()).then(|| json!({"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": exprs}]}})))
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
        let mut template = json!({"metadata": {"labels": {"app": "cistern"}}, "spec": {}});
        place(&mut template, &dl);
        assert_eq!(template["spec"]["tolerations"][0]["key"], "gpu");
        assert_eq!(template["spec"]["nodeSelector"]["zone"], "a");
        assert_eq!(template["spec"]["schedulerName"], "volcano");
        assert_eq!(template["metadata"]["labels"]["team"], "x");
        assert!(template["spec"]["affinity"]["nodeAffinity"].is_object());
        let job = json!({"metadata": {"name": "l-loader", "labels": {"a": "b"}}, "spec": {"template": template}});
        let cron = cron_job(&job, "0 * * * *");
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
