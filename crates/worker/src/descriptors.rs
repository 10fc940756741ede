//! The worker's descriptor socket: readers on this node (the FUSE daemon for short-circuit
//! reads and passthrough) ask for a cache file by the master's signed reference and get a
//! read-only descriptor of it (see `cistern_rpc::descriptors` for the transport).
//!
//! Everything here is blocking file and socket I/O, so it runs on its own threads (one per
//! connection, at most [`MAX_CONNECTIONS`]), never on the async runtime.

use crate::Worker;
use cistern_rpc::descriptors;
use cistern_rpc::{pb, Errno, RefKey};
use prost::Message;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Connections served at once; more wait in the listen backlog. Each reader process holds one
/// per worker.
pub const MAX_CONNECTIONS: usize = 64;

/// Serves the descriptor socket at `path` on background threads, for as long as the process
/// runs.
pub fn serve(path: &Path, worker: Arc<Worker>, refs: RefKey) -> std::io::Result<()> {
    let listener = descriptors::listen(path)?;
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new().name("descriptors".into()).spawn(move || loop {
        let conn = match descriptors::accept(&listener) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "descriptor socket: accept failed");
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
        };
        if !descriptors::peer_is_trusted(&conn, None).unwrap_or(false) {
            tracing::warn!("descriptor socket: refused a peer that is neither root nor this worker's user");
            continue;
        }
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!("descriptor socket: {MAX_CONNECTIONS} connections open; refused one more");
            continue;
        }
        let (worker, refs, active) = (worker.clone(), refs.clone(), active.clone());
        let spawned = std::thread::Builder::new().name("descriptors-conn".into()).spawn(move || {
            serve_connection(&conn, &worker, &refs);
            active.fetch_sub(1, Ordering::AcqRel);
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "descriptor socket: cannot start a thread");
        }
    })?;
    Ok(())
}

fn serve_connection(conn: &OwnedFd, worker: &Worker, refs: &RefKey) {
    loop {
        let (message, fd) = match descriptors::recv(conn) {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "descriptor socket: dropping a connection");
                return;
            }
        };
        drop(fd); // a client has no business sending descriptors
        let (reply, file) = answer(&message, worker, refs);
        if let Err(e) = descriptors::send(conn, &reply.encode_to_vec(), file.as_ref().map(|f| f.as_fd())) {
            tracing::debug!(error = %e, "descriptor socket: cannot answer");
            return;
        }
    }
}

/// The answer to one request: the reply and the descriptor that goes with it.
pub fn answer(message: &[u8], worker: &Worker, refs: &RefKey) -> (pb::OpenReply, Option<std::fs::File>) {
    let refuse = |errno: Errno, message: String| (pb::OpenReply { errno: errno.raw(), message, ..Default::default() }, None);
    let request = match pb::OpenRequest::decode(message) {
        Ok(r) => r,
        Err(e) => return refuse(Errno::InvalidArgument, format!("cannot decode the request: {e}")),
    };
    let Some(file) = request.file else { return refuse(Errno::InvalidArgument, "no file reference in the request".into()) };
    let verified = match refs.verify(&file) {
        Ok(v) => v,
        Err(e) => return refuse(e.errno(), e.to_string()),
    };
    tracing::debug!(path = %verified.path, complete_only = request.complete_only, "descriptor of a cache file asked for");
    match worker.cache().open_cache_file(&verified.key, request.complete_only) {
        Ok(Some(h)) => (pb::OpenReply { errno: 0, file_id: h.file_id, complete: h.complete, message: String::new() }, Some(h.file)),
        Ok(None) => refuse(Errno::NotFound, "not cached here".into()),
        Err(e) => refuse(Errno::of_io(&e), format!("cache I/O: {e}")),
    }
}
