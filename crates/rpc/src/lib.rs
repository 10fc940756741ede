//! The RPCs between Cistern's components (`proto/cistern.proto`), and how they are carried:
//! gRPC (tonic) over a Unix socket on one node or TCP across nodes, with errors that keep the
//! errno the file system answers, and retries that ride out a restarting peer.

pub mod address;
pub mod errors;
pub mod retry;

pub use address::Address;
pub use errors::{errno_of, status_with_errno, RpcError};
pub use retry::{with_retry, Backoff};

/// The generated messages, clients and servers.
pub mod pb {
    tonic::include_proto!("cistern.v1");
}

/// Largest message either side accepts: a read reply carries up to a few MiB.
pub const MAX_MESSAGE: usize = 64 << 20;
