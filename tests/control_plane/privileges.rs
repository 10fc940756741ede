//! Least privilege (`kubectl auth can-i` against the README) and csi-sanity.

use crate::harness::*;
use crate::support;

#[test]
fn csi_sanity_passes_against_cistern_csi() {
    let c = cluster();
    let dir = c.dir.join("csi-sanity");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let endpoint = format!("unix://{}/csi.sock", dir.display());
    let mut plugin = Command::new(support::cistern_bin())
        .args(["csi", "--endpoint", &endpoint, "--node-id", "kwok-node-0", "--stage-timeout-secs", "2"])
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env("KUBECONFIG", &c.kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(20, "the CSI socket", || dir.join("csi.sock").exists());
    // A node-only plugin: the Controller service is optional in the CSI spec, so its tests
    // are skipped, and so are the two Node tests that make their volume with CreateVolume.
    let out = Command::new(c.dir.join("bin/csi-sanity"))
        .arg(format!("--csi.endpoint={endpoint}"))
        .arg(format!("--csi.stagingdir={}/staging", dir.display()))
        .arg(format!("--csi.mountdir={}/target", dir.display()))
        .arg("-ginkgo.no-color")
        .arg("-ginkgo.skip=Controller Server|should remove target path|NodeStageVolume should fail when no volume capability is provided")
        .output()
        .unwrap();
    let _ = plugin.kill();
    let _ = plugin.wait();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "csi-sanity:\n{text}");
    let ran = text.lines().find(|l| l.contains("Passed")).unwrap_or_default().to_string();
    eprintln!("csi-sanity: {ran}");
    assert!(ran.contains(" 0 Failed"), "{ran}");
    // Identity and Node tests ran: at least 14 specs passed.
    let passed: u32 = ran.split_whitespace().zip(ran.split_whitespace().skip(1)).find(|(_, w)| *w == "Passed").and_then(|(n, _)| n.parse().ok()).unwrap_or(0);
    assert!(passed >= 14, "{ran}");
}

/// `(resource, verbs)` pairs a table of the README grants `component` at `scope`.
fn readme_grants(component: &str, scope: &str) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    let section = readme.split("### Least privilege").nth(1).expect("README: ### Least privilege");
    let mut out = std::collections::BTreeMap::new();
    for line in section.lines().take_while(|l| !l.starts_with("## ") && !l.starts_with("### ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | component | API group | resources | verbs | scope | why |
        if cells.len() < 7 || cells[1] != component || cells[5] != scope {
            continue;
        }
        let group = cells[2].trim_matches('`');
        for resource in cells[3].split(',').map(|r| r.trim().trim_matches('`')) {
            // kubectl's spelling: `resource.group/subresource`.
            let (base, sub) = resource.split_once('/').map_or((resource, String::new()), |(b, s)| (b, format!("/{s}")));
            let name = if group == "core" { resource.to_string() } else { format!("{base}.{group}{sub}") };
            let verbs: std::collections::BTreeSet<String> = cells[4].split(',').map(|v| v.trim().trim_matches('`').to_string()).collect();
            out.insert(name, verbs);
        }
    }
    assert!(!out.is_empty() || scope == "namespace", "README has no {component} rows of scope {scope}");
    out
}

/// What `kubectl auth can-i --list` says `kubeconfig` may do in `ns`, without what every
/// authenticated user may (self reviews, discovery URLs).
fn can_i(c: &Cluster, kubeconfig: &Path, ns: &str) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let text = c.try_kubectl_as(kubeconfig, &["auth", "can-i", "--list", "-n", ns]).unwrap();
    let mut out: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = std::collections::BTreeMap::new();
    for line in text.lines().skip(1) {
        let Some(open) = line.find('[') else { continue };
        let verbs_start = line.rfind('[').unwrap();
        let resource = line[..open].split_whitespace().next().unwrap_or_default().to_string();
        if resource.is_empty() || resource.starts_with("selfsubject") {
            continue; // granted to every authenticated user (system:basic-user)
        }
        let verbs = line[verbs_start + 1..line.rfind(']').unwrap()].split_whitespace().map(String::from);
        out.entry(resource).or_default().extend(verbs);
    }
    out
}

#[test]
fn each_service_account_can_do_what_the_readme_table_says_and_no_more() {
    let inst = installed();
    let c = cluster();
    let csi = c.service_account_kubeconfig(CSI_NAMESPACE, "cistern-csi");
    for (component, kubeconfig, home) in [("operator", &inst.operator_kubeconfig, SYSTEM), ("csi", &csi, CSI_NAMESPACE)] {
        let cluster_wide = readme_grants(component, "cluster");
        // Elsewhere: the cluster-wide grants only.
        assert_eq!(can_i(c, kubeconfig, "default"), cluster_wide, "{component}: the chart's grants (left) differ from the README's table (right)");
        // At home: plus what its Role grants there.
        let mut at_home = cluster_wide.clone();
        for (resource, verbs) in readme_grants(component, "namespace") {
            at_home.entry(resource).or_default().extend(verbs);
        }
        assert_eq!(can_i(c, kubeconfig, home), at_home, "{component} in {home}: the chart (left) against the README (right)");
    }
    // The operator reads no Secret in bulk.
    let listed = c.try_kubectl_as(&inst.operator_kubeconfig, &["get", "secrets", "-n", "default"]);
    assert!(listed.unwrap_err().contains("forbidden"), "the operator lists Secrets");
}
