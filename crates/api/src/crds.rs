//! The CustomResourceDefinitions of the five kinds, as `cistern crd` prints them and the chart
//! installs them: kube-derive's schemas with Fluid's optionality restored where the derive
//! cannot say it (`spec` itself is optional in every Fluid kind, `json:"spec,omitempty"`).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::CustomResourceExt;

/// Every CRD, in the order they are applied.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut all = vec![
        crate::Dataset::crd(),
        crate::JindoRuntime::crd(),
        crate::AlluxioRuntime::crd(),
        crate::JuiceFSRuntime::crd(),
        crate::DataLoad::crd(),
    ];
    for crd in &mut all {
        for version in &mut crd.spec.versions {
            let root = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut());
            if let Some(required) = root.and_then(|r| r.required.as_mut()) {
                required.retain(|f| f != "spec");
            }
        }
    }
    all
}

#[cfg(test)]
mod tests {
    #[test]
    fn spec_is_optional_and_dataset_mounts_are_required() {
        for crd in super::crds() {
            let schema = crd.spec.versions[0].schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap();
            assert!(!schema.required.iter().flatten().any(|f| f == "spec"), "{}", crd.spec.names.kind);
            if crd.spec.names.kind == "Dataset" {
                let spec = &schema.properties.as_ref().unwrap()["spec"];
                assert!(spec.required.iter().flatten().any(|f| f == "mounts"));
            }
        }
    }
}
