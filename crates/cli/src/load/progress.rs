//! The progress of a load: a bar (files, bytes, rate, ETA) on a terminal, plain lines
//! otherwise (a Kubernetes Job's log).

use cistern_api::quantity::format_bytes;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A progress bar on a terminal; a plain line every few seconds otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
    pub bytes: AtomicU64,
    files: AtomicU64,
    total: u64,
    count: u64,
    started: Instant,
    last_line: Mutex<Instant>,
}

impl Progress {
    pub fn new(total: u64, count: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_message(format!("0/{count} files"));
            b
        });
        Progress {
            bar,
            bytes: AtomicU64::new(0),
            files: AtomicU64::new(0),
            total,
            count,
            started: Instant::now(),
            last_line: Mutex::new(Instant::now()),
        }
    }

    pub fn add(&self, n: u64) {
        let done = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(b) = &self.bar {
            b.set_position(done);
        } else {
            let mut last = self.last_line.lock().expect("progress lock");
            if last.elapsed() >= Duration::from_secs(2) {
                *last = Instant::now();
                self.line();
            }
        }
    }

    pub fn file_done(&self) {
        let f = self.files.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(b) = &self.bar {
            b.set_message(format!("{f}/{} files", self.count));
        }
    }

    pub fn line(&self) {
        let done = self.bytes.load(Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / secs;
        // "?" until a second has passed, and when the projection passes a day: a first file
        // that stalls (a component restarting) would otherwise project an absurd time.
        let eta = match (rate > 0.0 && secs >= 1.0 && done > 0, self.total.saturating_sub(done)) {
            (_, 0) => "0s".to_string(),
            (true, left) if (left as f64 / rate) < 86400.0 => format!("{:.0}s", left as f64 / rate),
            _ => "?".to_string(),
        };
        eprintln!(
            "loading: {}/{} files, {}/{}, {}/s, ETA {}",
            self.files.load(Ordering::Relaxed),
            self.count,
            format_bytes(done),
            format_bytes(self.total),
            format_bytes(rate as u64),
            eta
        );
    }

    pub fn finish(&self) {
        match &self.bar {
            Some(b) => b.finish(),
            None => self.line(),
        }
    }
}
