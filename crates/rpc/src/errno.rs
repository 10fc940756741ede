//! What a failure means to an application: the one table from Cistern's failures to the errno
//! values the file system answers. Every error type names an [`Errno`]; only [`Errno::raw`]
//! and [`Errno::from_raw`] know the numbers.

/// The errno of a failure, as a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Errno {
    /// ENOENT: no such file (also: not cached here, for a descriptor request).
    NotFound,
    /// EACCES: refused (a forged reference, a certificate without the role).
    PermissionDenied,
    /// ENOTDIR.
    NotADirectory,
    /// EISDIR.
    IsADirectory,
    /// EINVAL: a malformed request or a read too large.
    InvalidArgument,
    /// ENOSPC: a table is full (e.g. too many workers registered).
    NoSpace,
    /// ESTALE: the object changed on the UFS since it was opened; look the name up again.
    Stale,
    /// EIO: everything else (a UFS or cache failure, a peer unreachable past its retries).
    Io,
}

impl Errno {
    /// The number the kernel is answered with.
    pub fn raw(self) -> i32 {
        match self {
            Errno::NotFound => libc::ENOENT,
            Errno::PermissionDenied => libc::EACCES,
            Errno::NotADirectory => libc::ENOTDIR,
            Errno::IsADirectory => libc::EISDIR,
            Errno::InvalidArgument => libc::EINVAL,
            Errno::NoSpace => libc::ENOSPC,
            Errno::Stale => libc::ESTALE,
            Errno::Io => libc::EIO,
        }
    }

    /// The kind of a number from the wire or the OS; one not in the table is [`Errno::Io`].
    pub fn from_raw(raw: i32) -> Errno {
        match raw {
            libc::ENOENT => Errno::NotFound,
            libc::EACCES | libc::EPERM => Errno::PermissionDenied,
            libc::ENOTDIR => Errno::NotADirectory,
            libc::EISDIR => Errno::IsADirectory,
            libc::EINVAL => Errno::InvalidArgument,
            libc::ENOSPC => Errno::NoSpace,
            libc::ESTALE => Errno::Stale,
            _ => Errno::Io,
        }
    }

    /// The kind of an I/O error of this process.
    pub fn of_io(e: &std::io::Error) -> Errno {
        e.raw_os_error().map_or(Errno::Io, Errno::from_raw)
    }
}

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> Self {
        std::io::Error::from_raw_os_error(e.raw())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_number() {
        use Errno::*;
        for e in [NotFound, PermissionDenied, NotADirectory, IsADirectory, InvalidArgument, NoSpace, Stale, Io] {
            assert_eq!(Errno::from_raw(e.raw()), e);
        }
        assert_eq!(Errno::from_raw(libc::EXDEV), Io, "an unknown number is an I/O error");
    }
}
