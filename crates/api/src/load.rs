//! Loading multi-document YAML (`kubectl apply -f` style) into typed objects.
//!
//! Each document is first read as a generic value so that its `kind` picks the type, then
//! decoded with `serde_path_to_error`, so an error names the document and the field
//! (`dataset.yaml: document 2 (JindoRuntime demo): spec.tieredstore.levels[0]: ...`).
//! Kinds Cistern does not act on (PVC, Pod, ...) are kept aside, not rejected: the seeds'
//! files mix them with the Fluid objects.

use crate::secret::SecretStore;
use crate::runtime_types::*;
use crate::runtime_view::RuntimeSpec;
use crate::types::*;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::Path;

/// Everything one file (or several) declared.
#[derive(Debug, Default, Clone)]
pub struct Manifest {
    pub datasets: Vec<Dataset>,
    pub runtimes: Vec<Runtime>,
    pub dataloads: Vec<DataLoad>,
    pub secrets: SecretStore,
    /// `kind` of each document that was accepted but is not a Fluid object.
    pub others: Vec<String>,
}

/// A runtime of any kind; one engine serves them all.
#[derive(Debug, Clone)]
pub enum Runtime {
    Jindo(JindoRuntime),
    Alluxio(AlluxioRuntime),
    JuiceFS(JuiceFSRuntime),
}

impl Runtime {
    /// The object as JSON (with its apiVersion and kind).
    pub fn to_value(&self) -> serde_json::Result<Value> {
        match self {
            Runtime::Jindo(r) => serde_json::to_value(r),
            Runtime::Alluxio(r) => serde_json::to_value(r),
            Runtime::JuiceFS(r) => serde_json::to_value(r),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Runtime::Jindo(_) => "JindoRuntime",
            Runtime::Alluxio(_) => "AlluxioRuntime",
            Runtime::JuiceFS(_) => "JuiceFSRuntime",
        }
    }
    pub fn metadata(&self) -> &kube::core::ObjectMeta {
        match self {
            Runtime::Jindo(r) => &r.metadata,
            Runtime::Alluxio(r) => &r.metadata,
            Runtime::JuiceFS(r) => &r.metadata,
        }
    }
    /// What the engine reads of the runtime, whichever its kind.
    pub fn spec(&self) -> RuntimeSpec {
        match self {
            Runtime::Jindo(r) => (&r.spec).into(),
            Runtime::Alluxio(r) => (&r.spec).into(),
            Runtime::JuiceFS(r) => (&r.spec).into(),
        }
    }
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }
    pub fn namespace(&self) -> &str {
        self.metadata().namespace.as_deref().unwrap_or("default")
    }
}

/// A load error: where (file, document, object, field) and what.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct LoadError {
    pub source_name: String,
    pub message: String,
}

impl Manifest {
    /// Reads a file; `-` reads standard input.
    pub fn from_path(path: &Path) -> Result<Manifest, LoadError> {
        let name = path.display().to_string();
        let text = if name == "-" {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(path)
        }
        .map_err(|e| LoadError { source_name: name.clone(), message: format!("cannot read it: {e}") })?;
        let mut m = Manifest::default();
        m.add_yaml(&text, &name)?;
        Ok(m)
    }

    /// Adds the documents of one YAML text; `source_name` prefixes every error.
    pub fn add_yaml(&mut self, text: &str, source_name: &str) -> Result<(), LoadError> {
        let fail = |message: String| LoadError { source_name: source_name.to_string(), message };
        let docs: Vec<Value> = serde_saphyr::from_multiple(text)
            .map_err(|e| fail(format!("not valid YAML: {}", first_line(&e.to_string()))))?;
        for (i, doc) in docs.into_iter().enumerate() {
            let n = i + 1;
            if doc.is_null() {
                continue;
            }
            let Some(obj) = doc.as_object() else {
                return Err(fail(format!("document {n} is not a mapping (expected apiVersion, kind, metadata, spec)")));
            };
            let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
            let api = obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string();
            let name = obj
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if kind.is_empty() {
                return Err(fail(format!("document {n}: field `kind` is missing")));
            }
            if name.is_empty() {
                return Err(fail(format!("document {n} ({kind}): field `metadata.name` is missing")));
            }
            let fluid = api.starts_with("data.fluid.io/");
            if fluid && api != "data.fluid.io/v1alpha1" {
                return Err(fail(format!(
                    "document {n} ({kind} {name}): apiVersion `{api}` is not served; use data.fluid.io/v1alpha1"
                )));
            }
            let at = |e: String| fail(format!("document {n} ({kind} {name}): {e}"));
            match (fluid, kind.as_str()) {
                (true, "Dataset") => self.datasets.push(decode(doc).map_err(at)?),
                (true, "JindoRuntime") => self.runtimes.push(Runtime::Jindo(decode(doc).map_err(at)?)),
                (true, "AlluxioRuntime") => self.runtimes.push(Runtime::Alluxio(decode(doc).map_err(at)?)),
                (true, "JuiceFSRuntime") => self.runtimes.push(Runtime::JuiceFS(decode(doc).map_err(at)?)),
                (true, "DataLoad") => self.dataloads.push(decode(doc).map_err(at)?),
                (true, other) => {
                    return Err(at(format!(
                        "kind `{other}` is not supported; use Dataset, JindoRuntime, AlluxioRuntime, JuiceFSRuntime or DataLoad"
                    )))
                }
                (false, "Secret") => self.secrets.add_object(&doc).map_err(at)?,
                (false, _) => self.others.push(kind),
            }
        }
        Ok(())
    }
}

fn decode<T: DeserializeOwned>(doc: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." {
            inner
        } else {
            format!("{path}: {inner}")
        }
    })
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
