//! Which reads of a file come from a sequential reader: the streams of reads of each file,
//! each a chain of reads that start near where the one before ended.
//!
//! A reader counts as sequential once its chain has [`SEQUENTIAL_LINKS`] links (three reads,
//! each near the last): its misses then take whole blocks, and blocks ahead are read for it.
//! "Near" scales with the read: within 8 times its length (at least 256 KiB, at most
//! [`STREAM_WINDOW`]), since the kernel's requests for a sequential reader are large (128 KiB
//! to 1 MiB) and several are in flight at once, out of order.
//!
//! The old rule (one read within 4 MiB of the file's last one) took about one random read in
//! 130 of a 1 GiB file for a stream, and each such guess cost a whole block and the readahead
//! window (36 MiB for one 4 KiB read): the far bench measured 59 bytes fetched per byte read
//! at random. Now a 4 KiB read must land within 256 KiB of a stream, twice in a row.
//!
//! Several streams are kept per file (up to [`STREAMS_PER_FILE`]), so readers of different
//! parts of one file (4 streams over its quarters) do not break each other's chains.

use std::collections::HashMap;
use std::sync::Mutex;

/// The farthest from a stream's last read that a read still continues it: the kernel's
/// readahead window on our mounts (see the FUSE layer), whose requests arrive in any order.
pub const STREAM_WINDOW: u64 = 4 << 20;
/// The nearest window a read gets, however small.
const MIN_WINDOW: u64 = 256 << 10;
/// Links after which a stream is a sequential reader.
pub const SEQUENTIAL_LINKS: u32 = 2;
const STREAMS_PER_FILE: usize = 4;
/// Files tracked at once; past this many, all are forgotten (plenty of files open at once).
const FILES_MAX: usize = 4096;

#[derive(Default)]
pub struct Streams {
    files: Mutex<HashMap<String, Vec<Stream>>>,
}

struct Stream {
    /// Where its last read started and ended.
    start: u64,
    end: u64,
    /// Reads in its chain after the first.
    links: u32,
}

impl Streams {
    /// Notes a read of `[start, end)` of `key`; returns the links of the stream it belongs to.
    /// The same read again (concurrent readers of one range) is one read, not a link.
    pub fn note(&self, key: &str, start: u64, end: u64) -> u32 {
        let mut files = self.files.lock().expect("streams lock");
        if files.len() >= FILES_MAX && !files.contains_key(key) {
            files.clear();
        }
        let list = files.entry(key.to_string()).or_default();
        if let Some(s) = list.iter().find(|s| s.start == start) {
            return s.links;
        }
        let window = end.saturating_sub(start).saturating_mul(8).clamp(MIN_WINDOW, STREAM_WINDOW);
        let nearest = list
            .iter()
            .enumerate()
            .filter(|(_, s)| s.end.abs_diff(start) <= window)
            .min_by_key(|(_, s)| s.end.abs_diff(start))
            .map(|(i, _)| i);
        let mut stream = match nearest {
            Some(i) => {
                let s = list.remove(i);
                Stream { start, end, links: s.links.saturating_add(1) }
            }
            None => {
                if list.len() >= STREAMS_PER_FILE {
                    list.remove(0); // the least recently continued
                }
                Stream { start, end, links: 0 }
            }
        };
        stream.end = end;
        let links = stream.links;
        list.push(stream);
        links
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const MIB: u64 = 1 << 20;

    #[test]
    fn a_sequential_reader_is_found_by_its_third_read_even_out_of_order() {
        let s = Streams::default();
        assert_eq!(s.note("f", 100 * MIB, 101 * MIB), 0);
        assert_eq!(s.note("f", 102 * MIB, 103 * MIB), 1); // the kernel's requests, out of order
        assert!(s.note("f", 101 * MIB, 102 * MIB) >= SEQUENTIAL_LINKS);
        assert!(s.note("f", 101 * MIB, 102 * MIB) >= SEQUENTIAL_LINKS, "the same read again keeps its class");
    }

    #[test]
    fn four_readers_of_one_file_keep_their_own_chains() {
        let s = Streams::default();
        let mut links = vec![0; 4];
        for step in 0..5u64 {
            for (r, l) in links.iter_mut().enumerate() {
                let at = r as u64 * 256 * MIB + step * MIB;
                *l = s.note("f", at, at + MIB);
            }
        }
        assert!(links.iter().all(|l| *l >= SEQUENTIAL_LINKS), "{links:?}");
    }

    #[test]
    fn random_reads_of_a_large_file_are_almost_never_sequential() {
        let s = Streams::default();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut sequential = 0;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = x % (1 << 30) / 4096 * 4096;
            if s.note("f", at, at + 4096) >= SEQUENTIAL_LINKS {
                sequential += 1;
            }
        }
        // Hardly ever by chance; the old rule (one link within 4 MiB) took about 150.
        assert!(sequential <= 2, "{sequential} of 20 000 random reads taken for a stream");
    }
}
