//! Secret values for `encryptOptions`, and where they come from in embedded mode.
//!
//! A [`SecretValue`] never prints its content: `Debug` and `Display` show `<redacted>`, so a
//! secret that ends up in a log line, a status or an error message leaks nothing. The one way to
//! read it is [`SecretValue::expose`], called only where the value is handed to the UFS client.

use base64::Engine;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(v: impl Into<String>) -> Self {
        SecretValue(v.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Secrets by name, then by key: from `kind: Secret` documents or a `--secret-dir`.
#[derive(Debug, Default, Clone)]
pub struct SecretStore {
    secrets: BTreeMap<String, BTreeMap<String, SecretValue>>,
    /// A `--secret-dir`: `DIR/<secret>/<key>` (several secrets) or `DIR/<key>` (one mounted Secret).
    dir: Option<std::path::PathBuf>,
    /// Any reference resolves to an empty value: for rendering cluster objects, where the
    /// Secrets live in the cluster and only their names matter.
    references_only: bool,
}

impl SecretStore {
    /// A store that answers every reference with an empty value (see `references_only`).
    pub fn references_only() -> Self {
        SecretStore { references_only: true, ..Default::default() }
    }

    pub fn with_dir(mut self, dir: &Path) -> Result<Self, String> {
        if !dir.is_dir() {
            return Err(format!("--secret-dir {}: not a directory", dir.display()));
        }
        self.dir = Some(dir.to_path_buf());
        Ok(self)
    }

    /// Adds a `kind: Secret` document (`stringData` as is, `data` base64-decoded).
    pub fn add_object(&mut self, doc: &Value) -> Result<(), String> {
        let name = doc["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let entry = self.secrets.entry(name).or_default();
        if let Some(data) = doc.get("data").and_then(Value::as_object) {
            for (k, v) in data {
                let raw = v.as_str().unwrap_or_default();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(raw.trim())
                    .map_err(|_| format!("data.{k}: not base64 (put plain text under stringData instead)"))?;
                let text = String::from_utf8(bytes).map_err(|_| format!("data.{k}: not UTF-8 text"))?;
                entry.insert(k.clone(), SecretValue(text));
            }
        }
        if let Some(data) = doc.get("stringData").and_then(Value::as_object) {
            for (k, v) in data {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                entry.insert(k.clone(), SecretValue(text));
            }
        }
        Ok(())
    }

    /// The value of `key` in Secret `name`, or an error that says where it was looked for.
    pub fn get(&self, name: &str, key: &str) -> Result<SecretValue, String> {
        if let Some(v) = self.secrets.get(name).and_then(|s| s.get(key)) {
            return Ok(v.clone());
        }
        if self.references_only {
            return Ok(SecretValue(String::new()));
        }
        if let Some(dir) = &self.dir {
            for p in [dir.join(name).join(key), dir.join(key)] {
                if let Ok(text) = std::fs::read_to_string(&p) {
                    return Ok(SecretValue(text.trim_end_matches(['\n', '\r']).to_string()));
                }
            }
            return Err(format!(
                "Secret `{name}` has no key `{key}`: add it to a `kind: Secret` document or as file {}/{name}/{key}",
                dir.display()
            ));
        }
        match self.secrets.get(name) {
            Some(_) => Err(format!("Secret `{name}` has no key `{key}`: add `{key}` under its stringData")),
            None => Err(format!(
                "Secret `{name}` is not defined: add a `kind: Secret` document named `{name}` to the file, or pass --secret-dir"
            )),
        }
    }
}
