//! The DataLoad controller: a DataLoad runs as a Job (`<name>-loader`) against its Dataset's
//! runtime, and the DataLoad's phase mirrors the Job: Pending (no bound Dataset yet, or the Job
//! not started), Executing, Complete, or Failed with the Job's reason. A finished DataLoad is
//! left alone, as Fluid does: apply a new one to load again.
//!
//! The Job runs `cistern load`:
//! - for the Cistern engine (Jindo and Alluxio runtimes), `--master <dataset>-master...`: the
//!   workers fetch and keep the bytes, with no mount on the Job's node;
//! - for a JuiceFSRuntime, through the Dataset's PVC mounted in the Job's pod (`--mount`): the
//!   JuiceFS client on that node fills its cache as it reads.

use crate::controller::{apply, find_runtime, Context, Error, MANAGER};
use crate::render::{RenderOptions, MASTER_PORT};
use cistern_api::{DataLoad, Dataset, Runtime};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// How often a running load is looked at.
const POLL: Duration = Duration::from_secs(5);
/// Retries of a failed loader pod before the DataLoad is Failed.
const BACKOFF_LIMIT: i32 = 3;
const DATA_DIR: &str = "/data";

/// The Dataset a DataLoad names: (namespace, name).
fn target(dl: &DataLoad) -> (String, String) {
    let ns = dl.spec.dataset.namespace.clone().or_else(|| dl.namespace()).unwrap_or_else(|| "default".into());
    (ns, dl.spec.dataset.name.clone())
}

/// The Job that runs a DataLoad against its Dataset's runtime.
pub fn loader_job(dl: &DataLoad, runtime: &Runtime, opts: &RenderOptions) -> Value {
    let (ds_ns, ds_name) = target(dl);
    let name = dl.name_any();
    let mut args = vec!["load".to_string(), "--load-name".into(), format!("{ds_ns}/{name}")];
    let mut pod = json!({"restartPolicy": "Never"});
    let mut container = json!({"name": "loader", "image": opts.image, "imagePullPolicy": "IfNotPresent", "command": ["cistern"]});
    if matches!(runtime, Runtime::JuiceFS(_)) {
        args.extend(["--mount".into(), DATA_DIR.into()]);
        container["volumeMounts"] = json!([{"name": "data", "mountPath": DATA_DIR, "readOnly": true}]);
        pod["volumes"] = json!([{"name": "data", "persistentVolumeClaim": {"claimName": ds_name, "readOnly": true}}]);
    } else {
        args.extend(["--master".into(), format!("{ds_name}-master.{ds_ns}.svc:{MASTER_PORT}")]);
        // The client's certificate, for mutual TLS with the master and workers.
        args.extend(["--credentials".into(), crate::render::CREDENTIALS_DIR.into()]);
        let n = crate::render::Names { ns: &ds_ns, name: &ds_name };
        container["volumeMounts"] = json!([crate::render::credentials_mount()]);
        pod["volumes"] = json!([crate::render::credentials_volume(&n, cistern_rpc::tls::Role::Client)]);
    }
    args.extend(dl.spec.target.iter().map(|t| t.path.clone()));
    container["args"] = json!(args);
    pod["containers"] = json!([container]);
    // The Dataset's labels (its NetworkPolicy lets its own pods reach the master and workers).
    let mut labels = crate::render::Names { ns: &ds_ns, name: &ds_name }.labels("dataload");
    labels["fluid.io/dataload"] = json!(cistern_api::names::label_value(&name));
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": format!("{name}-loader"), "namespace": ds_ns, "labels": labels},
        "spec": {
            "backoffLimit": BACKOFF_LIMIT,
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    })
}

/// The DataLoad's status from its Job's.
fn phase_of(job: Option<&Job>) -> Value {
    let Some(status) = job.and_then(|j| j.status.as_ref()) else {
        return json!({"phase": "Pending"});
    };
    let condition = |kind: &str| status.conditions.iter().flatten().find(|c| c.type_ == kind && c.status == "True");
    let duration = match (&status.start_time, &status.completion_time) {
        (Some(start), Some(end)) => format!("{}s", end.0.as_second() - start.0.as_second()),
        _ => String::new(),
    };
    if status.succeeded.unwrap_or(0) > 0 || condition("Complete").is_some() {
        return json!({"phase": "Complete", "duration": duration});
    }
    if let Some(c) = condition("Failed") {
        let message = c.message.clone().unwrap_or_else(|| "the loader Job failed".into());
        let reason = c.reason.clone().unwrap_or_else(|| "LoadFailed".into());
        return json!({"phase": "Failed", "conditions": [{"type": "Failed", "status": "True", "reason": reason, "message": message}]});
    }
    if status.active.unwrap_or(0) > 0 || status.failed.unwrap_or(0) > 0 {
        return json!({"phase": "Executing"});
    }
    json!({"phase": "Pending"})
}

pub async fn reconcile_dataload(dl: Arc<DataLoad>, ctx: Arc<Context>) -> Result<Action, Error> {
    let done = dl.status.as_ref().is_some_and(|s| s.phase == "Complete" || s.phase == "Failed");
    if done || dl.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = dl.namespace().unwrap_or_else(|| "default".into());
    let api: Api<DataLoad> = Api::namespaced(ctx.client.clone(), &ns);
    let (ds_ns, ds_name) = target(&dl);
    let set_status = |status: Value| {
        let api = api.clone();
        let name = dl.name_any();
        async move { api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await }
    };
    let waiting = |why: String| json!({"phase": "Pending", "conditions": [{"type": "Waiting", "status": "True", "reason": "DatasetNotReady", "message": why}]});
    if Api::<Dataset>::namespaced(ctx.client.clone(), &ds_ns).get_opt(&ds_name).await?.is_none() {
        set_status(waiting(format!("Dataset {ds_ns}/{ds_name} does not exist"))).await?;
        return Ok(Action::requeue(Duration::from_secs(10)));
    }
    let Some(runtime) = find_runtime(&ctx.client, &ds_ns, &ds_name).await? else {
        set_status(waiting(format!("Dataset {ds_ns}/{ds_name} is not bound to a runtime yet"))).await?;
        return Ok(Action::requeue(Duration::from_secs(10)));
    };
    let mut job = loader_job(&dl, &runtime, &ctx.opts);
    if ds_ns == ns {
        // Owned, so deleting the DataLoad deletes its Job (owners cannot cross namespaces).
        let owner = dl.controller_owner_ref(&()).ok_or_else(|| Error::Invalid(format!("DataLoad {ns}/{} has no uid yet", dl.name_any())))?;
        job["metadata"]["ownerReferences"] = json!([owner]);
    }
    apply(&ctx.client, &job, &PatchParams::apply(MANAGER).force()).await?;
    let job: Option<Job> = Api::<Job>::namespaced(ctx.client.clone(), &ds_ns).get_opt(&format!("{}-loader", dl.name_any())).await?;
    let status = phase_of(job.as_ref());
    let finished = status["phase"] == "Complete" || status["phase"] == "Failed";
    let was = dl.status.as_ref().map(|s| s.phase.clone()).unwrap_or_default();
    set_status(status.clone()).await?;
    if status["phase"] != was.as_str() {
        let phase = status["phase"].as_str().unwrap_or_default();
        let note = match phase {
            "Failed" => format!("loading {ds_ns}/{ds_name} failed: {}", status["conditions"][0]["message"].as_str().unwrap_or("see the loader Job")),
            _ => format!("loading {ds_ns}/{ds_name} with Job {ds_ns}/{}-loader: {phase}", dl.name_any()),
        };
        ctx.event(dl.as_ref(), phase == "Failed", &format!("Load{phase}"), note).await;
    }
    Ok(if finished { Action::await_change() } else { Action::requeue(POLL) })
}
