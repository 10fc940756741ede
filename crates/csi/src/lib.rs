//! Cistern's CSI node plugin (`cistern csi`): the Identity and Node services of the Container
//! Storage Interface on a Unix socket, which the kubelet calls to stage and publish a
//! Dataset's PVC into pods, as Fluid's `fuse.csi.fluid.io` plugin does. The bindings are
//! generated at build time from `proto/csi.proto`, written here from the CSI spec.

pub mod identity;
pub mod labels;
pub mod mountinfo;
pub mod node;
pub mod state;

pub use identity::DRIVER_NAME;
pub use labels::{fuse_label, NodeLabels, RecordedLabels};
pub use node::NodeService;

use cistern_rpc::Address;
use std::sync::Arc;
use std::time::Duration;

/// The generated CSI messages, clients and servers (package `csi.v1`).
pub mod pb {
    tonic::include_proto!("csi.v1");
}

/// Serves Identity and Node at `address` until `shutdown`, running the recovery loop (see
/// [`NodeService::recover_once`]) every `recover_every`.
pub async fn serve(
    address: &Address,
    node: Arc<NodeService>,
    recover_every: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let (incoming, bound) = address.bind().await?;
    tracing::info!(driver = DRIVER_NAME, node = node.node_id, "CSI node plugin serving on {bound}");
    let recovering = node.clone();
    let recovery = tokio::spawn(async move {
        let mut tick = tokio::time::interval(recover_every);
        loop {
            tick.tick().await;
            recovering.recover_once().await;
        }
    });
    let router = tonic::transport::Server::builder()
        .add_service(pb::identity_server::IdentityServer::new(identity::IdentityService))
        .add_service(pb::node_server::NodeServer::from_arc(node));
    let result = incoming.serve(router, shutdown).await.map_err(std::io::Error::other);
    recovery.abort();
    result
}
