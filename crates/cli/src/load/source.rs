//! Where a load reads from:
//! - [`Source::Mount`]: the FUSE mount of this machine's `cistern up` (embedded mode). Every
//!   byte goes through the normal read path and lands in the worker that owns the file.
//! - [`Source::Master`]: the Dataset's master over gRPC, reading from its workers, without a
//!   mount: what the DataLoad Job runs on Kubernetes. The workers fetch from the UFS and keep
//!   what they fetch, exactly as for a read through FUSE.

use super::progress::Progress;
use anyhow::{Context, Result};
use cistern_client::Client;
use cistern_master::{Ino, ROOT_INO};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bytes asked of a worker at a time when loading through the master.
const CHUNK: u64 = 4 << 20;

pub enum Source {
    Mount(PathBuf),
    Master { rt: tokio::runtime::Runtime, client: Arc<Client> },
}

/// One file to load.
pub enum Entry {
    Path(PathBuf),
    Ino(Ino),
}

impl Source {
    /// Every file under `t`, with its size; `sync`: as the UFS lists it now (through the
    /// master only: a mount lists what its kernel and daemon keep).
    pub fn list(&self, t: &str, sync: bool) -> Result<Vec<(Entry, u64)>> {
        let mut files = Vec::new();
        {
            match self {
                Source::Mount(mountpoint) => {
                    let root = mountpoint.join(t.trim_start_matches('/'));
                    let meta = std::fs::metadata(&root).with_context(|| format!("target path `{t}`: not found in the Dataset"))?;
                    if meta.is_dir() {
                        walk_dir(&root, &mut files)?;
                    } else {
                        files.push((Entry::Path(root), meta.len()));
                    }
                }
                Source::Master { rt, client } => rt.block_on(async {
                    let mut node = client.getattr(ROOT_INO).await.map_err(|e| anyhow::anyhow!("the master: {e}"))?;
                    for name in t.split('/').filter(|c| !c.is_empty()) {
                        let not_found = |e: String| anyhow::anyhow!("target path `{t}`: not found in the Dataset ({e})");
                        node = if sync {
                            // The directory as it is now: a path added since its last listing.
                            let entries = client.readdir_synced(node.ino, true).await.map_err(|e| not_found(e.to_string()))?;
                            entries.into_iter().find(|n| n.name == name).ok_or_else(|| not_found(format!("no `{name}`")))?
                        } else {
                            client.lookup(node.ino, name).await.map_err(|e| not_found(e.to_string()))?
                        };
                    }
                    walk_master(client, node, sync, &mut files).await
                })?,
            }
        }
        Ok(files)
    }

    /// Reads `[start, end)` of one file, counting its bytes.
    pub fn read(&self, entry: &Entry, start: u64, end: u64, progress: &Progress) -> Result<()> {
        match (self, entry) {
            (Source::Mount(_), Entry::Path(path)) => read_path(path, start, end, progress),
            // The owner fetches the whole range at once and keeps it; no byte comes back here.
            (Source::Master { rt, client }, Entry::Ino(ino)) => rt.block_on(async {
                client.load_range(*ino, start, end - start).await.map_err(|e| anyhow::anyhow!("inode {ino}: {e}"))?;
                progress.add(end - start);
                Ok(())
            }),
            _ => unreachable!("entries come from the same source"),
        }
    }
}

impl Source {
    /// Reads one file whole through the `rank`-th worker of its ranking, which keeps a copy
    /// (taken from a peer's cache: the UFS is not read again). Nothing when fewer workers
    /// run, or through a mount.
    pub fn copy(&self, entry: &Entry, size: u64, rank: usize) -> Result<()> {
        let (Source::Master { rt, client }, Entry::Ino(ino)) = (self, entry) else { return Ok(()) };
        rt.block_on(async {
            let mut offset = 0;
            while offset < size {
                let Some(got) = client.read_at_rank(*ino, offset, CHUNK.min(size - offset), rank).await.map_err(|e| anyhow::anyhow!("inode {ino}, copy {rank}: {e}"))? else {
                    return Ok(()); // fewer workers than copies asked: one on each
                };
                if got.is_empty() {
                    break;
                }
                offset += got.len() as u64;
            }
            Ok(())
        })
    }
}

fn walk_dir(dir: &Path, out: &mut Vec<(Entry, u64)>) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let e = e?;
        let meta = e.metadata()?;
        if meta.is_dir() {
            walk_dir(&e.path(), out)?;
        } else {
            out.push((Entry::Path(e.path()), meta.len()));
        }
    }
    Ok(())
}

async fn walk_master(client: &Client, root: cistern_master::Inode, sync: bool, out: &mut Vec<(Entry, u64)>) -> Result<()> {
    let mut dirs = vec![root];
    while let Some(node) = dirs.pop() {
        if !node.is_dir() {
            out.push((Entry::Ino(node.ino), node.size));
            continue;
        }
        let children = client.readdir_synced(node.ino, sync).await.map_err(|e| anyhow::anyhow!("cannot list `{}`: {e}", node.name))?;
        dirs.extend(children);
    }
    Ok(())
}

fn read_path(path: &Path, start: u64, end: u64, progress: &Progress) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    // Drop the kernel's copy so the reads reach the cache engine.
    // SAFETY: fadvise on an fd we own.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), start as i64, (end - start) as i64, libc::POSIX_FADV_DONTNEED) };
    let mut buf = vec![0u8; 1 << 20];
    let mut at = start;
    while at < end {
        let want = (buf.len() as u64).min(end - at) as usize;
        let n = f.read_at(&mut buf[..want], at).with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            return Ok(()); // shorter than listed
        }
        at += n as u64;
        progress.add(n as u64);
    }
    Ok(())
}
