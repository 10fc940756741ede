//! `cistern csi`: the CSI node plugin (`fuse.csi.fluid.io`) that the kubelet calls to stage a
//! Dataset's PVC on a node and bind it into pods; see the `cistern-csi` crate.

use anyhow::{anyhow, Context, Result};
use cistern_csi::state::StateDir;
use cistern_csi::{NodeLabels, NodeService, RecordedLabels};
use cistern_rpc::Address;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct CsiArgs {
    /// Where the kubelet reaches the plugin.
    #[arg(long, env = "CSI_ENDPOINT", default_value = "unix:///var/lib/kubelet/plugins/fuse.csi.fluid.io/csi.sock")]
    pub endpoint: String,
    /// This node's name, as the kubelet and the Node object know it [default: NODE_NAME, else the host name].
    #[arg(long)]
    pub node_id: Option<String>,
    /// Where staged and published volumes are recorded (survives plugin restarts).
    #[arg(long, default_value = "/var/lib/cistern/csi")]
    pub state_dir: PathBuf,
    /// How long NodeStageVolume waits for the FUSE mount before failing (the kubelet retries).
    #[arg(long, default_value_t = 60)]
    pub stage_timeout_secs: u64,
    /// How often publish targets are checked and re-bound to a replaced FUSE mount.
    #[arg(long, default_value_t = 5)]
    pub recover_period_secs: u64,
}

pub fn run(args: CsiArgs) -> Result<()> {
    let address = Address::parse(&args.endpoint).map_err(|e| anyhow!("--endpoint {e}"))?;
    let node_id = args.node_id.unwrap_or_else(cistern_rpc::node_name);
    let state = StateDir::open(&args.state_dir).with_context(|| format!("cannot use --state-dir {}", args.state_dir.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(2).build()?;
    rt.block_on(async {
        // The FUSE DaemonSet selects nodes by the labels NodeStageVolume sets on the Node.
        let labels: Arc<dyn NodeLabels> = match kube::Client::try_default().await {
            Ok(client) => Arc::new(KubeNodeLabels(client)),
            Err(e) => {
                tracing::warn!("no Kubernetes API ({e}); node labels are kept in this process only");
                Arc::new(RecordedLabels::default())
            }
        };
        let node = Arc::new(NodeService::new(node_id, state, labels, Duration::from_secs(args.stage_timeout_secs)));
        cistern_csi::serve(&address, node, Duration::from_secs(args.recover_period_secs.max(1)), super::stop_requested()).await
    })
    .with_context(|| format!("cannot serve on {address}"))
}

/// Labels on the Node object, by a merge patch (a `null` value removes the label).
struct KubeNodeLabels(kube::Client);

#[async_trait::async_trait]
impl NodeLabels for KubeNodeLabels {
    async fn set(&self, node: &str, key: &str, value: Option<&str>) -> Result<(), String> {
        use kube::api::{Api, Patch, PatchParams};
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.0.clone());
        let patch = cistern_operator::objects::MetadataPatch::label(key, value);
        nodes.patch(node, &PatchParams::default(), &Patch::Merge(&patch)).await.map(drop).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;

    #[tokio::test]
    async fn node_labels_are_merge_patched_onto_the_node() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let labels = KubeNodeLabels(kube::Client::new(service, "default"));
        let server = tokio::spawn(async move {
            let mut bodies = Vec::new();
            for _ in 0..2 {
                let (request, reply) = handle.next_request().await.expect("a call");
                assert_eq!((request.method().as_str(), request.uri().path()), ("PATCH", "/api/v1/nodes/node-a"));
                let body: serde_json::Value = serde_json::from_slice(&request.into_body().collect_bytes().await.unwrap()).unwrap();
                bodies.push(body);
                let node = serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"}});
                reply.send_response(Response::builder().body(Body::from(serde_json::to_vec(&node).unwrap())).unwrap());
            }
            bodies
        });
        labels.set("node-a", "fluid.io/f-default-demo", Some("true")).await.unwrap();
        labels.set("node-a", "fluid.io/f-default-demo", None).await.unwrap();
        let bodies = server.await.unwrap();
        assert_eq!(bodies[0]["metadata"]["labels"]["fluid.io/f-default-demo"], "true");
        assert!(bodies[1]["metadata"]["labels"]["fluid.io/f-default-demo"].is_null(), "removal is a null in a merge patch");
        assert!(bodies[1]["metadata"]["labels"].as_object().unwrap().contains_key("fluid.io/f-default-demo"));
    }
}
