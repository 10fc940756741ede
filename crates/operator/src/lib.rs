//! Cistern on Kubernetes: the objects that run a Dataset's runtime ([`render`], which
//! `cistern render` prints) and the controllers that apply them ([`controller`], `cistern
//! operator`), and the DataLoad controller ([`dataload`]).

pub mod controller;
pub mod credentials;
pub mod dataload;
pub mod locality;
pub mod render;
pub mod render_juicefs;

pub use render::{render, RenderOptions};

use cistern_api::{AlluxioRuntime, DataLoad, Dataset, JindoRuntime, JuiceFSRuntime};
use controller::{error_policy, reconcile_dataset, reconcile_runtime, Context, RuntimeKind};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use kube::runtime::{watcher, Controller};
use kube::{Api, Client};
use std::sync::Arc;

/// Objects as one multi-document YAML stream, as `kubectl apply -f` reads it.
pub fn to_yaml(objects: &[serde_json::Value]) -> Result<String, String> {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(o).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// Runs the Dataset controller and one runtime controller per kind until the process stops.
pub async fn run(client: Client, opts: RenderOptions) {
    let ctx = Arc::new(Context::new(client.clone(), opts));
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
        runtime_controller::<JindoRuntime>(&client, ctx.clone()),
        runtime_controller::<AlluxioRuntime>(&client, ctx.clone()),
        runtime_controller::<JuiceFSRuntime>(&client, ctx.clone()),
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
