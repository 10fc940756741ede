//! Cistern on Kubernetes: the objects that run a Dataset's runtime ([`render`]), which
//! `cistern render` prints and the operator applies.

pub mod render;

pub use render::{render, RenderOptions};

/// Objects as one multi-document YAML stream, as `kubectl apply -f` reads it.
pub fn to_yaml(objects: &[serde_json::Value]) -> Result<String, String> {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(o).map_err(|e| e.to_string())?);
    }
    Ok(out)
}
