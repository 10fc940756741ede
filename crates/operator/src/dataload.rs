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

use crate::controller::{find_runtime, Context, Error, MANAGER};
use crate::objects::{mount, patch_status, Object};
use crate::render::RenderOptions;
use cistern_api::{Condition, DataLoad, DataLoadStatus, Dataset, Runtime};
use crate::dataload_policy::{self as policy, Policy};
use k8s_openapi::api::batch::v1::{CronJob, Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Volume};
use kube::api::ObjectMeta;
use kube::api::{Api, ListParams, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
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
pub fn loader_job(dl: &DataLoad, runtime: &Runtime, opts: &RenderOptions) -> Job {
    let (ds_ns, ds_name) = target(dl);
    let name = dl.name_any();
    let mut args = vec!["load".to_string(), "--load-name".into(), format!("{ds_ns}/{name}")];
    let (volume, volume_mount) = if matches!(runtime, Runtime::JuiceFS(_)) {
        args.extend(["--mount".into(), DATA_DIR.into()]);
        let claim = PersistentVolumeClaimVolumeSource { claim_name: ds_name.clone(), read_only: Some(true) };
        (Volume { name: "data".into(), persistent_volume_claim: Some(claim), ..Default::default() }, mount("data", DATA_DIR, true))
    } else {
        let port = crate::host_ports::Ports::of(runtime).master;
        args.extend(["--master".into(), format!("{ds_name}-master.{ds_ns}.svc:{port}")]);
        // The client's certificate, for mutual TLS with the master and workers.
        args.extend(["--credentials".into(), crate::render::CREDENTIALS_DIR.into()]);
        let n = crate::render::Names { ns: &ds_ns, name: &ds_name };
        (crate::render::credentials_volume(&n, cistern_rpc::tls::Role::Client), crate::render::credentials_mount())
    };
    if !matches!(runtime, Runtime::JuiceFS(_)) {
        if dl.spec.load_metadata {
            args.push("--load-metadata".into());
        }
        for t in &dl.spec.target {
            match t.replicas.filter(|r| *r > 1) {
                Some(r) => args.extend(["--replicated".to_string(), format!("{}={r}", t.path)]),
                None => args.push(t.path.clone()),
            }
        }
    } else {
        args.extend(dl.spec.target.iter().map(|t| t.path.clone()));
    }
    let container = Container {
        name: "loader".into(),
        image: Some(opts.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec!["cistern".into()]),
        args: Some(args),
        volume_mounts: Some(vec![volume_mount]),
        ..Default::default()
    };
    // The Dataset's labels (its NetworkPolicy lets its own pods reach the master and workers).
    let mut labels = crate::render::Names { ns: &ds_ns, name: &ds_name }.labels("dataload");
    labels.insert("fluid.io/dataload".into(), cistern_api::names::label_value(&name));
    Job {
        metadata: ObjectMeta { name: Some(format!("{name}-loader")), namespace: Some(ds_ns), labels: Some(labels.clone()), ..Default::default() },
        spec: Some(JobSpec {
            backoff_limit: Some(BACKOFF_LIMIT),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
                spec: Some(PodSpec { restart_policy: Some("Never".into()), containers: vec![container], volumes: Some(vec![volume]), ..Default::default() }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn condition(kind: &str, reason: &str, message: String, at: Option<String>) -> Condition {
    Condition { type_: kind.into(), status: "True".into(), reason: reason.into(), message, last_transition_time: at, ..Default::default() }
}

fn phase(p: &str) -> DataLoadStatus {
    DataLoadStatus { phase: p.into(), ..Default::default() }
}

/// The DataLoad's phase from its Job's status.
fn phase_of(job: Option<&Job>) -> DataLoadStatus {
    let Some(status) = job.and_then(|j| j.status.as_ref()) else {
        return phase("Pending");
    };
    let condition_of = |kind: &str| status.conditions.iter().flatten().find(|c| c.type_ == kind && c.status == "True");
    let duration = match (&status.start_time, &status.completion_time) {
        (Some(start), Some(end)) => format!("{}s", end.0.as_second() - start.0.as_second()),
        _ => String::new(),
    };
    if status.succeeded.unwrap_or(0) > 0 || condition_of("Complete").is_some() {
        // When it finished: `ttlSecondsAfterFinished` counts from here.
        let at = status.completion_time.as_ref().map(|t| t.0.to_string()).unwrap_or_else(|| jiff::Timestamp::now().to_string());
        let done = condition("Complete", "LoadComplete", String::new(), Some(at));
        return DataLoadStatus { duration, conditions: vec![done], ..phase("Complete") };
    }
    if let Some(c) = condition_of("Failed") {
        let message = c.message.clone().unwrap_or_else(|| "the loader Job failed".into());
        let reason = c.reason.clone().unwrap_or_else(|| "LoadFailed".into());
        let at = c.last_transition_time.as_ref().map(|t| t.0.to_string()).unwrap_or_else(|| jiff::Timestamp::now().to_string());
        return DataLoadStatus { conditions: vec![condition("Failed", &reason, message, Some(at))], ..phase("Failed") };
    }
    if status.active.unwrap_or(0) > 0 || status.failed.unwrap_or(0) > 0 {
        return phase("Executing");
    }
    phase("Pending")
}

pub async fn reconcile_dataload(dl: Arc<DataLoad>, ctx: Arc<Context>) -> Result<Action, Error> {
    if dl.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = dl.namespace().unwrap_or_else(|| "default".into());
    let api: Api<DataLoad> = Api::namespaced(ctx.client.clone(), &ns);
    let name = dl.name_any();
    let set_status = |status: DataLoadStatus| {
        let api = api.clone();
        let name = name.clone();
        async move { patch_status(&api, &name, &status).await }
    };
    let waiting = |reason: &str, why: String| DataLoadStatus { conditions: vec![condition("Waiting", reason, why, None)], ..phase("Pending") };
    let policy = match policy::policy(&dl) {
        Ok(p) => p,
        Err(why) => {
            if dl.status.as_ref().map(|s| s.phase.as_str()) != Some("Failed") {
                set_status(DataLoadStatus { conditions: vec![condition("Failed", "InvalidPolicy", why.clone(), None)], ..phase("Failed") }).await?;
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
    let template = &mut job.spec.get_or_insert_with(Default::default).template;
    policy::place(template, &dl);
    if let Some(after) = &dl.spec.run_after {
        if let Some(affinity) = policy::follow(&ctx.client, &ns, after).await? {
            let pod = template.spec.get_or_insert_with(Default::default);
            pod.affinity.get_or_insert_with(Default::default).node_affinity = Some(affinity);
        }
    }
    if ds_ns == ns {
        // Owned, so deleting the DataLoad deletes its Job (owners cannot cross namespaces).
        let owner = dl.controller_owner_ref(&()).ok_or_else(|| Error::Invalid(format!("DataLoad {ns}/{name} has no uid yet")))?;
        job.metadata.owner_references = Some(vec![owner]);
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ds_ns);
    let status = match policy {
        Policy::OnEvent => {
            let content = policy::content_of(&dataset);
            let job_name = format!("{name}-loader");
            let last = jobs.get_opt(&job_name).await?;
            let last_phase = phase_of(last.as_ref());
            let running = last.is_some() && !(last_phase.phase == "Complete" || last_phase.phase == "Failed");
            if last.is_some() && !running && policy::content_changed(&dl, &content) {
                // The event: the Dataset changed since the last run started. Replace the Job.
                jobs.delete(&job_name, &kube::api::DeleteParams::background()).await?;
                ctx.event(dl.as_ref(), false, "DatasetChanged", format!("Dataset {ds_ns}/{ds_name} changed (UFS total {}, {} files): loading again", content.0, content.1)).await;
                return Ok(Action::requeue(Duration::from_secs(2)));
            }
            if last.is_none() {
                Object::from(job).apply(&ctx.client, &PatchParams::apply(MANAGER).force()).await?;
            }
            let mut status = phase_of(jobs.get_opt(&job_name).await?.as_ref());
            if last.is_none() {
                // The figures this run starts from, for the next comparison.
                status.infos = [("ufsTotal".to_string(), content.0), ("fileNum".to_string(), content.1)].into();
            }
            status
        }
        Policy::Once => {
            Object::from(job).apply(&ctx.client, &PatchParams::apply(MANAGER).force()).await?;
            phase_of(jobs.get_opt(&format!("{name}-loader")).await?.as_ref())
        }
        Policy::Cron => {
            Object::from(policy::cron_job(job, &dl.spec.schedule)).apply(&ctx.client, &PatchParams::apply(MANAGER).force()).await?;
            // The DataLoad mirrors the CronJob's latest run.
            let selector = format!("fluid.io/dataload={}", cistern_api::names::label_value(&name));
            let latest = jobs.list(&ListParams::default().labels(&selector)).await?.items.into_iter().max_by_key(|j| j.metadata.creation_timestamp.as_ref().map(|t| t.0));
            let mut status = phase_of(latest.as_ref());
            let cron = Api::<CronJob>::namespaced(ctx.client.clone(), &ds_ns).get_opt(&format!("{name}-loader")).await?.and_then(|c| c.status);
            if let Some(c) = cron {
                status.last_schedule_time = c.last_schedule_time.map(|t| t.0.to_string());
                status.last_successful_time = c.last_successful_time.map(|t| t.0.to_string());
            }
            status
        }
    };
    let finished = policy == Policy::Once && (status.phase == "Complete" || status.phase == "Failed");
    let was = dl.status.as_ref().map(|s| s.phase.clone()).unwrap_or_default();
    set_status(status.clone()).await?;
    if was.is_empty() || was == "Pending" && status.phase != "Pending" {
        let ignored = policy::unapplied(&dl, &runtime);
        if !ignored.is_empty() {
            ctx.event(dl.as_ref(), true, "FieldsNotApplied", ignored.join("; ")).await;
        }
    }
    if status.phase != was {
        let phase = status.phase.as_str();
        let note = match phase {
            "Failed" => format!("loading {ds_ns}/{ds_name} failed: {}", status.conditions.first().map_or("see the loader Job", |c| c.message.as_str())),
            _ => format!("loading {ds_ns}/{ds_name} with Job {ds_ns}/{name}-loader: {phase}"),
        };
        ctx.event(dl.as_ref(), phase == "Failed", &format!("Load{phase}"), note).await;
    }
    if finished && dl.spec.ttl_seconds_after_finished.is_some() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    Ok(if finished { Action::await_change() } else { Action::requeue(POLL) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loader_asks_for_listings_and_copies_as_the_dataload_does() {
        let dl: DataLoad = serde_saphyr::from_str(
            "apiVersion: data.fluid.io/v1alpha1\nkind: DataLoad\nmetadata: {name: l, namespace: ns}\nspec:\n  dataset: {name: d}\n  loadMetadata: true\n  target: [{path: /a, replicas: 3}, {path: /b}]\n",
        )
        .unwrap();
        let rt = Runtime::Jindo(serde_saphyr::from_str("apiVersion: data.fluid.io/v1alpha1\nkind: JindoRuntime\nmetadata: {name: d, namespace: ns}\nspec: {}\n").unwrap());
        let job = loader_job(&dl, &rt, &RenderOptions::default());
        let args = job.spec.unwrap().template.spec.unwrap().containers[0].args.clone().unwrap();
        let tail: Vec<&str> = args.iter().map(String::as_str).skip_while(|a| *a != "--load-metadata").collect();
        assert_eq!(tail, ["--load-metadata", "--replicated", "/a=3", "/b"], "{args:?}");
        assert!(policy::unapplied(&dl, &rt).is_empty(), "applied, so not warned");
    }
}
