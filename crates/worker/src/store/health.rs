//! Whether a cache path is fit to use. A read or write error on a path is counted; after
//! [`MAX_CONSECUTIVE`] errors in a row the path is taken out of service for
//! [`OUT_OF_SERVICE`] (reads miss, writes are skipped: the worker serves from the UFS), as
//! JuiceFS does with a failing cache disk, instead of failing over on every read. A success
//! resets the count; after the pause the path is tried again.

use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const MAX_CONSECUTIVE: u32 = 3;
pub const OUT_OF_SERVICE: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Health {
    consecutive: AtomicU32,
    out_until: Mutex<Option<Instant>>,
    /// I/O errors of this path, ever.
    pub errors: AtomicU64,
}

impl Health {
    pub fn in_service(&self) -> bool {
        let mut out = self.out_until.lock().expect("health lock");
        match *out {
            Some(until) if Instant::now() < until => false,
            Some(_) => {
                *out = None; // the pause is over: try the path again
                self.consecutive.store(0, Ordering::Relaxed);
                true
            }
            None => true,
        }
    }

    /// Notes the outcome of one I/O on the path and passes it on.
    pub fn record<T>(&self, r: io::Result<T>, path: &std::path::Path) -> io::Result<T> {
        match &r {
            Ok(_) => self.consecutive.store(0, Ordering::Relaxed),
            Err(e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                if self.consecutive.fetch_add(1, Ordering::Relaxed) + 1 >= MAX_CONSECUTIVE {
                    let mut out = self.out_until.lock().expect("health lock");
                    if out.is_none() {
                        tracing::error!(path = %path.display(), error = %e, "cache path failing; out of service for {OUT_OF_SERVICE:?}, serving from the UFS");
                        *out = Some(Instant::now() + OUT_OF_SERVICE);
                    }
                }
            }
        }
        r
    }

    pub fn out_of_service(&self) -> bool {
        !self.in_service()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_failing_again_and_again_is_taken_out_of_service() {
        let h = Health::default();
        let p = std::path::Path::new("/x");
        let fail = || Err::<(), _>(io::Error::other("EIO"));
        assert!(h.record(fail(), p).is_err() && h.in_service());
        assert!(h.record(Ok(()), p).is_ok(), "a success resets the count");
        for _ in 0..MAX_CONSECUTIVE - 1 {
            let _ = h.record(fail(), p);
            assert!(h.in_service());
        }
        let _ = h.record(fail(), p);
        assert!(!h.in_service());
        assert_eq!(h.errors.load(Ordering::Relaxed), MAX_CONSECUTIVE as u64 + 1);
        *h.out_until.lock().unwrap() = Some(Instant::now() - Duration::from_secs(1));
        assert!(h.in_service(), "tried again after the pause");
    }
}
