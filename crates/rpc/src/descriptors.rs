//! The descriptor socket's transport: a Unix `SOCK_SEQPACKET` socket (one message per
//! datagram, so a message is never split or merged) that carries one protobuf message and at
//! most one file descriptor (`SCM_RIGHTS`) each way. Both ends check who the peer is
//! (`SO_PEERCRED`: root or our own user), and the socket file is 0600 in a 0700 directory.
//!
//! This is how a worker hands a reader on its node a read-only descriptor of a cache file
//! instead of a path (as HDFS short-circuit reads do): the reader never opens a path a peer
//! named, and on Kubernetes the FUSE pod needs only this socket's directory, not the tiers.

use nix::cmsg_space;
use nix::sys::socket::{
    self, AddressFamily, Backlog, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr,
};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

/// Largest message either side accepts (a request holds one file reference: a path of at
/// most 4096 bytes and a few fixed fields).
pub const MAX_DATAGRAM: usize = 16 << 10;

/// Worker `id`'s descriptor socket in `dir` (the run directory on the worker's node).
pub fn socket_path(dir: &Path, id: u32) -> std::path::PathBuf {
    dir.join(format!("worker-{id}.fd.sock"))
}

fn errno(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

fn new_socket() -> io::Result<OwnedFd> {
    socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).map_err(errno)
}

/// Listens at `path` (a stale socket file from a killed process is replaced), 0600.
pub fn listen(path: &Path) -> io::Result<OwnedFd> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let fd = new_socket()?;
    let addr = UnixAddr::new(path).map_err(errno)?;
    // The directory is 0700 (the run directory): nobody else can reach the socket in the
    // moment between bind and chmod. (A umask would be process-wide, racing other threads.)
    socket::bind(fd.as_raw_fd(), &addr).map_err(errno)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    socket::listen(&fd, Backlog::new(64).map_err(errno)?).map_err(errno)?;
    Ok(fd)
}

/// The next connection on `listener`.
pub fn accept(listener: &OwnedFd) -> io::Result<OwnedFd> {
    let raw = socket::accept4(listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC).map_err(errno)?;
    // SAFETY: accept4 returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Connects to the socket at `path`.
pub fn connect(path: &Path) -> io::Result<OwnedFd> {
    let fd = new_socket()?;
    socket::connect(fd.as_raw_fd(), &UnixAddr::new(path).map_err(errno)?).map_err(errno)?;
    Ok(fd)
}

/// True when the peer of `fd` runs as root, as this process's user, or as `also`: nobody else
/// may ask a worker for descriptors, or answer a client in a worker's place. A client passes
/// the owner of the run directory as `also`: a worker running as a runtime's `runAs` user owns
/// it (only root can have handed it over, and only its owner can make sockets in it).
pub fn peer_is_trusted(fd: &OwnedFd, also: Option<u32>) -> io::Result<bool> {
    let cred = socket::getsockopt(fd, socket::sockopt::PeerCredentials).map_err(errno)?;
    let me = nix::unistd::geteuid().as_raw();
    Ok(cred.uid() == 0 || cred.uid() == me || Some(cred.uid()) == also)
}

/// The owner of the directory `dir` (the run directory a client was given).
pub fn owner_of(dir: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().filter(|m| m.is_dir()).map(|m| m.uid())
}

/// The first byte of every message: the protocol's version (and never an empty datagram,
/// which is how a closed connection reads).
const VERSION: u8 = 1;

/// Sends `message`, with `fd` attached when given.
pub fn send(sock: &OwnedFd, message: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    if message.len() + 1 > MAX_DATAGRAM {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "descriptor socket message too large"));
    }
    let iov = [IoSlice::new(&[VERSION]), IoSlice::new(message)];
    let fds = fd.map(|f| [f.as_raw_fd()]);
    let cmsgs: Vec<ControlMessage<'_>> = fds.as_ref().map(|f| ControlMessage::ScmRights(f)).into_iter().collect();
    socket::sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None).map_err(errno)?;
    Ok(())
}

/// Receives one message and the descriptor attached to it, if any; `None` when the peer
/// closed the connection. A truncated message, one of another version, or more than one
/// descriptor is refused (every descriptor received is closed).
pub fn recv(sock: &OwnedFd) -> io::Result<Option<(Vec<u8>, Option<OwnedFd>)>> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut space = cmsg_space!([std::os::fd::RawFd; 4]);
    let (len, flags, mut fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = socket::recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC).map_err(errno)?;
        let mut fds = Vec::new();
        for c in msg.cmsgs().map_err(errno)? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: the kernel installed these descriptors in this process for us alone.
                fds.extend(raw.into_iter().map(|r| unsafe { OwnedFd::from_raw_fd(r) }));
            }
        }
        (msg.bytes, msg.flags, fds)
    };
    if flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "descriptor socket message truncated"));
    }
    if fds.len() > 1 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "more than one descriptor in a message"));
    }
    if len == 0 {
        return Ok(None);
    }
    if buf[0] != VERSION {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("descriptor socket protocol {} (this one speaks {VERSION})", buf[0])));
    }
    buf.truncate(len);
    buf.remove(0);
    Ok(Some((buf, fds.pop())))
}

/// Sets a receive timeout, so a peer that never answers cannot hang the caller.
pub fn set_timeout(sock: &OwnedFd, timeout: std::time::Duration) -> io::Result<()> {
    let tv = nix::sys::time::TimeVal::new(timeout.as_secs() as _, timeout.subsec_micros() as _);
    socket::setsockopt(&sock.as_fd(), socket::sockopt::ReceiveTimeout, &tv).map_err(errno)?;
    socket::setsockopt(&sock.as_fd(), socket::sockopt::SendTimeout, &tv).map_err(errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_and_a_descriptor_cross_and_the_socket_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.fd.sock");
        let listener = listen(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let client = connect(&path).unwrap();
        let server = accept(&listener).unwrap();
        assert!(peer_is_trusted(&server, None).unwrap() && peer_is_trusted(&client, None).unwrap());
        let file = tempfile::tempfile().unwrap();
        std::os::unix::fs::FileExt::write_at(&file, b"hello", 0).unwrap();
        send(&server, b"msg", Some(file.as_fd())).unwrap();
        let (m, fd) = recv(&client).unwrap().unwrap();
        assert_eq!(m, b"msg");
        let got = std::fs::File::from(fd.expect("a descriptor"));
        let mut buf = [0u8; 5];
        std::os::unix::fs::FileExt::read_exact_at(&got, &mut buf, 0).unwrap();
        assert_eq!(&buf, b"hello");
        send(&client, b"", None).unwrap();
        let (m, fd) = recv(&server).unwrap().unwrap();
        assert!(m.is_empty() && fd.is_none(), "an empty message is not a closed connection");
        drop(client);
        assert!(recv(&server).unwrap().is_none(), "the peer closed");
        assert!(send(&server, &vec![0u8; MAX_DATAGRAM], None).is_err());
    }
}
