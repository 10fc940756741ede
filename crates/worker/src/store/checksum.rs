//! Block checksums: one crc32c per [`CHUNK`] of a block, so a read verifies only the chunks it
//! touches (a 128 KiB read checks 128 KiB, not the whole 4 MiB block).
//!
//! Each block's checksums are also kept on disk in a sidecar file (`<key>.crc`), one
//! fixed-size record per block at `block × RECORD` — written after the block's data, so a crash
//! in between leaves a block without a record, which counts as absent. That is what lets a
//! persistent tier re-index itself after a restart without trusting unverified bytes.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Checksum granularity.
pub const CHUNK: u64 = 64 * 1024;
const MAGIC: u32 = 0x4349_5354; // "CIST"
const CHUNKS_PER_BLOCK: usize = (super::BLOCK_SIZE / CHUNK) as usize;
/// Bytes of one on-disk record: magic, block length, then the chunk checksums.
pub const RECORD: u64 = 8 + 4 * CHUNKS_PER_BLOCK as u64;

/// The checksums of one cached block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSums {
    pub len: u64,
    pub crcs: Box<[u32]>,
}

impl BlockSums {
    pub fn of(data: &[u8]) -> BlockSums {
        BlockSums { len: data.len() as u64, crcs: data.chunks(CHUNK as usize).map(crc32c::crc32c).collect() }
    }

    /// Checks `data`, which starts at `offset` (a multiple of [`CHUNK`]) inside the block.
    pub fn verify(&self, offset: u64, data: &[u8]) -> bool {
        let first = (offset / CHUNK) as usize;
        data.chunks(CHUNK as usize)
            .enumerate()
            .all(|(i, chunk)| self.crcs.get(first + i).is_some_and(|c| *c == crc32c::crc32c(chunk)))
    }

    pub fn write_record(&self, sidecar: &File, block: u64) -> io::Result<()> {
        let mut rec = Vec::with_capacity(RECORD as usize);
        rec.extend_from_slice(&MAGIC.to_le_bytes());
        rec.extend_from_slice(&(self.len as u32).to_le_bytes());
        for c in self.crcs.iter() {
            rec.extend_from_slice(&c.to_le_bytes());
        }
        rec.resize(RECORD as usize, 0);
        sidecar.write_all_at(&rec, block * RECORD)
    }

    /// Clears the record of a block that is no longer cached.
    pub fn clear_record(sidecar: &File, block: u64) -> io::Result<()> {
        sidecar.write_all_at(&[0u8; 8], block * RECORD)
    }

    /// Every valid record of a sidecar file, as (block, sums).
    pub fn read_records(sidecar: &File) -> io::Result<Vec<(u64, BlockSums)>> {
        let len = sidecar.metadata()?.len();
        let mut buf = vec![0u8; len as usize];
        sidecar.read_exact_at(&mut buf, 0)?;
        let mut out = Vec::new();
        for (b, rec) in buf.chunks_exact(RECORD as usize).enumerate() {
            let word = |i: usize| u32::from_le_bytes([rec[i], rec[i + 1], rec[i + 2], rec[i + 3]]);
            if word(0) != MAGIC {
                continue;
            }
            let block_len = word(4) as u64;
            let n = block_len.div_ceil(CHUNK) as usize;
            if block_len == 0 || n > CHUNKS_PER_BLOCK {
                continue;
            }
            let crcs = (0..n).map(|i| word(8 + 4 * i)).collect();
            out.push((b as u64, BlockSums { len: block_len, crcs }));
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
        assert!(sums.verify(0, &data));
        assert!(sums.verify(CHUNK, &data[CHUNK as usize..]));
        let mut bad = data.clone();
        bad[70_000] ^= 1;
        assert!(!sums.verify(0, &bad));
        assert!(sums.verify(0, &bad[..CHUNK as usize]), "an untouched chunk still verifies");
    }

    #[test]
    fn records_round_trip_and_cleared_ones_vanish() {
        let f = tempfile::tempfile().unwrap();
        let a = BlockSums::of(&[1u8; 100_000]);
        let b = BlockSums::of(&[2u8; 10]);
        a.write_record(&f, 0).unwrap();
        b.write_record(&f, 3).unwrap();
        assert_eq!(BlockSums::read_records(&f).unwrap(), vec![(0, a.clone()), (3, b)]);
        BlockSums::clear_record(&f, 3).unwrap();
        assert_eq!(BlockSums::read_records(&f).unwrap(), vec![(0, a)]);
    }
}
