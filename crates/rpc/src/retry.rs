//! Retrying calls to a peer that is restarting (a master killed and brought back by its
//! supervisor): transport failures are retried with exponential backoff for a time budget;
//! answers carrying an errno are final, and so are failures that waiting cannot cure: a peer
//! of another version (`UNIMPLEMENTED`), a refusal (`PERMISSION_DENIED`, `UNAUTHENTICATED`,
//! `INVALID_ARGUMENT`...), and a TLS handshake that failed on a certificate.
//!
//! Only idempotent calls go through here (every Cistern RPC is: they read, or report state).

use crate::errors::errno_of;
use std::future::Future;
use std::time::{Duration, Instant};
use tonic::Status;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    /// Give up after this long and return the last failure.
    pub budget: Duration,
}

impl Default for Backoff {
    /// Long enough for a supervisor to notice a death and restart the process with its own
    /// backoff; short enough that a reader blocked on a dead component gets EIO in the end.
    fn default() -> Self {
        Backoff { first: Duration::from_millis(10), max: Duration::from_millis(500), budget: Duration::from_secs(60) }
    }
}

/// Calls `f` until it succeeds, fails with an errno, or `backoff.budget` is spent.
pub async fn with_retry<T, F, Fut>(what: &str, backoff: Backoff, mut f: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let started = Instant::now();
    let mut delay = backoff.first;
    let mut attempts = 0u32;
    loop {
        match f().await {
            Ok(v) => {
                if attempts > 0 {
                    tracing::info!(attempts, waited_ms = started.elapsed().as_millis() as u64, "{what}: reached the peer again");
                }
                return Ok(v);
            }
            Err(s) if is_final(&s) => return Err(s),
            Err(s) if started.elapsed() + delay > backoff.budget => return Err(s),
            Err(s) => {
                attempts += 1;
                if attempts == 1 {
                    tracing::warn!(code = ?s.code(), "{what}: {}; retrying", s.message());
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(backoff.max);
            }
        }
    }
}

/// True when retrying `s` cannot help: an answer of the peer (an errno, or a code that is not
/// about reaching it), or an authentication failure at the TLS handshake.
pub fn is_final(s: &Status) -> bool {
    use tonic::Code;
    if errno_of(s).is_some() {
        return true;
    }
    match s.code() {
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded | Code::Aborted | Code::ResourceExhausted | Code::Internal => {
            tls_failure(s)
        }
        _ => true,
    }
}

/// A rustls error (a certificate refused, by us or by the peer) anywhere in the cause chain.
fn tls_failure(s: &Status) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(s);
    let mut depth = 0;
    while let Some(e) = next {
        if e.is::<rustls::Error>() {
            return true;
        }
        // An io::Error hides the error it wraps from `source()`.
        if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            if inner.is::<rustls::Error>() {
                return true;
            }
        }
        depth += 1;
        if depth > 16 {
            break;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::status_with_errno;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn quick() -> Backoff {
        Backoff { first: Duration::from_millis(1), max: Duration::from_millis(4), budget: Duration::from_millis(200) }
    }

    #[tokio::test]
    async fn transport_failures_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let r = with_retry("t", quick(), || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(Status::unavailable("down"))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn an_errno_is_final_and_the_budget_ends_retries() {
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = with_retry("t", quick(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(status_with_errno(crate::Errno::NotFound, "gone"))
        })
        .await;
        assert_eq!(errno_of(&r.unwrap_err()), Some(crate::Errno::NotFound));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A peer of another version, or a refusal: waiting cannot help.
        for s in [Status::unimplemented("no such method"), Status::permission_denied("no"), Status::unauthenticated("no")] {
            let calls = AtomicU32::new(0);
            let r: Result<(), _> = with_retry("t", quick(), || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(s.clone())
            })
            .await;
            assert!(r.is_err());
            assert_eq!(calls.load(Ordering::SeqCst), 1, "{s:?} was retried");
        }
        let started = Instant::now();
        let r: Result<(), _> = with_retry("t", quick(), || async { Err(Status::unavailable("down")) }).await;
        assert!(r.is_err());
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
