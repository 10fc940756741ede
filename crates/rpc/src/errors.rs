//! Errors across the wire. A component's own failure (no such file, a UFS error) travels as a
//! status carrying the errno to answer; any other status (connection refused or reset, the
//! peer restarting) is a transport failure and worth retrying.

use tonic::{Code, Status};

const ERRNO_KEY: &str = "cistern-errno";

/// A status for a failure the caller should see as `errno`.
pub fn status_with_errno(errno: i32, message: impl Into<String>) -> Status {
    let code = match errno {
        libc_errno::ENOENT => Code::NotFound,
        libc_errno::EACCES => Code::PermissionDenied,
        libc_errno::EINVAL | libc_errno::ENOTDIR | libc_errno::EISDIR => Code::InvalidArgument,
        _ => Code::Internal,
    };
    let mut status = Status::new(code, message);
    if let Ok(v) = errno.to_string().parse() {
        status.metadata_mut().insert(ERRNO_KEY, v);
    }
    status
}

/// The errno a component attached to `status`; `None` for a transport failure.
pub fn errno_of(status: &Status) -> Option<i32> {
    status.metadata().get(ERRNO_KEY)?.to_str().ok()?.parse().ok()
}

/// What a remote call ends with once retries are over.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RpcError {
    pub errno: i32,
    pub message: String,
}

impl From<Status> for RpcError {
    fn from(s: Status) -> Self {
        match errno_of(&s) {
            Some(errno) => RpcError { errno, message: s.message().to_string() },
            // EIO: the peer stayed unreachable for the whole retry budget.
            None => RpcError { errno: 5, message: format!("unreachable: {} ({:?})", s.message(), s.code()) },
        }
    }
}

mod libc_errno {
    pub const ENOENT: i32 = 2;
    pub const EACCES: i32 = 13;
    pub const ENOTDIR: i32 = 20;
    pub const EISDIR: i32 = 21;
    pub const EINVAL: i32 = 22;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_survives_the_status_and_transport_failures_have_none() {
        let s = status_with_errno(2, "a.txt: no such file");
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(errno_of(&s), Some(2));
        assert_eq!(RpcError::from(s).errno, 2);
        let t = Status::unavailable("connection refused");
        assert_eq!(errno_of(&t), None);
        assert_eq!(RpcError::from(t).errno, 5);
    }
}
