//! The UFS total size and file number of a Dataset, counted in the background.
//!
//! Counting walks the namespace (which lists the UFS as it goes, warming the metadata cache for
//! the reads that follow). Until it finishes, statuses print `[Calculating]`, as Fluid does.

use crate::{Namespace, ROOT_INO};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UfsSummary {
    pub total_bytes: u64,
    pub files: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Summary {
    Calculating,
    Done(UfsSummary),
    Failed(String),
}

/// Starts the count on the current runtime; the returned cell shows its progress. A count
/// stored by a previous run is used as it is (a restart does not recount).
pub fn spawn_summary(ns: Arc<Namespace>) -> Arc<Mutex<Summary>> {
    if let Some((total_bytes, files)) = ns.stored_summary() {
        return Arc::new(Mutex::new(Summary::Done(UfsSummary { total_bytes, files })));
    }
    let cell = Arc::new(Mutex::new(Summary::Calculating));
    let out = cell.clone();
    tokio::spawn(async move {
        let result = count(&ns).await;
        if let Ok(s) = &result {
            if let Err(e) = ns.store_summary(s.total_bytes, s.files) {
                tracing::warn!(error = %e, "cannot store the UFS summary; it is counted again on restart");
            }
        }
        *out.lock().expect("summary lock") = match result {
            Ok(s) => Summary::Done(s),
            Err(e) => Summary::Failed(e.message),
        };
    });
    cell
}

pub async fn count(ns: &Namespace) -> Result<UfsSummary, crate::MetaError> {
    let mut total = UfsSummary { total_bytes: 0, files: 0 };
    let mut stack = vec![ROOT_INO];
    while let Some(dir) = stack.pop() {
        for child in ns.readdir(dir).await? {
            if child.is_dir() {
                stack.push(child.ino);
            } else {
                total.total_bytes += child.size;
                total.files += 1;
            }
        }
    }
    Ok(total)
}
