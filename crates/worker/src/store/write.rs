//! Writing a body where it goes as the pieces it arrived in: one `pwritev` per up to
//! [`IOV_MAX`] pieces, so fetched data is never joined into one buffer just to be written.

use std::fs::File;
use std::io::{self, IoSlice};

/// Pieces per `pwritev` (Linux's `UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

/// Writes `parts`, one after another, at `offset` of `file`; all of them or an error.
pub fn write_parts_at(file: &File, parts: &[&[u8]], offset: u64) -> io::Result<()> {
    let mut at = offset;
    // Where the next write starts: a part, and how much of it is written already.
    let (mut part, mut done) = (0usize, 0usize);
    while part < parts.len() {
        let first = &parts[part][done..];
        let slices: Vec<IoSlice<'_>> =
            std::iter::once(first).chain(parts[part + 1..].iter().copied()).filter(|p| !p.is_empty()).take(IOV_MAX).map(IoSlice::new).collect();
        if slices.is_empty() {
            break;
        }
        let off = libc::off_t::try_from(at).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset past off_t"))?;
        let mut n = match nix::sys::uio::pwritev(file, &slices, off) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "pwritev wrote nothing")),
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        at += n as u64;
        // Step over what was written: whole parts, then into the next one.
        while n > 0 && part < parts.len() {
            let left = parts[part].len() - done;
            if n >= left {
                n -= left;
                part += 1;
                done = 0;
            } else {
                done += n;
                n = 0;
            }
        }
        while part < parts.len() && parts[part].len() == done {
            part += 1;
            done = 0;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn many_parts_of_any_size_land_in_order() {
        let f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        // More parts than one pwritev takes, some empty, of uneven sizes.
        let mut parts = Vec::new();
        let mut at = 0;
        let mut size = 1;
        while at < data.len() {
            let end = (at + size).min(data.len());
            parts.push(&data[at..end]);
            parts.push(&data[end..end]);
            at = end;
            size = size * 3 % 4099 + 1;
        }
        assert!(parts.len() > 2 * IOV_MAX);
        write_parts_at(&f, &parts, 4096).unwrap();
        let mut back = vec![0u8; data.len()];
        f.read_exact_at(&mut back, 4096).unwrap();
        assert!(back == data);
    }
}
