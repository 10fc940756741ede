//! Logging to stderr with a filter that can be changed while running (the web port's
//! `/api/v1/loglevel`, like Alluxio's `logLevel` command).

use std::sync::{Mutex, OnceLock};
use tracing_subscriber::{prelude::*, reload, EnvFilter, Registry};

static HANDLE: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();
static CURRENT: Mutex<String> = Mutex::new(String::new());

/// OpenDAL logs every retry with a backtrace; its final error is what we report.
fn with_defaults(level: &str) -> String {
    if level.contains("opendal") {
        level.to_string()
    } else {
        format!("{level},opendal=error")
    }
}

pub fn init(level: &str) {
    let (filter, text) = match std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty()) {
        Some(env) => (EnvFilter::try_new(&env).unwrap_or_else(|_| EnvFilter::new("warn")), env),
        None => {
            let text = with_defaults(level);
            (EnvFilter::try_new(&text).unwrap_or_else(|_| EnvFilter::new("warn")), text)
        }
    };
    let (layer, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
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
