//! The CSI Identity service: who the plugin is and whether it is ready.

use crate::pb;
use crate::pb::identity_server::Identity;
use tonic::{Request, Response, Status};

/// The driver name Fluid's PVs name (`spec.csi.driver`).
pub const DRIVER_NAME: &str = "fuse.csi.fluid.io";

pub struct IdentityService;

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(&self, _r: Request<pb::GetPluginInfoRequest>) -> Result<Response<pb::GetPluginInfoResponse>, Status> {
        Ok(Response::new(pb::GetPluginInfoResponse {
            name: DRIVER_NAME.into(),
            vendor_version: env!("CARGO_PKG_VERSION").into(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _r: Request<pb::GetPluginCapabilitiesRequest>,
    ) -> Result<Response<pb::GetPluginCapabilitiesResponse>, Status> {
        // A node-only plugin: no controller service, no topology constraints.
        Ok(Response::new(pb::GetPluginCapabilitiesResponse { capabilities: Vec::new() }))
    }

    async fn probe(&self, _r: Request<pb::ProbeRequest>) -> Result<Response<pb::ProbeResponse>, Status> {
        Ok(Response::new(pb::ProbeResponse { ready: Some(true) }))
    }
}
