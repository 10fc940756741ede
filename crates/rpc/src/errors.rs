//! Errors across the wire. A component's own failure (no such file, a UFS error) travels as a
//! status carrying the errno to answer; any other status (connection refused or reset, the
//! peer restarting) is a transport failure and worth retrying.

use crate::Errno;
use tonic::{Code, Status};

const ERRNO_KEY: &str = "cistern-errno";

/// A status for a failure the caller should see as `errno`.
pub fn status_with_errno(errno: Errno, message: impl Into<String>) -> Status {
    let code = match errno {
        Errno::NotFound => Code::NotFound,
        Errno::PermissionDenied => Code::PermissionDenied,
        Errno::InvalidArgument | Errno::NotADirectory | Errno::IsADirectory => Code::InvalidArgument,
        Errno::NoSpace => Code::ResourceExhausted,
        Errno::Stale => Code::FailedPrecondition,
        Errno::Io => Code::Internal,
    };
    let mut status = Status::new(code, message);
    if let Ok(v) = errno.raw().to_string().parse() {
        status.metadata_mut().insert(ERRNO_KEY, v);
    }
    status
}

/// The errno a component attached to `status`; `None` for a transport failure.
pub fn errno_of(status: &Status) -> Option<Errno> {
    status.metadata().get(ERRNO_KEY)?.to_str().ok()?.parse().ok().map(Errno::from_raw)
}

/// What a remote call ends with once retries are over.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RpcError {
    pub errno: Errno,
    pub message: String,
}

impl From<Status> for RpcError {
    fn from(s: Status) -> Self {
        match errno_of(&s) {
            Some(errno) => RpcError { errno, message: s.message().to_string() },
            // The peer stayed unreachable for the whole retry budget.
            None => RpcError { errno: Errno::Io, message: format!("unreachable: {} ({:?})", s.message(), s.code()) },
        }
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_survives_the_status_and_transport_failures_have_none() {
        let s = status_with_errno(Errno::NotFound, "a.txt: no such file");
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(errno_of(&s), Some(Errno::NotFound));
        assert_eq!(RpcError::from(s).errno, Errno::NotFound);
        let t = Status::unavailable("connection refused");
        assert_eq!(errno_of(&t), None);
        assert_eq!(RpcError::from(t).errno, Errno::Io);
    }
}
