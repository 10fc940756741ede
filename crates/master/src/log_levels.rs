//! The log filters of every component, changed at runtime (Alluxio's `logLevel`): the master's
//! own, and the ones workers and FUSE clients are asked to take. Workers and clients learn
//! theirs from the master's `Cluster` answer, which they ask for every 2 s; workers report the
//! filter they run with in their heartbeat.

use cistern_rpc::LogControl;
use std::sync::Mutex;

/// Longest filter accepted: filters are short; anything longer is a mistake or hostile.
pub const MAX_LEVEL_LEN: usize = 512;

#[derive(Default)]
pub struct LogLevels {
    /// This process's own filter, when it has one to change (`None` in tests).
    own: Option<LogControl>,
    workers: Mutex<String>,
    fuse: Mutex<String>,
}

impl LogLevels {
    pub fn new(own: Option<LogControl>) -> LogLevels {
        LogLevels { own, ..Default::default() }
    }

    /// Sets `target`'s filter (`master`, `workers`, `fuse` or `all`) to `level`.
    pub fn set(&self, target: &str, level: &str) -> Result<(), String> {
        let level = level.trim();
        if level.is_empty() || level.len() > MAX_LEVEL_LEN || level.chars().any(|c| c.is_control()) {
            return Err(format!("level: give a filter such as info, debug or warn,cistern_worker=trace (at most {MAX_LEVEL_LEN} characters)"));
        }
        if let Some(own) = &self.own {
            (own.validate)(level)?;
        }
        let (master, workers, fuse) = match target.trim() {
            "master" => (true, false, false),
            "workers" | "worker" => (false, true, false),
            "fuse" => (false, false, true),
            "all" | "" => (true, true, true),
            other => return Err(format!("target `{other}`: give master, workers, fuse or all")),
        };
        if master {
            match &self.own {
                Some(own) => (own.set)(level)?,
                None if !(workers || fuse) => return Err("this master's own log level cannot be changed".into()),
                None => {}
            }
        }
        if workers {
            *self.workers.lock().expect("levels lock") = level.to_string();
        }
        if fuse {
            *self.fuse.lock().expect("levels lock") = level.to_string();
        }
        Ok(())
    }

    pub fn master(&self) -> String {
        self.own.map(|o| (o.current)()).unwrap_or_default()
    }
    pub fn workers(&self) -> String {
        self.workers.lock().expect("levels lock").clone()
    }
    pub fn fuse(&self) -> String {
        self.fuse.lock().expect("levels lock").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_set_apart_and_bad_input_is_refused_by_name() {
        let l = LogLevels::default();
        l.set("workers", "debug").unwrap();
        assert_eq!((l.workers(), l.fuse()), ("debug".to_string(), String::new()));
        l.set("fuse", "trace").unwrap();
        assert_eq!(l.fuse(), "trace");
        assert!(l.set("everyone", "debug").unwrap_err().contains("target `everyone`"));
        assert!(l.set("workers", "").unwrap_err().contains("level:"));
        assert!(l.set("workers", &"x".repeat(MAX_LEVEL_LEN + 1)).unwrap_err().contains("at most"));
        assert!(l.set("master", "debug").unwrap_err().contains("cannot be changed"));
        assert_eq!(l.workers(), "debug", "refusals change nothing");
    }
}
