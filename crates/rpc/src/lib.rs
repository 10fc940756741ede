//! The RPCs between Cistern's components (`proto/cistern.proto`), and how they are carried:
//! gRPC (tonic) over a Unix socket on one node or TCP across nodes, with errors that keep the
//! errno the file system answers, and retries that ride out a restarting peer.

pub mod address;
pub mod descriptors;
pub mod errno;
pub mod errors;
pub mod fileref;
pub mod latency;
pub mod masters;
pub mod placement;
pub mod retry;
pub mod tls;

pub use address::Address;
pub use masters::MasterSet;
pub use errno::Errno;
pub use errors::{errno_of, status_with_errno, RpcError};
pub use fileref::{CacheKey, RefKey, VerifiedRef, MAX_CACHED_FILES, MAX_READ_LEN};
pub use retry::{with_retry, Backoff};

/// The name of the node this process runs on: `NODE_NAME` (set from the pod's
/// `spec.nodeName` on Kubernetes), else the host name. Paths a worker hands out mean
/// something only on its own node.
pub fn node_name() -> String {
    std::env::var("NODE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()))
        .unwrap_or_default()
}

/// How a component changes and reads its own log filter (the `cistern` binary's logging),
/// handed to the crates that act on requests to change it.
#[derive(Clone, Copy)]
pub struct LogControl {
    /// Replaces the filter; an error (naming the fix) when it does not parse.
    pub set: fn(&str) -> Result<(), String>,
    /// The filter now.
    pub current: fn() -> String,
    /// Whether a filter parses, without applying it.
    pub validate: fn(&str) -> Result<(), String>,
}

/// The generated messages, clients and servers.
pub mod pb {
    tonic::include_proto!("cistern.v1");
}

/// Largest message either side accepts: a read reply carries up to a few MiB.
pub const MAX_MESSAGE: usize = 64 << 20;
