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
    for (name, sets) in [
        ("default", vec![]),
        ("flipped", vec!["--set", "features.passthrough=false", "--set", "operator.enabled=false"]),
        ("webhook", vec!["--set", "webhook.enabled=true"]),
    ] {
        let mut args = vec!["template", "cistern", chart.to_str().unwrap(), "--namespace", "cistern-system", "--include-crds"];
        args.extend(sets);
        let out = helm(&args);
        assert!(out.status.success(), "helm template ({name}):\n{}", stderr_of(&out));
        let text = stdout_of(&out);
        for kind in ["kind: CSIDriver", "kind: DaemonSet", "kind: CustomResourceDefinition", "node-driver-registrar"] {
            assert!(text.contains(kind), "{name}: no {kind}");
        }
        assert_eq!(text.contains("kind: Deployment"), name != "flipped", "{name}: the operator switch");
        assert_eq!(text.contains("kind: MutatingWebhookConfiguration"), name == "webhook", "{name}: the webhook switch");
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

/// The webhook's ClusterRole (rendered with `webhook.enabled`) grants exactly the README's
/// least-privilege rows for `webhook` (the control-plane test checks the operator's and the
/// CSI plugin's with `kubectl auth can-i` on a real API server).
#[test]
fn the_webhooks_grants_are_the_readmes() {
    let out = helm(&["template", "cistern", chart().to_str().unwrap(), "--namespace", "cistern-system", "--set", "webhook.enabled=true"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = stdout_of(&out);
    let role = text.split("\n---").find(|d| d.contains("kind: ClusterRole\n") && d.contains("name: cistern-webhook\n")).expect("the webhook's ClusterRole");
    let doc: serde_json::Value = serde_saphyr::from_str(role).unwrap();
    let mut granted = std::collections::BTreeSet::new();
    for rule in doc["rules"].as_array().unwrap() {
        for r in rule["resources"].as_array().unwrap() {
            for v in rule["verbs"].as_array().unwrap() {
                granted.insert(format!("{}/{}:{}", rule["apiGroups"][0].as_str().unwrap(), r.as_str().unwrap(), v.as_str().unwrap()));
            }
        }
    }
    let readme = std::fs::read_to_string(chart().join("../../../README.md")).unwrap();
    let mut table = std::collections::BTreeSet::new();
    for line in readme.split("### Least privilege").nth(1).unwrap().lines().take_while(|l| !l.starts_with("### ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() >= 7 && cells[1] == "webhook" {
            let group = cells[2].trim_matches('`');
            for r in cells[3].split(',') {
                for v in cells[4].split(',') {
                    table.insert(format!("{group}/{}:{}", r.trim().trim_matches('`'), v.trim()));
                }
            }
        }
    }
    assert_eq!(granted, table, "the chart (left) and the README (right)");
}

/// Monitoring, switched on: a PodMonitor for the masters' web ports, the Grafana dashboard as
/// a ConfigMap labelled for the sidecar, and the NetworkPolicy opening named to the operator.
/// Every metric the dashboard queries is one the master exports.
#[test]
fn the_dashboard_queries_only_metrics_that_exist() {
    let sets = [
        "--set", "monitoring.podMonitor.enabled=true",
        "--set", "monitoring.dashboard.enabled=true",
        "--set", "monitoring.prometheusNamespace=monitoring",
    ];
    let chart_dir = chart();
    let chart_path = chart_dir.to_str().unwrap();
    let mut args = vec!["template", "cistern", chart_path, "--namespace", "cistern-system"];
    args.extend(sets);
    let out = helm(&args);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = stdout_of(&out);
    let monitor = text.split("\n---").find(|d| d.contains("kind: PodMonitor")).expect("the PodMonitor");
    assert!(monitor.contains("port: web") && monitor.contains("role: master"), "{monitor}");
    let map = text.split("\n---").find(|d| d.contains("name: cistern-dashboard")).expect("the dashboard ConfigMap");
    let doc: serde_json::Value = serde_saphyr::from_str(map).unwrap();
    assert_eq!(doc["metadata"]["labels"]["grafana_dashboard"], "1");
    let dashboard: serde_json::Value = serde_json::from_str(doc["data"]["cistern.json"].as_str().unwrap()).expect("the dashboard is JSON");
    assert!(text.contains("--metrics-namespace") && text.contains("\"monitoring\""), "the operator is not told Prometheus's namespace");
    let mut lint = vec!["lint", chart_path];
    lint.extend(sets);
    assert!(helm(&lint).status.success(), "helm lint with monitoring on");

    // What the master exports, with every family present (a level, a hit ratio, UFS totals).
    let figures = cistern_master::Figures {
        namespace: "default".into(),
        dataset: "demo".into(),
        ufs_total_bytes: Some(1),
        ufs_files: Some(1),
        local_bytes: 1,
        ufs_bytes: 1,
        levels: vec![cistern_master::LevelFigures { worker: 0, medium: "MEM".into(), ..Default::default() }],
        latencies: ["worker", "fuse"]
            .iter()
            .map(|c| cistern_master::metrics::LatencyFigures { component: c.to_string(), instance: "0".into(), op: "read".into(), buckets: vec![1; 17], sum_seconds: 1.0 })
            .collect(),
        processes: vec![cistern_master::metrics::ProcessFigures { component: "worker".into(), instance: "0".into(), ..Default::default() }],
        ..Default::default()
    };
    let exported: std::collections::BTreeSet<String> = cistern_master::metrics::to_classic(&figures.encode())
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next().map(str::to_string))
        .collect();
    let mut queried = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for token in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
                if token.starts_with("cistern_") || token.starts_with("process_") {
                    queried.insert(token.to_string());
                }
            }
        }
    }
    assert!(queried.len() >= 10, "{queried:?}");
    let missing: Vec<&String> = queried.iter().filter(|q| !exported.contains(*q)).collect();
    assert!(missing.is_empty(), "the dashboard queries {missing:?}, which /metrics does not have: {exported:?}");
}
