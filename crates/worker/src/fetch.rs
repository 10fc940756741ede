//! The fetch path of a worker: how a miss becomes one request to the under storage (or a
//! peer's cache), shared by every reader that wants the same range at the same time, and is
//! stored and remembered; readahead of the blocks after a sequential reader.

use crate::{store, CacheKey, Fetch, FileRef, Worker, WorkerError, BLOCK_SIZE};
use bytes::Bytes;
use cistern_ufs::Buffer;
use futures::future::FutureExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Worker {
    /// Fetches and keeps the blocks of `f` not cached yet, as a sequential reader would (a
    /// client's epoch prefetch); returns the bytes fetched. They count as bytes from the UFS,
    /// never as hits: the hits come when the epoch reads them.
    pub async fn prefetch(self: &Arc<Self>, f: &FileRef) -> Result<u64, WorkerError> {
        let scratch = std::sync::atomic::AtomicU64::new(0);
        let mut fetched = 0;
        for b in 0..f.size.div_ceil(BLOCK_SIZE) {
            if self.tiers.contains(&f.key, b) {
                continue;
            }
            let (start, end) = (b * BLOCK_SIZE, ((b + 1) * BLOCK_SIZE).min(f.size));
            fetched += self.read_range(f, start, end, true, &scratch, true).await?.len() as u64;
        }
        Ok(fetched)
    }

    /// Fetches and keeps every block of `[start, end)` of `f` not cached yet, all at once (a
    /// load's work item: it needs no bytes back, only the blocks in the cache); returns the
    /// bytes fetched (or taken from peers).
    pub async fn prefetch_range(self: &Arc<Self>, f: &FileRef, start: u64, end: u64) -> Result<u64, WorkerError> {
        let end = end.min(f.size);
        if start >= end {
            return Ok(0);
        }
        let fetches = (start / BLOCK_SIZE..end.div_ceil(BLOCK_SIZE)).filter(|b| !self.tiers.contains(&f.key, *b)).map(|b| {
            let block_len = BLOCK_SIZE.min(f.size - b * BLOCK_SIZE);
            self.fetch(f, b, 0, block_len, true).1
        });
        let blocks = futures::future::try_join_all(fetches.collect::<Vec<_>>()).await?;
        Ok(blocks.iter().map(|d| d.len() as u64).sum())
    }

    pub(crate) fn read_ahead(self: &Arc<Self>, f: &FileRef, b: u64, forward: bool) {
        self.read_ahead_blocks(f, b, self.options.readahead_blocks, forward);
    }

    /// Fetches up to `n` blocks after block `b` that are neither cached nor in flight.
    pub(crate) fn read_ahead_blocks(self: &Arc<Self>, f: &FileRef, b: u64, n: u64, forward: bool) {
        let blocks = f.size.div_ceil(BLOCK_SIZE);
        for ahead in b + 1..(b + 1 + n).min(blocks) {
            if self.tiers.contains(&f.key, ahead) || self.block_in_flight(&f.key, ahead) {
                continue;
            }
            let len = BLOCK_SIZE.min(f.size - ahead * BLOCK_SIZE);
            let (_, fut) = self.fetch(f, ahead, 0, len, forward);
            tokio::spawn(async move {
                let _ = fut.await;
            });
        }
    }

    pub(crate) fn block_in_flight(&self, key: &str, b: u64) -> bool {
        let inflight = self.inflight.lock().expect("inflight lock");
        inflight.keys().any(|(k, rb, rs, _)| k.as_str() == key && *rb == b && *rs == 0)
    }

    /// `[s, e)` of block `b`, fetched once for all concurrent callers: a fetch in flight that
    /// covers it is joined (its start is returned with it), one inside it is reused. Both are
    /// decided under the lock that registers the new fetch, so two readers cannot both miss
    /// each other's fetch.
    ///
    /// `forward`: the fetch may ask peers ([`peers`]); one that may not (a read for a peer)
    /// joins only fetches that do not wait on a peer.
    pub(crate) fn fetch(self: &Arc<Self>, f: &FileRef, b: u64, s: u64, e: u64, forward: bool) -> (u64, Fetch) {
        let id = (f.key.clone(), b, s, e);
        let mut inflight = self.inflight.lock().expect("inflight lock");
        let joinable = |waits: bool| forward || !waits;
        let covering = inflight.iter().find(|((k, rb, rs, re), (_, waits))| k == &f.key && *rb == b && *rs <= s && e <= *re && joinable(*waits));
        if let Some(((_, _, rs, _), (fut, _))) = covering {
            return (*rs, fut.clone());
        }
        // Smaller fetches of this block already in flight inside [s, e) (a random reader's
        // unit, or the tail the kernel's readahead asked for before the block): reused, not
        // fetched again.
        let mut inside: Vec<(u64, u64, Fetch)> = inflight
            .iter()
            .filter(|((k, rb, rs, re), (_, waits))| k == &f.key && *rb == b && s <= *rs && *re <= e && (*rs, *re) != (s, e) && joinable(*waits))
            .map(|((_, _, rs, re), (fut, _))| (*rs, *re, fut.clone()))
            .collect();
        inside.sort_by_key(|(rs, _, _)| *rs);
        let me = self.clone();
        let waits = forward && self.peers.get().is_some_and(|p| p.delegates(f));
        let f = f.clone();
        let fut = async move {
            let result = me.fetch_and_store(&f, b, s, e, inside, forward).await;
            me.inflight.lock().expect("inflight lock").remove(&(f.key.clone(), b, s, e));
            result
        }
        .boxed()
        .shared();
        inflight.insert(id, (fut.clone(), waits));
        (s, fut)
    }

    pub(crate) async fn fetch_and_store(&self, f: &FileRef, b: u64, s: u64, e: u64, inside: Vec<(u64, u64, Fetch)>, forward: bool) -> Result<Buffer, WorkerError> {
        // A fetch that finished between our cache miss and this call stored the range before
        // leaving `inflight`: serve that rather than fetch again.
        if let Some(data) = self.cached(&f.key, b, s, e).await {
            return Ok(Buffer::from(data));
        }
        if forward {
            if let Some(data) = self.take_from_peers(f, b, s, e).await {
                let data = Buffer::from(data);
                self.store(f, b, s, data.clone()).await;
                self.remember((f.key.clone(), b, s, e), data.clone());
                return Ok(data);
            }
        }
        // Chunks at either end already cached (a tail or unit fetched just before) are read
        // back, not fetched again.
        let (fs, fe) = self.trim_cached(f, b, s, e);
        let mut pieces = Vec::with_capacity(3);
        if s < fs {
            pieces.push(Piece::Cached(s, fs));
        }
        // The gaps from the UFS, the rest from the fetches in flight inside the range.
        let mut at = fs;
        for (rs, re, fut) in inside.into_iter().filter(|(rs, re, _)| fs <= *rs && *re <= fe) {
            if rs < at {
                continue; // overlaps a piece already taken
            }
            if at < rs {
                pieces.push(Piece::Ufs(at, rs));
            }
            pieces.push(Piece::Joined(rs, re, fut));
            at = re;
        }
        if at < fe {
            pieces.push(Piece::Ufs(at, fe));
        }
        if fe < e {
            pieces.push(Piece::Cached(fe, e));
        }
        // Every piece at once: the gaps' requests go out while the fetches in flight finish
        // (a reader's head fetched first does not hold back the rest of its block).
        let parts = futures::future::try_join_all(pieces.into_iter().map(|p| self.piece(f, b, p))).await?;
        // The pieces in order, each kept as the parts it arrived in (never copied into one
        // buffer: the store writes the parts where they go). A short one: the object is
        // shorter than its metadata said, and nothing after it is served.
        let mut kept = Vec::with_capacity(parts.len());
        for (want, part) in parts {
            let short = (part.len() as u64) < want;
            kept.push(part);
            if short {
                return Ok(join(kept));
            }
        }
        let data = join(kept);
        if data.len() as u64 == e - s {
            self.store(f, b, s, data.clone()).await;
            self.remember((f.key.clone(), b, s, e), data.clone());
        }
        Ok(data)
    }

    /// One piece of a fetch, with the length it should have.
    async fn piece(&self, f: &FileRef, b: u64, piece: Piece) -> Result<(u64, Buffer), WorkerError> {
        Ok(match piece {
            Piece::Cached(s, e) => (e - s, self.cached_or_ufs(f, b, s, e).await?),
            Piece::Ufs(s, e) => (e - s, self.read_ufs(f, b, s, e).await?),
            Piece::Joined(s, e, fut) => match fut.await {
                Ok(d) if d.len() as u64 == e - s => (e - s, d),
                _ => (e - s, self.read_ufs(f, b, s, e).await?), // that fetch failed: ours does not
            },
        })
    }

    /// `[s, e)` without the checksum chunks at either end that are already cached.
    pub(crate) fn trim_cached(&self, f: &FileRef, b: u64, s: u64, e: u64) -> (u64, u64) {
        let chunk = store::checksum::CHUNK;
        let (mut fs, mut fe) = (s, e);
        while fs < fe {
            let next = ((fs / chunk + 1) * chunk).min(fe);
            if !self.tiers.covers(&f.key, b, fs, next) {
                break;
            }
            fs = next;
        }
        while fs < fe {
            let prev = ((fe - 1) / chunk * chunk).max(fs);
            if !self.tiers.covers(&f.key, b, prev, fe) {
                break;
            }
            fe = prev;
        }
        (fs, fe)
    }

    /// `[s, e)` from the cache, or from the UFS if it was evicted (or failed its checksum)
    /// since it was found there.
    pub(crate) async fn cached_or_ufs(&self, f: &FileRef, b: u64, s: u64, e: u64) -> Result<Buffer, WorkerError> {
        match self.cached(&f.key, b, s, e).await {
            Some(d) => Ok(Buffer::from(d)),
            None => self.read_ufs(f, b, s, e).await,
        }
    }

    /// `[s, e)` of block `b` of `key` from the cache, read on the blocking pool; `None` for a
    /// miss, and for a cache error, which is counted so the caller fetches from the UFS.
    pub(crate) async fn cached(&self, key: &CacheKey, b: u64, s: u64, e: u64) -> Option<Bytes> {
        let (tiers, k) = (self.tiers.clone(), key.clone());
        match tokio::task::spawn_blocking(move || tiers.read_cached(&k, b, s, e)).await {
            Ok(Ok(data)) => data,
            Ok(Err(err)) => {
                self.counters.cache_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(worker = self.id, key = %key, block = b, error = %err, "cache read failed; serving from the UFS");
                None
            }
            Err(join) => {
                self.counters.cache_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(worker = self.id, error = %join, "cache read task failed; serving from the UFS");
                None
            }
        }
    }

    /// Stores fetched `data` at `s` in block `b`, on the blocking pool; a failure is counted
    /// and the data served uncached.
    pub(crate) async fn store(&self, f: &FileRef, b: u64, s: u64, data: Buffer) {
        let (tiers, key, size) = (self.tiers.clone(), f.key.clone(), f.size);
        let r = tokio::task::spawn_blocking(move || {
            let pieces: Vec<Bytes> = data.collect();
            let parts: Vec<&[u8]> = pieces.iter().map(|p| &p[..]).collect();
            tiers.insert(&key, b, size, s, &parts)
        })
        .await;
        if !matches!(r, Ok(Ok(_))) {
            self.counters.cache_errors.fetch_add(1, Ordering::Relaxed);
            let error = match r {
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
                Ok(Ok(_)) => unreachable!(),
            };
            tracing::warn!(worker = self.id, error, "could not cache a block; serving it uncached");
        }
    }

    /// `[s, e)` of block `b` from the UFS: one request.
    pub(crate) async fn read_ufs(&self, f: &FileRef, b: u64, s: u64, e: u64) -> Result<Buffer, WorkerError> {
        tracing::debug!(path = %f.path, block = b, s, e, "fetching from the UFS");
        self.counters.ufs_fetches.fetch_add(1, Ordering::Relaxed);
        let version = cistern_ufs::ObjectVersion { size: f.size, etag: f.etag.clone(), mtime: f.mtime };
        let data = {
            let _timer = self.ufs_latency.time("read");
            f.ufs.read_version_pieces(&f.path, b * BLOCK_SIZE + s, e - s, &version).await?
        };
        self.counters.ufs_fetched_bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(data)
    }
}

/// Where one piece of a fetched range comes from.
enum Piece {
    /// Cached already (read back; from the UFS if evicted meanwhile).
    Cached(u64, u64),
    /// Not cached, not in flight: one request to the UFS.
    Ufs(u64, u64),
    /// A fetch in flight inside the range.
    Joined(u64, u64, Fetch),
}

/// Buffers one after another, as one buffer of all their parts (nothing copied).
pub(crate) fn join(parts: Vec<Buffer>) -> Buffer {
    parts.into_iter().flatten().collect()
}
