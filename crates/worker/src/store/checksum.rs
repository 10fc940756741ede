//! Block checksums: one crc32c per [`CHUNK`] of a block, so a read verifies only the chunks it
//! touches (a 128 KiB read checks 128 KiB, not the whole 4 MiB block).
//!
//! A block may be cached in part: a random reader fetches only the chunks it needs, so each
//! block also carries a bitmap of the chunks present.
//!
//! Each block's checksums are also kept on disk in a sidecar file (`<key>.crc`), one
//! fixed-size record per block at `block × RECORD`, written after the block's data, so a crash
//! in between leaves chunks without a record, which count as absent. That is what lets a
//! persistent tier re-index itself after a restart without trusting unverified bytes.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Checksum granularity.
pub const CHUNK: u64 = 64 * 1024;
/// "CIS2": records carry a chunk bitmap (version 1, "CIST", had whole blocks only and is
/// ignored, so such a cache is simply refetched).
const MAGIC: u32 = 0x4349_5332;
pub const CHUNKS_PER_BLOCK: usize = (super::BLOCK_SIZE / CHUNK) as usize;
const _: () = assert!(CHUNKS_PER_BLOCK <= 64, "the chunk bitmap is one u64");
/// Bytes of one on-disk record: magic, block length, chunk bitmap, then the chunk checksums.
pub const RECORD: u64 = 16 + 4 * CHUNKS_PER_BLOCK as u64;

/// The checksums of one cached block and which of its chunks are present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSums {
    /// Length of the whole block (shorter than a full block only at the end of a file).
    pub len: u64,
    pub present: u64,
    pub crcs: Box<[u32]>,
}

impl BlockSums {
    /// An empty record for a block of `len` bytes.
    pub fn empty(len: u64) -> BlockSums {
        BlockSums { len, present: 0, crcs: vec![0; len.div_ceil(CHUNK) as usize].into() }
    }

    /// A record of a whole block.
    pub fn of(data: &[u8]) -> BlockSums {
        let mut s = BlockSums::empty(data.len() as u64);
        s.add(0, data);
        s
    }

    fn chunks(&self) -> usize {
        self.crcs.len()
    }

    /// Marks the chunks of `data` (which starts at `offset`, a multiple of [`CHUNK`], and
    /// holds whole chunks or ends at the block's end) present, with their checksums. Returns
    /// the bytes newly present.
    pub fn add(&mut self, offset: u64, data: &[u8]) -> u64 {
        self.add_parts(offset, &[data])
    }

    /// [`BlockSums::add`] of data given as consecutive parts (a body as it arrived), whose
    /// boundaries need not fall on chunk boundaries.
    pub fn add_parts(&mut self, offset: u64, parts: &[&[u8]]) -> u64 {
        let first = (offset / CHUNK) as usize;
        let mut added = 0;
        let (mut c, mut filled, mut crc) = (first, 0u64, 0u32);
        let mut finish = |sums: &mut BlockSums, c: usize, len: u64, crc: u32| {
            if sums.present & (1 << c) == 0 {
                sums.present |= 1 << c;
                added += len;
            }
            sums.crcs[c] = crc;
        };
        'parts: for part in parts {
            let mut rest = *part;
            while !rest.is_empty() {
                if c >= self.chunks() {
                    break 'parts;
                }
                let take = rest.len().min((CHUNK - filled) as usize);
                crc = crc32c::crc32c_append(crc, &rest[..take]);
                filled += take as u64;
                rest = &rest[take..];
                if filled == CHUNK {
                    finish(self, c, filled, crc);
                    (c, filled, crc) = (c + 1, 0, 0);
                }
            }
        }
        // A last, shorter chunk: the block's end.
        if filled > 0 && c < self.chunks() {
            finish(self, c, filled, crc);
        }
        added
    }

    /// Bytes of the chunks present.
    pub fn present_bytes(&self) -> u64 {
        (0..self.chunks()).filter(|c| self.has_chunk(*c)).map(|c| self.chunk_len(c)).sum()
    }

    pub fn is_complete(&self) -> bool {
        self.chunks() > 0 && (0..self.chunks()).all(|c| self.has_chunk(c))
    }

    fn has_chunk(&self, c: usize) -> bool {
        self.present & (1 << c) != 0
    }

    fn chunk_len(&self, c: usize) -> u64 {
        CHUNK.min(self.len - c as u64 * CHUNK)
    }

    /// True when every chunk touching `[start, end)` is present.
    pub fn covers(&self, start: u64, end: u64) -> bool {
        start < end
            && end <= self.len
            && ((start / CHUNK) as usize..end.div_ceil(CHUNK) as usize).all(|c| self.has_chunk(c))
    }

    /// The present chunks as runs of `(offset, length)`.
    pub fn runs(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for c in (0..self.chunks()).filter(|c| self.has_chunk(*c)) {
            let (off, len) = (c as u64 * CHUNK, self.chunk_len(c));
            match out.last_mut() {
                Some(last) if last.0 + last.1 == off => last.1 += len,
                _ => out.push((off, len)),
            }
        }
        out
    }

    /// Checks `data`, which starts at `offset` (a multiple of [`CHUNK`]) inside the block.
    pub fn verify(&self, offset: u64, data: &[u8]) -> bool {
        let first = (offset / CHUNK) as usize;
        data.chunks(CHUNK as usize).enumerate().all(|(i, chunk)| {
            let c = first + i;
            c < self.chunks() && self.has_chunk(c) && self.crcs[c] == crc32c::crc32c(chunk)
        })
    }

    pub fn write_record(&self, sidecar: &File, block: u64) -> io::Result<()> {
        let mut rec = Vec::with_capacity(RECORD as usize);
        rec.extend_from_slice(&MAGIC.to_le_bytes());
        rec.extend_from_slice(&(self.len as u32).to_le_bytes());
        rec.extend_from_slice(&self.present.to_le_bytes());
        for c in self.crcs.iter() {
            rec.extend_from_slice(&c.to_le_bytes());
        }
        rec.resize(RECORD as usize, 0);
        sidecar.write_all_at(&rec, block * RECORD)
    }

    /// Clears the record of a block that is no longer cached.
    pub fn clear_record(sidecar: &File, block: u64) -> io::Result<()> {
        sidecar.write_all_at(&[0u8; 16], block * RECORD)
    }

    /// Every valid record of a sidecar file of at most `max_len` bytes, as (block, sums).
    pub fn read_records(sidecar: &File, max_len: u64) -> io::Result<Vec<(u64, BlockSums)>> {
        let len = sidecar.metadata()?.len();
        if len > max_len {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{len} bytes of checksum records, at most {max_len} expected")));
        }
        let mut buf = vec![0u8; len as usize];
        sidecar.read_exact_at(&mut buf, 0)?;
        let mut out = Vec::new();
        for (b, rec) in buf.chunks_exact(RECORD as usize).enumerate() {
            let word = |i: usize| u32::from_le_bytes(rec[i..i + 4].try_into().expect("4 bytes"));
            if word(0) != MAGIC {
                continue;
            }
            let block_len = word(4) as u64;
            let n = block_len.div_ceil(CHUNK) as usize;
            if block_len == 0 || n > CHUNKS_PER_BLOCK {
                continue;
            }
            let present = u64::from_le_bytes(rec[8..16].try_into().expect("8 bytes")) & (u64::MAX >> (64 - n));
            if present == 0 {
                continue;
            }
            let crcs = (0..n).map(|i| word(16 + 4 * i)).collect();
            out.push((b as u64, BlockSums { len: block_len, present, crcs }));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_chunks_and_catches_a_flipped_bit() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        let sums = BlockSums::of(&data);
        assert_eq!(sums.crcs.len(), 4);
        assert!(sums.is_complete());
        assert!(sums.verify(0, &data));
        assert!(sums.verify(CHUNK, &data[CHUNK as usize..]));
        let mut bad = data.clone();
        bad[70_000] ^= 1;
        assert!(!sums.verify(0, &bad));
        assert!(sums.verify(0, &bad[..CHUNK as usize]), "an untouched chunk still verifies");
    }

    #[test]
    fn partial_blocks_track_their_chunks() {
        let data = vec![3u8; 3 * CHUNK as usize + 10];
        let mut sums = BlockSums::empty(data.len() as u64);
        assert_eq!(sums.add(CHUNK, &data[CHUNK as usize..2 * CHUNK as usize]), CHUNK);
        assert_eq!(sums.add(3 * CHUNK, &data[3 * CHUNK as usize..]), 10);
        assert_eq!(sums.add(CHUNK, &data[CHUNK as usize..2 * CHUNK as usize]), 0, "already present");
        assert!(sums.covers(CHUNK + 5, 2 * CHUNK));
        assert!(!sums.covers(CHUNK, 2 * CHUNK + 1), "chunk 2 is absent");
        assert!(!sums.verify(0, &data[..CHUNK as usize]), "an absent chunk never verifies");
        assert_eq!(sums.runs(), vec![(CHUNK, CHUNK), (3 * CHUNK, 10)]);
        assert_eq!(sums.present_bytes(), CHUNK + 10);
        assert!(!sums.is_complete());
    }

    #[test]
    fn parts_split_anywhere_give_the_checksums_of_the_whole() {
        let data: Vec<u8> = (0..(3 * CHUNK + 1000)).map(|i| (i * 7 % 251) as u8).collect();
        let whole = BlockSums::of(&data);
        for cuts in [vec![1usize], vec![CHUNK as usize], vec![5, 70_000, 70_001, 200_000], vec![8192; 1]] {
            let mut parts = Vec::new();
            let mut at = 0;
            for c in cuts.iter().copied().chain([data.len()]) {
                let c = c.clamp(at, data.len());
                parts.push(&data[at..c]);
                at = c;
            }
            let mut s = BlockSums::empty(data.len() as u64);
            assert_eq!(s.add_parts(0, &parts), data.len() as u64);
            assert_eq!(s, whole, "cut at {cuts:?}");
        }
    }

    #[test]
    fn records_round_trip_and_cleared_ones_vanish() {
        let f = tempfile::tempfile().unwrap();
        let a = BlockSums::of(&[1u8; 100_000]);
        let mut b = BlockSums::empty(3 * CHUNK);
        b.add(CHUNK, &[2u8; CHUNK as usize]);
        a.write_record(&f, 0).unwrap();
        b.write_record(&f, 3).unwrap();
        assert_eq!(BlockSums::read_records(&f, 4 * RECORD).unwrap(), vec![(0, a.clone()), (3, b)]);
        assert!(BlockSums::read_records(&f, 3 * RECORD).is_err(), "more records than the file can have");
        BlockSums::clear_record(&f, 3).unwrap();
        assert_eq!(BlockSums::read_records(&f, 4 * RECORD).unwrap(), vec![(0, a)]);
    }
}
