//! Leader election: with several operator replicas, only the holder of a Lease reconciles.
//! Built on kube-lease-manager (server-side applied Leases). A replica that loses the Lease
//! stops (the process exits and its pod restarts as a follower), as controller-runtime does:
//! two reconcilers must never apply the same objects at once.

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

/// The Lease's name, in the operator's namespace.
pub const LEASE: &str = "cistern-operator";
/// Seconds a Lease stays held after its last renewal; a dead leader is replaced this fast.
pub const LEASE_SECONDS: u64 = 15;
/// Seconds before expiry the holder renews.
pub const GRACE_SECONDS: u64 = 5;

#[derive(Debug, Clone)]
pub struct LeaderElection {
    pub namespace: String,
    /// Unique per replica: the pod's name, or host and pid.
    pub identity: String,
}

/// Starts contending for the Lease; the receiver says whether this replica holds it.
pub async fn contend(client: Client, election: &LeaderElection) -> Result<watch::Receiver<bool>, kube_lease_manager::LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client, LEASE)
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(LEASE_SECONDS)
        .with_grace(GRACE_SECONDS)
        .with_field_manager(format!("cistern-operator-{}", election.identity))
        .build()
        .await?;
    let (rx, _task) = manager.watch().await;
    Ok(rx)
}
