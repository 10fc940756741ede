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
use crate::render::RenderOptions;
use cistern_api::{DataLoad, Dataset, Runtime};
use crate::dataload_policy::{self as policy, Policy};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, ListParams, Patch, PatchParams};
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
        let port = crate::host_ports::Ports::of(runtime).master;
        args.extend(["--master".into(), format!("{ds_name}-master.{ds_ns}.svc:{port}")]);
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
        // When it finished: `ttlSecondsAfterFinished` counts from here.
        let at = status.completion_time.as_ref().map(|t| t.0.to_string()).unwrap_or_else(|| jiff::Timestamp::now().to_string());
        return json!({"phase": "Complete", "duration": duration,
            "conditions": [{"type": "Complete", "status": "True", "reason": "LoadComplete", "message": "", "lastTransitionTime": at}]});
    }
    if let Some(c) = condition("Failed") {
        let message = c.message.clone().unwrap_or_else(|| "the loader Job failed".into());
        let reason = c.reason.clone().unwrap_or_else(|| "LoadFailed".into());
        let at = c.last_transition_time.as_ref().map(|t| t.0.to_string()).unwrap_or_else(|| jiff::Timestamp::now().to_string());
        return json!({"phase": "Failed", "conditions": [{"type": "Failed", "status": "True", "reason": reason, "message": message, "lastTransitionTime": at}]});
    }
    if status.active.unwrap_or(0) > 0 || status.failed.unwrap_or(0) > 0 {
        return json!({"phase": "Executing"});
    }
    json!({"phase": "Pending"})
}

pub async fn reconcile_dataload(dl: Arc<DataLoad>, ctx: Arc<Context>) -> Result<Action, Error> {
    if dl.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = dl.namespace().unwrap_or_else(|| "default".into());
    let api: Api<DataLoad> = Api::namespaced(ctx.client.clone(), &ns);
    let name = dl.name_any();
    let set_status = |status: Value| {
        let api = api.clone();
        let name = name.clone();
        async move { api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await }
    };
    let waiting = |reason: &str, why: String| json!({"phase": "Pending", "conditions": [{"type": "Waiting", "status": "True", "reason": reason, "message": why}]});
    let policy = match policy::policy(&dl) {
        Ok(p) => p,
        Err(why) => {
            if dl.status.as_ref().map(|s| s.phase.as_str()) != Some("Failed") {
                set_status(json!({"phase": "Failed", "conditions": [{"type": "Failed", "status": "True", "reason": "InvalidPolicy", "message": why}]})).await?;
                ctx.event(dl.as_ref(), true, "InvalidPolicy", why).await;
            }
            return Ok(Action::await_change());
        }
    };
    let status = dl.status.as_ref();
    let done = policy == Policy::Once && status.is_some_and(|s| s.phase == "Complete" || s.phase == "Failed");
    if done {
        // Finished: only `ttlSecondsAfterFinished` is left to act on.
        let finished = status.and_then(|s| s.conditions.first()).and_then(|c| c.last_transition_time.as_deref());
        return Ok(match policy::ttl_left(&dl, finished) {
            Some(left) if left <= 0 => {
                api.delete(&name, &Default::default()).await?;
                tracing::info!(namespace = ns, dataload = name, "deleted after ttlSecondsAfterFinished");
                Action::await_change()
            }
            Some(left) => Action::requeue(Duration::from_secs(left as u64)),
            None => Action::await_change(),
        });
    }
    if dl.spec.dataset.name.is_empty() {
        set_status(waiting("NoDataset", "spec.dataset.name is empty: name the Dataset to load".into())).await?;
        return Ok(Action::await_change());
    }
    let (ds_ns, ds_name) = target(&dl);
    if let Some(after) = &dl.spec.run_after {
        if let Err(why) = policy::preceding_done(&ctx.client, &ns, after).await? {
            set_status(waiting("WaitingForPrecedingOperation", why)).await?;
            return Ok(Action::requeue(POLL));
        }
    }
    let Some(dataset) = Api::<Dataset>::namespaced(ctx.client.clone(), &ds_ns).get_opt(&ds_name).await? else {
        set_status(waiting("DatasetNotReady", format!("Dataset {ds_ns}/{ds_name} does not exist"))).await?;
        return Ok(Action::requeue(Duration::from_secs(10)));
    };
    let Some(runtime) = find_runtime(&ctx.client, &ds_ns, &ds_name).await? else {
        set_status(waiting("DatasetNotReady", format!("Dataset {ds_ns}/{ds_name} is not bound to a runtime yet"))).await?;
        return Ok(Action::requeue(Duration::from_secs(10)));
    };
    let mut job = loader_job(&dl, &runtime, &ctx.opts);
    policy::place(&mut job["spec"]["template"], &dl);
    if let Some(after) = &dl.spec.run_after {
        if let Some(affinity) = policy::follow(&ctx.client, &ns, after).await? {
            job["spec"]["template"]["spec"]["affinity"]["nodeAffinity"] = affinity;
        }
    }
    if ds_ns == ns {
        // Owned, so deleting the DataLoad deletes its Job (owners cannot cross namespaces).
        let owner = dl.controller_owner_ref(&()).ok_or_else(|| Error::Invalid(format!("DataLoad {ns}/{name} has no uid yet")))?;
        job["metadata"]["ownerReferences"] = json!([owner]);
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ds_ns);
    let status = match policy {
        Policy::OnEvent => {
            let content = policy::content_of(&dataset);
            let job_name = format!("{name}-loader");
            let last = jobs.get_opt(&job_name).await?;
            let last_phase = phase_of(last.as_ref());
            let running = last.is_some() && !(last_phase["phase"] == "Complete" || last_phase["phase"] == "Failed");
            if last.is_some() && !running && policy::content_changed(&dl, &content) {
                // The event: the Dataset changed since the last run started. Replace the Job.
                jobs.delete(&job_name, &kube::api::DeleteParams::background()).await?;
                ctx.event(dl.as_ref(), false, "DatasetChanged", format!("Dataset {ds_ns}/{ds_name} changed (UFS total {}, {} files): loading again", content.0, content.1)).await;
                return Ok(Action::requeue(Duration::from_secs(2)));
            }
            if last.is_none() {
                apply(&ctx.client, &job, &PatchParams::apply(MANAGER).force()).await?;
            }
            let mut status = phase_of(jobs.get_opt(&job_name).await?.as_ref());
            if last.is_none() {
                // The figures this run starts from, for the next comparison.
                status["infos"] = json!({"ufsTotal": content.0, "fileNum": content.1});
            }
            status
        }
        Policy::Once => {
            apply(&ctx.client, &job, &PatchParams::apply(MANAGER).force()).await?;
            phase_of(jobs.get_opt(&format!("{name}-loader")).await?.as_ref())
        }
        Policy::Cron => {
            apply(&ctx.client, &policy::cron_job(&job, &dl.spec.schedule), &PatchParams::apply(MANAGER).force()).await?;
            // The DataLoad mirrors the CronJob's latest run.
            let selector = format!("fluid.io/dataload={}", cistern_api::names::label_value(&name));
            let latest = jobs.list(&ListParams::default().labels(&selector)).await?.items.into_iter().max_by_key(|j| j.metadata.creation_timestamp.as_ref().map(|t| t.0));
            let mut status = phase_of(latest.as_ref());
            let cron = Api::<CronJob>::namespaced(ctx.client.clone(), &ds_ns).get_opt(&format!("{name}-loader")).await?.and_then(|c| c.status);
            if let Some(c) = cron {
                status["lastScheduleTime"] = json!(c.last_schedule_time.map(|t| t.0.to_string()));
                status["lastSuccessfulTime"] = json!(c.last_successful_time.map(|t| t.0.to_string()));
            }
            status
        }
    };
    let finished = policy == Policy::Once && (status["phase"] == "Complete" || status["phase"] == "Failed");
    let was = dl.status.as_ref().map(|s| s.phase.clone()).unwrap_or_default();
    set_status(status.clone()).await?;
    if was.is_empty() || was == "Pending" && status["phase"] != "Pending" {
        let ignored = policy::unapplied(&dl);
        if !ignored.is_empty() {
            ctx.event(dl.as_ref(), true, "FieldsNotApplied", ignored.join("; ")).await;
        }
    }
    if status["phase"] != was.as_str() {
        let phase = status["phase"].as_str().unwrap_or_default();
        let note = match phase {
            "Failed" => format!("loading {ds_ns}/{ds_name} failed: {}", status["conditions"][0]["message"].as_str().unwrap_or("see the loader Job")),
            _ => format!("loading {ds_ns}/{ds_name} with Job {ds_ns}/{name}-loader: {phase}"),
        };
        ctx.event(dl.as_ref(), phase == "Failed", &format!("Load{phase}"), note).await;
    }
    if finished && dl.spec.ttl_seconds_after_finished.is_some() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    Ok(if finished { Action::await_change() } else { Action::requeue(POLL) })
}
