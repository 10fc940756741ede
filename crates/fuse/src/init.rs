//! The mount's INIT, answered by the supervisor itself rather than by fuse-backend-rs.
//!
//! fuse-backend-rs 0.14 never negotiates the kernel's FUSE passthrough (its reply leaves
//! `max_stack_depth` at 0 and cannot carry the PASSTHROUGH flag), and a connection whose INIT
//! did not enable it refuses backing files (EPERM). The supervisor reads the one INIT request
//! the kernel sends after mounting and answers it with the same options the file system asks
//! for, plus passthrough when the kernel offers it. Daemons adopt an initialized connection
//! and never see an INIT, so this is the only place it is answered.
//!
//! The layouts are the kernel's (`include/uapi/linux/fuse.h`); writing them here keeps the
//! reply independent of the library's structs, which predate these fields.

use fuse_backend_rs::api::filesystem::FsOptions;
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

const FUSE_INIT: u32 = 26;
/// Protocol version we speak: the one fuse-backend-rs 0.14 parses requests for.
const MAJOR: u32 = 7;
const MINOR: u32 = 33;
const INIT_EXT: u64 = 1 << 30;
const FUSE_PASSTHROUGH: u64 = 1 << 37;
const HAS_RESEND: u64 = 1 << 39;
const WRITEBACK_CACHE: u64 = 1 << 16;
const MAX_PAGES_FLAG: u64 = 1 << 22;
/// 256 pages of 4 KiB: 1 MiB requests, what the library's channel buffers are sized for.
const MAX_PAGES: u16 = 256;
const MAX_WRITE: u32 = 1 << 20;
/// Passthrough stacks the mount on the cache file's file system: one level.
const MAX_STACK_DEPTH: u32 = 1;

const IN_HEADER: usize = 40;
const INIT_IN: usize = 16;

/// What the kernel and we agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Files may be opened with FOPEN_PASSTHROUGH and a backing file.
    pub passthrough: bool,
}

/// Reads the INIT request from a freshly mounted connection (`fd`, non-blocking) and answers
/// it, enabling `want` ∩ what the kernel offers, and passthrough when offered.
pub fn answer_init(fd: RawFd, want: FsOptions, timeout: Duration) -> io::Result<Negotiated> {
    let request = read_request(fd, timeout)?;
    let (unique, opcode) = (u64_at(&request, 8), u32_at(&request, 4));
    if opcode != FUSE_INIT || request.len() < IN_HEADER + INIT_IN {
        return Err(io::Error::other(format!("expected the kernel's FUSE INIT first, got opcode {opcode}")));
    }
    let (major, max_readahead, flags) = (u32_at(&request, IN_HEADER), u32_at(&request, IN_HEADER + 8), u32_at(&request, IN_HEADER + 12));
    if major != MAJOR {
        return Err(io::Error::other(format!("the kernel speaks FUSE {major}.x; Cistern speaks {MAJOR}.x")));
    }
    let mut offered = flags as u64;
    if offered & INIT_EXT != 0 && request.len() >= IN_HEADER + INIT_IN + 4 {
        offered |= (u32_at(&request, IN_HEADER + INIT_IN) as u64) << 32;
    }
    let asked = want.bits() & !WRITEBACK_CACHE | INIT_EXT | FUSE_PASSTHROUGH | HAS_RESEND;
    let enabled = offered & asked;
    let passthrough = enabled & FUSE_PASSTHROUGH != 0;
    let reply = init_reply(unique, max_readahead, enabled, passthrough);
    // SAFETY: writes our own buffer to a descriptor we own.
    let n = unsafe { libc::write(fd, reply.as_ptr().cast(), reply.len()) };
    if n != reply.len() as isize {
        return Err(io::Error::last_os_error());
    }
    tracing::info!(passthrough, flags = format_args!("{enabled:#x}"), "FUSE INIT answered by the supervisor");
    Ok(Negotiated { passthrough })
}

/// `fuse_out_header` + `fuse_init_out` (64 bytes, as of protocol 7.40).
fn init_reply(unique: u64, max_readahead: u32, enabled: u64, passthrough: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 64);
    out.extend((16u32 + 64).to_ne_bytes());
    out.extend(0i32.to_ne_bytes());
    out.extend(unique.to_ne_bytes());
    out.extend(MAJOR.to_ne_bytes());
    out.extend(MINOR.to_ne_bytes());
    out.extend(max_readahead.to_ne_bytes());
    out.extend((enabled as u32).to_ne_bytes());
    out.extend(u16::MAX.to_ne_bytes()); // max_background
    out.extend((u16::MAX / 4 * 3).to_ne_bytes()); // congestion_threshold
    out.extend(MAX_WRITE.to_ne_bytes());
    out.extend(1u32.to_ne_bytes()); // time_gran: nanoseconds
    let pages = if enabled & MAX_PAGES_FLAG != 0 { MAX_PAGES } else { 0 };
    out.extend(pages.to_ne_bytes());
    out.extend(0u16.to_ne_bytes()); // map_alignment
    out.extend(((enabled >> 32) as u32).to_ne_bytes());
    out.extend((if passthrough { MAX_STACK_DEPTH } else { 0 }).to_ne_bytes());
    out.resize(16 + 64, 0); // request_timeout and unused
    out
}

fn read_request(fd: RawFd, timeout: Duration) -> io::Result<Vec<u8>> {
    // The kernel refuses reads into buffers smaller than a whole request could be.
    let mut buf = vec![0u8; MAX_WRITE as usize + 64 * 1024];
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, format!("no FUSE INIT from the kernel within {timeout:?}")));
        }
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return Err(io::Error::last_os_error());
        }
        if r <= 0 {
            continue;
        }
        // SAFETY: reads into our own buffer of the given length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) {
            return Err(e);
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(0, |s| u32::from_ne_bytes(s.try_into().expect("4 bytes")))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |s| u64::from_ne_bytes(s.try_into().expect("8 bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_has_the_kernels_layout() {
        let r = init_reply(42, 131072, INIT_EXT | FUSE_PASSTHROUGH | MAX_PAGES_FLAG | 1, true);
        assert_eq!(r.len(), 80);
        assert_eq!(u32_at(&r, 0), 80);
        assert_eq!(u64_at(&r, 8), 42);
        assert_eq!(u32_at(&r, 16 + 12), (INIT_EXT | MAX_PAGES_FLAG | 1) as u32, "flags");
        assert_eq!(u16::from_ne_bytes([r[16 + 28], r[16 + 29]]), MAX_PAGES);
        assert_eq!(u32_at(&r, 16 + 32), ((INIT_EXT | FUSE_PASSTHROUGH) >> 32) as u32, "flags2");
        assert_eq!(u32_at(&r, 16 + 36), 1, "max_stack_depth");
    }
}
