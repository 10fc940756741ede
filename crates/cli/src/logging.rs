//! Logging to stderr with a filter that can be changed while running (the web port's
//! `/api/v1/loglevel`, like Alluxio's `logLevel` command).
//!
//! No secret value reaches a log line at any level: every line is written through
//! [`Redacting`], which replaces the Dataset's secret values (registered with [`redact`] as
//! soon as a component has read its Secrets) with `<redacted>`, whichever library logged
//! them (the S3 signer prints its credentials at debug). The signer is also held at `info`.

use std::io::Write;
use std::sync::{Mutex, OnceLock, RwLock};
use tracing_subscriber::{prelude::*, reload, EnvFilter, Registry};

static HANDLE: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();
static CURRENT: Mutex<String> = Mutex::new(String::new());
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Values shorter than this are not scrubbed (they would blank out ordinary words); the
/// API refuses no such value, so the README asks for real keys.
const MIN_SECRET_LEN: usize = 4;

/// OpenDAL logs every retry with a backtrace; its final error is what we report. The request
/// signer logs its credentials at debug.
fn with_defaults(level: &str) -> String {
    let mut text = level.to_string();
    if !level.contains("opendal") {
        text.push_str(",opendal=error");
    }
    // openraft narrates every vote and snapshot at info; its warnings and errors still show.
    if !level.contains("openraft") {
        text.push_str(",openraft=warn");
    }
    text.push_str(",reqsign=info");
    text
}

/// Scrubs these values from every log line from now on.
pub fn redact(values: impl IntoIterator<Item = String>) {
    let mut secrets = SECRETS.write().expect("secrets lock");
    for v in values {
        if v.len() >= MIN_SECRET_LEN && !secrets.contains(&v) {
            secrets.push(v);
        }
    }
    // Longest first, so a secret containing another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` with every registered secret value replaced.
pub fn scrub(text: &str) -> String {
    let secrets = SECRETS.read().expect("secrets lock");
    let mut out = text.to_string();
    for s in secrets.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "<redacted>");
        }
    }
    out
}

/// Standard error, through [`scrub`]: the formatter writes each event with one `write_all`.
struct Redacting;

impl Write for Redacting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let any = !SECRETS.read().expect("secrets lock").is_empty();
        if any {
            let text = String::from_utf8_lossy(buf);
            std::io::stderr().write_all(scrub(&text).as_bytes())?;
        } else {
            std::io::stderr().write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

pub fn init(level: &str) {
    let (filter, text) = match std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty()) {
        Some(env) => {
            let env = format!("{env},reqsign=info");
            (EnvFilter::try_new(&env).unwrap_or_else(|_| EnvFilter::new("warn")), env)
        }
        None => {
            let text = with_defaults(level);
            (EnvFilter::try_new(&text).unwrap_or_else(|_| EnvFilter::new("warn")), text)
        }
    };
    let (layer, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(|| Redacting)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    tracing_subscriber::registry().with(layer).with(fmt).init();
    let _ = HANDLE.set(handle);
    *CURRENT.lock().expect("log level lock") = text;
}

pub fn current() -> String {
    CURRENT.lock().expect("log level lock").clone()
}

/// Replaces the log filter; the old one stays when `level` does not parse.
pub fn set(level: &str) -> Result<(), String> {
    let text = with_defaults(level);
    let filter = EnvFilter::try_new(&text).map_err(|e| format!("{e}; give a level such as info, debug or warn,cistern_worker=trace"))?;
    let handle = HANDLE.get().ok_or("logging is not initialised")?;
    handle.reload(filter).map_err(|e| e.to_string())?;
    tracing::info!(filter = %text, "log level changed");
    *CURRENT.lock().expect("log level lock") = text;
    Ok(())
}

/// Whether `level` parses as a filter, without applying it.
pub fn validate(level: &str) -> Result<(), String> {
    EnvFilter::try_new(with_defaults(level)).map(|_| ()).map_err(|e| format!("{e}; give a level such as info, debug or warn,cistern_worker=trace"))
}

/// This process's logging, for the crates that change it on request.
pub const CONTROL: cistern_rpc::LogControl = cistern_rpc::LogControl { set, current, validate };

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_scrubbed_longest_first_and_short_values_left() {
        redact(["s3cr3t-value".to_string(), "s3cr3t".to_string(), "abc".to_string()]);
        assert_eq!(scrub("key=s3cr3t-value other=s3cr3t abc"), "key=<redacted> other=<redacted> abc");
        assert!(with_defaults("trace").ends_with(",reqsign=info"), "the signer is held at info");
    }
}
