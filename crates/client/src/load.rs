//! What `cistern load` asks of workers beyond plain reads: a range fetched and kept by its
//! owner with no bytes sent back, and copies kept on the next workers of a file's ranking
//! (DataLoad `target[].replicas`).

use crate::{bounded, file_ref, with_retry, Client, ClientError};
use bytes::Bytes;
use cistern_master::Ino;
use cistern_rpc::pb;

impl Client {
    /// Has the owner of `[offset, offset + len)` of a file (at most
    /// [`cistern_rpc::MAX_READ_LEN`]) fetch and keep it, all of its blocks at once, with no
    /// bytes sent back: what `cistern load` asks for each of its work items.
    pub async fn load_range(&self, ino: Ino, offset: u64, len: u64) -> Result<(), ClientError> {
        let file = file_ref(&self.file(ino).await?)?;
        if len == 0 || offset >= file.size {
            return Ok(());
        }
        self.with_worker("load", &file, |w| {
            let r = pb::ReadRequest { file: Some(file.clone()), offset, len, prefetch: true, client_node: self.node.clone(), ..Default::default() };
            async move { w.read(r).await }
        })
        .await?;
        Ok(())
    }

    /// Reads through the `rank`-th worker of the file's ranking (0: its owner), so that it
    /// keeps a copy (DataLoad `target[].replicas`): a worker other than the owner takes the
    /// bytes from a peer's cache when one has them, so the UFS still sends them once. `None`
    /// when fewer workers are listed.
    pub async fn read_at_rank(&self, ino: Ino, offset: u64, len: u64, rank: usize) -> Result<Option<Bytes>, ClientError> {
        let node = self.file(ino).await?;
        let file = file_ref(&node)?;
        let end = offset.saturating_add(len).min(file.size);
        let Some((_, worker)) = self.workers.read().expect("workers lock").at_rank(&file, rank) else { return Ok(None) };
        let reply = with_retry("read", self.backoff, || {
            let r = pb::ReadRequest { file: Some(file.clone()), offset, len, client_node: self.node.clone(), ..Default::default() };
            let worker = worker.clone();
            async move { worker.read(r).await }
        })
        .await?;
        bounded(reply.data, offset, end).map(Some)
    }
}
