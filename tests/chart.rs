//! The Helm chart (`deploy/charts/cistern`): `helm lint` passes, `helm template` renders valid
//! Kubernetes objects (`kubernetes-validate --strict`) for the default values and with the
//! switches flipped, and the chart's CRDs are exactly what `cistern crd` prints (regenerate
//! with `cistern crd > deploy/charts/cistern/crds/crds.yaml`). Needs `helm` on PATH (or
//! CISTERN_HELM); `.ci/run` installs it.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::*;

fn chart() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/charts/cistern")
}

fn helm(args: &[&str]) -> Output {
    let bin = std::env::var("CISTERN_HELM").unwrap_or_else(|_| "helm".into());
    Command::new(&bin).args(args).output().unwrap_or_else(|e| panic!("{bin}: {e}; install helm or set CISTERN_HELM (.ci/run does)"))
}

fn validate(path: &Path) {
    let out = Command::new("kubernetes-validate").arg("--strict").arg("--quiet").arg(path).output().expect("kubernetes-validate (pip install kubernetes-validate)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && !text.contains("ERROR"), "{}:\n{text}", path.display());
}

#[test]
fn the_chart_lints_and_renders_valid_objects() {
    let s = Scratch::new();
    let chart = chart();
    let lint = helm(&["lint", chart.to_str().unwrap()]);
    assert!(lint.status.success(), "helm lint:\n{}{}", stdout_of(&lint), stderr_of(&lint));
    for (name, sets) in [("default", vec![]), ("flipped", vec!["--set", "features.passthrough=false", "--set", "operator.enabled=false"])] {
        let mut args = vec!["template", "cistern", chart.to_str().unwrap(), "--namespace", "cistern-system", "--include-crds"];
        args.extend(sets);
        let out = helm(&args);
        assert!(out.status.success(), "helm template ({name}):\n{}", stderr_of(&out));
        let text = stdout_of(&out);
        for kind in ["kind: CSIDriver", "kind: DaemonSet", "kind: CustomResourceDefinition", "node-driver-registrar"] {
            assert!(text.contains(kind), "{name}: no {kind}");
        }
        assert_eq!(text.contains("kind: Deployment"), name == "default", "{name}: the operator switch");
        validate(&s.write(&format!("{name}.yaml"), &text));
    }
}

#[test]
fn the_charts_crds_are_what_cistern_crd_prints() {
    let s = Scratch::new();
    let out = s.cistern(&["crd"]);
    assert!(out.status.success());
    let in_chart = std::fs::read_to_string(chart().join("crds/crds.yaml")).unwrap();
    assert!(
        in_chart == stdout_of(&out),
        "deploy/charts/cistern/crds/crds.yaml is stale: run `cistern crd > deploy/charts/cistern/crds/crds.yaml`"
    );
}
