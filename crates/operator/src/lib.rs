//! Cistern on Kubernetes: the objects that run a Dataset's runtime ([`render`], which
//! `cistern render` prints) and the controllers that apply them ([`controller`], `cistern
//! operator`), and the DataLoad controller ([`dataload`]).

pub mod cache_cleanup;
pub mod controller;
pub mod credentials;
pub mod dataload;
pub mod dataload_policy;
pub mod host_ports;
pub mod leader;
pub mod locality;
pub mod masters;
pub mod network_policy;
pub mod objects;
pub mod pod_shape;
pub mod reference;
pub mod sidecar;
pub mod webhook;
pub mod render;
pub mod render_juicefs;
pub mod run_as;
pub mod volume;

pub use objects::Object;
pub use render::{render, RenderOptions};

use cistern_api::{AlluxioRuntime, DataLoad, Dataset, JindoRuntime, JuiceFSRuntime};
use controller::{error_policy, reconcile_dataset, reconcile_runtime, Context, RuntimeKind};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{watcher, Controller};
use kube::{Api, Client};
use std::sync::Arc;

/// Objects as one multi-document YAML stream, as `kubectl apply -f` reads it.
pub fn to_yaml(objects: &[Object]) -> Result<String, String> {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&o.to_value()).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// How `cistern operator` runs beyond what it renders.
#[derive(Debug, Clone, Default)]
pub struct RunSettings {
    /// Contend for a Lease and reconcile only while holding it (several replicas).
    pub leader_election: Option<leader::LeaderElection>,
    /// See [`Context::master_web_map`].
    pub master_web_map: Option<std::path::PathBuf>,
    /// The reporting instance in Events (the pod's name).
    pub instance: Option<String>,
}

/// Runs the Dataset controller, one runtime controller per kind and the DataLoad controller
/// until the process stops; with leader election, only once this replica holds the Lease, and
/// returns an error when it loses it.
pub async fn run(client: Client, opts: RenderOptions, settings: RunSettings) -> Result<(), String> {
    let mut ctx = Context::new(client.clone(), opts);
    ctx.master_web_map = settings.master_web_map.clone();
    let reporter = Reporter { controller: controller::MANAGER.into(), instance: settings.instance.clone() };
    ctx.recorder = Some(Recorder::new(client.clone(), reporter));
    let ctx = Arc::new(ctx);
    let Some(election) = &settings.leader_election else {
        controllers(&client, ctx).await;
        return Ok(());
    };
    let mut leading = leader::contend(client.clone(), election).await.map_err(|e| format!("leader election: {e}"))?;
    tracing::info!(identity = election.identity, "waiting for the Lease {}/{}", election.namespace, leader::LEASE);
    leading.wait_for(|held| *held).await.map_err(|_| "leader election stopped".to_string())?;
    tracing::info!(identity = election.identity, "holding the Lease: reconciling");
    tokio::select! {
        _ = controllers(&client, ctx) => Ok(()),
        _ = leading.wait_for(|held| !*held) => Err(format!("lost the Lease {}/{}: stopping so that one replica reconciles", election.namespace, leader::LEASE)),
    }
}

async fn controllers(client: &Client, ctx: Arc<Context>) {
    let datasets = Controller::new(Api::<Dataset>::all(client.clone()), watcher::Config::default())
        .run(reconcile_dataset, error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!("dataset: {e}");
            }
        });
    let loads = Controller::new(Api::<DataLoad>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Job>::all(client.clone()), watcher::Config::default())
        .run(dataload::reconcile_dataload, error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!("dataload: {e}");
            }
        });
    tokio::join!(
        datasets,
        loads,
        runtime_controller::<JindoRuntime>(client, ctx.clone()),
        runtime_controller::<AlluxioRuntime>(client, ctx.clone()),
        runtime_controller::<JuiceFSRuntime>(client, ctx.clone()),
    );
}

async fn runtime_controller<K: RuntimeKind>(client: &Client, ctx: Arc<Context>) {
    Controller::new(Api::<K>::all(client.clone()), watcher::Config::default())
        .owns(Api::<StatefulSet>::all(client.clone()), watcher::Config::default())
        .owns(Api::<DaemonSet>::all(client.clone()), watcher::Config::default())
        .run(reconcile_runtime::<K>, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!("runtime: {e}");
            }
        })
        .await
}
