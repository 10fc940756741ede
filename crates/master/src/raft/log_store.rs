//! The Raft log of one master: `<namespace.meta-dir>/raft.redb`, beside the namespace it
//! feeds. Entries are JSON (listings are names and numbers); the vote, the committed index and
//! the last purged log id live in a small `raft` table. Every write is one redb transaction,
//! durable when it commits, and runs on the blocking pool.

use super::TypeConfig;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, RaftLogReader, StorageError, StorageIOError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("raft");
pub const LOG_FILE: &str = "raft.redb";

type Result<T> = std::result::Result<T, StorageError<u64>>;

fn io_err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::<u64>::write_logs(&std::io::Error::other(e.to_string())).into()
}

#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    /// Opens (or creates) the log of `meta_dir`; `wipe` starts it empty (the namespace beside
    /// it was reset, so the old log no longer describes it).
    pub fn open(meta_dir: &Path, wipe: bool) -> std::result::Result<LogStore, String> {
        let path = meta_dir.join(LOG_FILE);
        if wipe {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(format!("{}: cannot wipe the Raft log: {e}", path.display())),
                _ => {}
            }
        }
        {
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path);
        }
        let db = Database::create(&path).map_err(|e| {
            format!("{}: cannot open the Raft log ({e}); if it is damaged, `cistern format --meta-dir {}` wipes this master (it catches up from the others)", path.display(), meta_dir.display())
        })?;
        let txn = db.begin_write().map_err(|e| e.to_string())?;
        txn.open_table(LOG).map_err(|e| e.to_string())?;
        txn.open_table(STATE).map_err(|e| e.to_string())?;
        txn.commit().map_err(|e| e.to_string())?;
        Ok(LogStore { db: Arc::new(db) })
    }

    /// An empty log in memory (tests).
    pub fn in_memory() -> LogStore {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new()).expect("an in-memory redb");
        let txn = db.begin_write().expect("a write");
        txn.open_table(LOG).expect("log table");
        txn.open_table(STATE).expect("state table");
        txn.commit().expect("commit");
        LogStore { db: Arc::new(db) }
    }

    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&Database) -> Result<T> + Send + 'static) -> Result<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db)).await.map_err(io_err)?
    }

    fn get_state<T: serde::de::DeserializeOwned>(db: &Database, key: &str) -> Result<Option<T>> {
        let txn = db.begin_read().map_err(io_err)?;
        let table = txn.open_table(STATE).map_err(io_err)?;
        match table.get(key).map_err(io_err)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(v.value()).map(Some).map_err(|e| io_err(format!("raft.redb {key}: {e}"))),
        }
    }

    fn put_state<T: serde::Serialize>(db: &Database, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(io_err)?;
        let txn = db.begin_write().map_err(io_err)?;
        txn.open_table(STATE).map_err(io_err)?.insert(key, bytes.as_slice()).map_err(io_err)?;
        txn.commit().map_err(io_err)
    }

    /// How many entries the log holds (the benchmark and tests print it).
    pub fn len(&self) -> u64 {
        let Ok(txn) = self.db.begin_read() else { return 0 };
        txn.open_table(LOG).ok().and_then(|t| t.len().ok()).unwrap_or(0)
    }
}

fn decode_entry(key: u64, bytes: &[u8]) -> Result<Entry<TypeConfig>> {
    serde_json::from_slice(bytes).map_err(|e| io_err(format!("raft.redb log entry {key}: {e}")))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(&mut self, range: RB) -> Result<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => Some(e.saturating_add(1)),
            Bound::Excluded(&e) => Some(e),
            Bound::Unbounded => None,
        };
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(io_err)?;
            let log = txn.open_table(LOG).map_err(io_err)?;
            let mut out = Vec::new();
            let iter = match end {
                Some(end) if end <= start => return Ok(out),
                Some(end) => log.range(start..end).map_err(io_err)?,
                None => log.range(start..).map_err(io_err)?,
            };
            for item in iter {
                let (k, v) = item.map_err(io_err)?;
                out.push(decode_entry(k.value(), v.value())?);
            }
            Ok(out)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>> {
        self.blocking(|db| {
            let last_purged_log_id: Option<LogId<u64>> = LogStore::get_state(db, "last_purged")?;
            let txn = db.begin_read().map_err(io_err)?;
            let log = txn.open_table(LOG).map_err(io_err)?;
            let last = match log.last().map_err(io_err)? {
                Some((k, v)) => Some(decode_entry(k.value(), v.value())?.log_id),
                None => last_purged_log_id,
            };
            Ok(LogState { last_purged_log_id, last_log_id: last })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<()> {
        let vote = *vote;
        self.blocking(move |db| LogStore::put_state(db, "vote", &vote)).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>> {
        self.blocking(|db| LogStore::get_state(db, "vote")).await
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<()> {
        self.blocking(move |db| LogStore::put_state(db, "committed", &committed)).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>> {
        self.blocking(|db| Ok(LogStore::get_state::<Option<LogId<u64>>>(db, "committed")?.flatten())).await
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut encoded = Vec::new();
        for e in entries {
            encoded.push((e.log_id.index, serde_json::to_vec(&e).map_err(io_err)?));
        }
        let result = self
            .blocking(move |db| {
                let txn = db.begin_write().map_err(io_err)?;
                {
                    let mut log = txn.open_table(LOG).map_err(io_err)?;
                    for (index, bytes) in &encoded {
                        log.insert(*index, bytes.as_slice()).map_err(io_err)?;
                    }
                }
                txn.commit().map_err(io_err)
            })
            .await;
        callback.log_io_completed(result.as_ref().map(|_| ()).map_err(|e| std::io::Error::other(e.to_string())));
        result
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<()> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(io_err)?;
            txn.open_table(LOG).map_err(io_err)?.retain_in(log_id.index.., |_, _| false).map_err(io_err)?;
            txn.commit().map_err(io_err)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<()> {
        let purged = serde_json::to_vec(&log_id).map_err(io_err)?;
        self.blocking(move |db| {
            // One transaction: a crash never leaves entries purged but not said to be.
            let txn = db.begin_write().map_err(io_err)?;
            txn.open_table(STATE).map_err(io_err)?.insert("last_purged", purged.as_slice()).map_err(io_err)?;
            txn.open_table(LOG).map_err(io_err)?.retain_in(..=log_id.index, |_, _| false).map_err(io_err)?;
            txn.commit().map_err(io_err)
        })
        .await
    }
}
