//! Fluid's documentation samples and `dataset://` references.

use crate::harness::*;

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let mut files: Vec<PathBuf> = ["fluid-docs", "jindo-docs"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root.join(d)).unwrap().map(|e| e.unwrap().path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Fluid's documentation samples (tests/fixtures): every object is accepted by the real API
/// server with strict field validation; every Dataset with a runtime is bound, and its runtime
/// either runs or says in an Event which field it cannot run with.
#[test]
fn fluid_documentation_samples_apply_strictly_and_bind() {
    let _ = installed();
    let c = cluster();
    let mut objects = 0;
    let mut fluid_doc_objects = 0;
    for file in fixtures() {
        let stem = file.file_stem().unwrap().to_str().unwrap().to_lowercase().replace('_', "-");
        let ns = c.namespace(&format!("doc-{}", &stem[..stem.len().min(50)]));
        let text = std::fs::read_to_string(&file).unwrap();
        let out = c.try_kubectl(&["apply", "--validate=strict", "--server-side", "-n", &ns, "-f", file.to_str().unwrap()]);
        assert!(out.is_ok(), "{}: {}", file.display(), out.unwrap_err());
        let kinds = text.matches("\nkind: ").count() + usize::from(text.starts_with("kind: "));
        objects += kinds;
        if file.to_str().unwrap().contains("fluid-docs") {
            fluid_doc_objects += kinds;
        }
        let declared = fluid_objects(&text);
        for (kind, name) in declared.iter().filter(|(k, _)| k.ends_with("Runtime")) {
            if !declared.iter().any(|(k, n)| k == "Dataset" && n == name) {
                continue;
            }
            wait_until(60, &format!("{}: Dataset {ns}/{name} Bound", file.display()), || phase_of(c, "dataset", &ns, name) == "Bound");
            let resource = kind.to_lowercase();
            wait_until(60, &format!("{}: {kind} {name} rendered, or a Warning naming the field", file.display()), || {
                let rendered = c.try_kubectl(&["get", "statefulset", &format!("{name}-worker"), "-n", &ns]).is_ok();
                let explained = c.try_kubectl(&["describe", &resource, name, "-n", &ns]).is_ok_and(|d| d.contains("ReconcileFailed") && d.contains("spec."));
                rendered || explained
            });
        }
    }
    eprintln!("documentation samples: {objects} objects accepted, {fluid_doc_objects} of them from Fluid's own docs");
    assert!(fluid_doc_objects >= 40, "only {fluid_doc_objects} objects from Fluid's docs");
}

/// A `dataset://<ns>/<name>` Dataset reads another namespace's cache: it is Bound to the
/// physical Dataset's runtime, gets a PV and claim that name the physical runtime for the CSI
/// plugin, is listed in the physical Dataset's `status.datasetRef`, and leaves it when deleted.
#[test]
fn a_dataset_reference_reads_another_namespaces_cache() {
    let _ = installed();
    let c = cluster();
    let phys = c.namespace("ref-physical");
    apply_demo(c, &phys, 1);
    wait_until(60, "the physical Dataset Bound", || phase_of(c, "dataset", &phys, "demo") == "Bound");
    let refs = c.namespace("ref-user");
    let reference = format!("apiVersion: data.fluid.io/v1alpha1\nkind: Dataset\nmetadata: {{name: refdemo}}\nspec:\n  mounts:\n    - mountPoint: dataset://{phys}/demo\n      name: fusedemo\n");
    c.kubectl_in(&["apply", "--validate=strict", "-n", &refs, "-f", "-"], &reference);
    // Without the physical Dataset's consent another namespace cannot read its cache.
    wait_until(60, "the refusal", || {
        c.get_json(&["dataset", "refdemo", "-n", &refs]).is_some_and(|d| d["status"]["phase"] == "NotBound" && d["status"]["conditions"][0]["message"].as_str().is_some_and(|m| m.contains("cistern.io/allow-references-from")))
    });
    assert!(c.get_json(&["pv", &format!("{refs}-refdemo")]).is_none(), "no PV without consent");
    c.kubectl(&["annotate", "dataset", "demo", "-n", &phys, &format!("cistern.io/allow-references-from={refs}")]);
    wait_until(60, "the reference Bound", || phase_of(c, "dataset", &refs, "refdemo") == "Bound");
    let ds = json_of(c, &["dataset", "refdemo", "-n", &refs]);
    assert_eq!(ds["status"]["runtimes"][0]["namespace"], phys.as_str(), "{ds}");
    let pv = json_of(c, &["pv", &format!("{refs}-refdemo")]);
    let attrs = &pv["spec"]["csi"]["volumeAttributes"];
    assert_eq!((attrs["runtime_namespace"].as_str(), attrs["runtime_name"].as_str()), (Some(phys.as_str()), Some("demo")), "{pv}");
    wait_until(60, "the reference's claim Bound", || c.get_json(&["pvc", "refdemo", "-n", &refs]).is_some_and(|p| p["status"]["phase"] == "Bound"));
    let listed = |c: &Cluster| c.get_json(&["dataset", "demo", "-n", &phys]).map(|d| d["status"]["datasetRef"].clone()).unwrap_or_default();
    wait_until(30, "the reference in datasetRef", || listed(c).as_array().is_some_and(|a| a.iter().any(|r| *r == format!("{refs}/refdemo"))));
    // For FUSE sidecars of the reference's namespace: the physical Dataset's configuration and
    // its client credentials only, copied next to the reference; and the physical Dataset's
    // NetworkPolicy admits that namespace's pods labelled with its id.
    let copied = crate::support::eventually(60, "the client credentials copied", || c.get_json(&["secret", "refdemo-cistern-credentials", "-n", &refs]));
    let keys: Vec<&String> = copied["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["ca.pem", "client.key", "client.pem"], "never ref.key, the CA key or another role's");
    let source = json_of(c, &["secret", "demo-cistern-credentials", "-n", &phys]);
    assert_eq!(copied["data"]["client.pem"], source["data"]["client.pem"]);
    let config = json_of(c, &["configmap", "refdemo-cistern-config", "-n", &refs]);
    let docs = config["data"]["dataset.yaml"].as_str().unwrap();
    assert!(docs.contains("name: demo") && docs.contains(&format!("namespace: {phys}")), "{docs}");
    let policy = crate::support::eventually(60, "the physical Dataset's NetworkPolicy admitting the namespace", || {
        let p = c.get_json(&["networkpolicy", "demo-cistern", "-n", &phys])?;
        (p["spec"]["ingress"][0]["from"].as_array().map_or(0, Vec::len) == 2).then_some(p)
    });
    assert_eq!(policy["spec"]["ingress"][0]["from"][1]["namespaceSelector"]["matchExpressions"][0]["values"], serde_json::json!([refs]), "{policy}");
    c.kubectl(&["delete", "dataset", "refdemo", "-n", &refs, "--wait=true", "--timeout=60s"]);
    wait_until(30, "datasetRef emptied", || !listed(c).as_array().is_some_and(|a| !a.is_empty()));
    // Deleted with the Dataset; the PV's protection finalizer lets it go once the claim (owned
    // by the Dataset, so garbage-collected after it) is gone.
    wait_until(60, "the reference's PV gone with it", || c.get_json(&["pv", &format!("{refs}-refdemo")]).is_none());
}
