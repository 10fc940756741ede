//! `cistern render` on the seeds' YAML and `cistern crd`: the objects the operator would
//! create, checked for what Fluid users rely on (names, the PV's CSI attributes, the FUSE
//! node selector, the master's meta-dir volume, worker anti-affinity and tier volumes), and
//! validated offline against the Kubernetes schemas with `kubernetes-validate --strict`
//! (`pip install kubernetes-validate`; `.ci/run` installs it).

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

fn seed(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/examples").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (../shared must be beside the checkout)", path.display()));
    // `<PLACEHOLDER>` → `placeholder`, as the api crate's seed tests fill them.
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start..].find('>') else { break };
        out.push_str(&rest[..start]);
        out.push_str(&rest[start + 1..start + len].to_lowercase().replace('_', "-"));
        rest = &rest[start + len + 1..];
    }
    out + rest
}

fn render(s: &Scratch, file: &str) -> (PathBuf, Vec<Value>) {
    let input = s.write(file, &seed(file));
    let out = s.cistern(&["render", "-f", input.to_str().unwrap(), "--image", "cistern:test"]);
    assert!(out.status.success(), "render {file}: {}", stderr_of(&out));
    let text = stdout_of(&out);
    let objects = objects_of(&text);
    (s.write(&format!("{file}.rendered.yaml"), &text), objects)
}

/// The objects of a multi-document YAML stream, as `cistern render` prints it.
fn objects_of(text: &str) -> Vec<Value> {
    text.split("\n---\n")
        .map(|d| d.trim_start_matches("---\n"))
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_saphyr::from_str(d).unwrap_or_else(|e| panic!("{e}\n{d}")))
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {:?}", objects.iter().map(|o| (o["kind"].clone(), o["metadata"]["name"].clone())).collect::<Vec<_>>()))
}

fn validate(path: &Path) {
    let out = Command::new("kubernetes-validate").arg("--strict").arg("--quiet").arg(path).output().unwrap_or_else(|e| {
        panic!("kubernetes-validate: {e}; install it with `pip install kubernetes-validate` (.ci/run does)")
    });
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && !text.contains("ERROR"), "{} is not valid Kubernetes:\n{text}", path.display());
}

#[test]
fn seed_002_renders_the_objects_fluid_would_create() {
    let s = Scratch::new();
    let (path, objects) = render(&s, "seed-002-jindo-meta-persist.yaml");
    let kinds: Vec<&str> = objects.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Secret", "ConfigMap", "Service", "StatefulSet", "StatefulSet", "DaemonSet", "PersistentVolume", "PersistentVolumeClaim", "NetworkPolicy"]);
    // Only the Dataset's own pods reach its master and workers; the operator its web port.
    let policy = find(&objects, "NetworkPolicy", "demo-cistern");
    assert_eq!(policy["spec"]["podSelector"]["matchLabels"]["fluid.io/dataset-id"], "default-demo");
    assert_eq!(policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"], serde_json::json!({"fluid.io/dataset-id": "default-demo"}));
    assert_eq!(policy["spec"]["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"], "cistern-system");
    assert_eq!(policy["spec"]["ingress"][1]["ports"][0]["port"], 19999);

    // The Dataset's credentials: every pod mounts its own role's files only.
    let creds = find(&objects, "Secret", "demo-cistern-credentials");
    for key in ["ref.key", "ca.pem", "master.key", "worker.key", "client.key"] {
        assert!(creds["data"][key].is_string(), "{key}");
    }
    let mounted = |kind: &str, name: &str| -> Vec<String> {
        let spec = &find(&objects, kind, name)["spec"]["template"]["spec"];
        let v = spec["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "credentials").expect("credentials volume");
        v["secret"]["items"].as_array().unwrap().iter().map(|i| i["key"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(mounted("StatefulSet", "demo-master"), ["ca.pem", "master.pem", "master.key", "ref.key"]);
    assert_eq!(mounted("StatefulSet", "demo-worker"), ["ca.pem", "worker.pem", "worker.key", "ref.key"]);
    assert_eq!(mounted("DaemonSet", "demo-fuse"), ["ca.pem", "client.pem", "client.key"], "a client never holds the reference key");

    let pv = find(&objects, "PersistentVolume", "default-demo");
    let csi = &pv["spec"]["csi"];
    assert_eq!(csi["driver"], "fuse.csi.fluid.io");
    assert_eq!(csi["volumeHandle"], "default-demo");
    let attrs = &csi["volumeAttributes"];
    assert_eq!((attrs["runtime_name"].as_str(), attrs["runtime_namespace"].as_str()), (Some("demo"), Some("default")));
    assert_eq!(attrs["mount_type"], "fuse.cistern");
    let fluid_path = attrs["fluid_path"].as_str().unwrap();
    let pvc = find(&objects, "PersistentVolumeClaim", "demo");
    assert_eq!(pvc["spec"]["volumeName"], "default-demo");
    assert_eq!(pvc["spec"]["accessModes"][0], "ReadOnlyMany");

    // The master keeps namespace.meta-dir on the runtime's PVC (seed 000/002).
    let master = &find(&objects, "StatefulSet", "demo-master")["spec"]["template"]["spec"];
    let pvc_volume = master["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "meta-vol").expect("meta-vol volume");
    assert_eq!(pvc_volume["persistentVolumeClaim"]["claimName"], "demo-jindo-master-meta");
    let mounts = master["containers"][0]["volumeMounts"].as_array().unwrap();
    assert!(mounts.iter().any(|m| m["name"] == "meta-vol" && m["mountPath"] == "/root/jindofsx-meta"), "{mounts:?}");
    assert!(!master["volumes"].as_array().unwrap().iter().any(|v| v["name"] == "meta"), "a hostPath meta dir beside the PVC");

    // Workers: `replicas`, one per node, the MEM tier in memory.
    let workers = &find(&objects, "StatefulSet", "demo-worker")["spec"];
    assert_eq!(workers["replicas"], 2);
    let anti = &workers["template"]["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(anti["topologyKey"], "kubernetes.io/hostname");
    let tier = workers["template"]["spec"]["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "tier-0-0").expect("tier volume");
    assert_eq!(tier["emptyDir"]["medium"], "Memory");
    // The quota plus the headroom the worker's own accounting does not count (records,
    // files readers still hold open), so the kubelet never evicts a worker for its cache.
    assert_eq!(tier["emptyDir"]["sizeLimit"], ((12u64 << 30) + (12u64 << 30) / 8).to_string());
    let args: Vec<&str> = workers["template"]["spec"]["containers"][0]["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(args.windows(2).any(|w| w == ["--master", "demo-master.default.svc:19998"]), "{args:?}");

    // FUSE runs where the CSI plugin labelled the node, and mounts at the PV's fluid_path.
    let fuse = &find(&objects, "DaemonSet", "demo-fuse")["spec"]["template"]["spec"];
    assert_eq!(fuse["nodeSelector"]["fluid.io/f-default-demo"], "true");
    let args: Vec<&str> = fuse["containers"][0]["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(args.windows(2).any(|w| w == ["--mountpoint", fluid_path]), "{args:?}");
    assert_eq!(fuse["containers"][0]["securityContext"]["privileged"], true);
    // The node's run directory (the worker's descriptor socket), never a tier.
    let host_paths: Vec<&str> = fuse["volumes"].as_array().unwrap().iter().filter_map(|v| v["hostPath"]["path"].as_str()).collect();
    assert!(host_paths.contains(&"/run/cistern/default-demo"), "{host_paths:?}");
    assert!(!host_paths.iter().any(|p| p.starts_with("/dev/shm")), "{host_paths:?}");

    // Secrets go by reference only: the access key is not in any object.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("secretName: access-key"), "the Secret is not mounted");
    validate(&path);
}

#[test]
fn every_seed_and_the_crds_are_valid_kubernetes() {
    let s = Scratch::new();
    for file in ["seed-001-jindo-fuse-recovery.yaml", "seed-002-jindo-meta-persist.yaml", "seed-004-juicefs.yaml"] {
        let (path, objects) = render(&s, file);
        // JuiceFS runs its own engine: no Cistern master, config, Service or credentials.
        assert_eq!(objects.len(), if file.contains("juicefs") { 4 } else { 9 }, "{file}");
        let text = std::fs::read_to_string(&path).unwrap();
        for secret in ["your-access-key-secret", "your-access-key-id"] {
            assert!(!text.contains(secret), "{file}: a secret value in the rendered objects");
        }
        validate(&path);
    }
    let crds = s.cistern(&["crd"]);
    assert!(crds.status.success());
    validate(&s.write("crds.yaml", &stdout_of(&crds)));
}

#[test]
fn a_dataload_renders_as_a_loader_job_against_the_master() {
    let s = Scratch::new();
    let load = "---\napiVersion: data.fluid.io/v1alpha1\nkind: DataLoad\nmetadata:\n  name: warm\nspec:\n  dataset:\n    name: demo\n    namespace: default\n  target:\n    - path: /train\n";
    let input = s.write("with-load.yaml", &(seed("seed-002-jindo-meta-persist.yaml") + load));
    let out = s.cistern(&["render", "-f", input.to_str().unwrap(), "--image", "cistern:test"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = stdout_of(&out);
    let objects = objects_of(&text);
    let job = find(&objects, "Job", "warm-loader");
    let spec = &job["spec"]["template"]["spec"];
    assert_eq!(spec["restartPolicy"], "Never");
    let args: Vec<&str> = spec["containers"][0]["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args[0], "load");
    assert!(args.windows(2).any(|w| w == ["--master", "demo-master.default.svc:19998"]), "{args:?}");
    assert_eq!(args.last(), Some(&"/train"));
    validate(&s.write("with-load.rendered.yaml", &text));
}

#[test]
fn a_bad_file_names_what_is_wrong() {
    let s = Scratch::new();
    let bad = s.write("bad.yaml", "apiVersion: data.fluid.io/v1alpha1\nkind: Dataset\nmetadata: {name: d}\nspec: {mounts: [{mountPoint: 'ftp://x'}]}\n---\napiVersion: data.fluid.io/v1alpha1\nkind: JindoRuntime\nmetadata: {name: d}\nspec: {}\n");
    let out = s.cistern(&["render", "-f", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(err.contains("ftp") && err.contains("mounts[0]"), "{err}");
}

/// `scripts/validate_crs.py`: the CRDs' schemas as an API server with strict field validation.
fn validate_crs(crds: &Path, resources: &[PathBuf]) -> (bool, String) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/validate_crs.py");
    let out = Command::new("python3").arg(script).arg(crds).args(resources).output().expect("python3");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_seed_custom_resources_validate_against_the_generated_crds() {
    let s = Scratch::new();
    let crds = s.write("crds.yaml", &stdout_of(&s.cistern(&["crd"])));
    let seeds: Vec<PathBuf> = ["seed-001-jindo-fuse-recovery.yaml", "seed-002-jindo-meta-persist.yaml", "seed-004-juicefs.yaml"]
        .iter()
        .map(|f| s.write(f, &seed(f)))
        .collect();
    let (ok, text) = validate_crs(&crds, &seeds);
    assert!(ok && text.contains("6 custom resources checked, 0 errors"), "{text}");
    // The check can fail: an unknown field and a wrong type are caught.
    let bad = s.write("bad.yaml", "apiVersion: data.fluid.io/v1alpha1\nkind: JindoRuntime\nmetadata: {name: x}\nspec: {replicas: two, tieredstor: {}}\n");
    let (ok, text) = validate_crs(&crds, &[bad]);
    assert!(!ok && text.contains("unknown field spec.tieredstor") && text.contains("replicas"), "{text}");
}

/// A Runtime is user input: hostPaths outside the allow-list (tiers, meta-dir, volumes) are
/// refused with the field and the fix, and a worker mounts only its Dataset's own directory
/// of each tier.
#[test]
fn host_paths_outside_the_allow_list_are_refused() {
    let s = Scratch::new();
    let runtime = |levels: &str, extra: &str| {
        format!(
            "apiVersion: data.fluid.io/v1alpha1\nkind: Dataset\nmetadata: {{name: hp}}\nspec:\n  mounts: [{{mountPoint: 'local:///data', name: d}}]\n---\napiVersion: data.fluid.io/v1alpha1\nkind: AlluxioRuntime\nmetadata: {{name: hp}}\nspec:\n  tieredstore:\n    levels: [{levels}]\n{extra}"
        )
    };
    for (yaml, field) in [
        (runtime("{mediumtype: SSD, path: /, quota: 1Gi}", ""), "spec.tieredstore.levels[0].path: `/` is not under a host path this cluster allows"),
        (runtime("{mediumtype: SSD, path: /etc, quota: 1Gi}", ""), "spec.tieredstore.levels[0].path: `/etc`"),
        (
            runtime("{mediumtype: SSD, path: /mnt/ssd, quota: 1Gi}", "  volumes: [{name: root, hostPath: {path: /}}]\n  fuse: {volumeMounts: [{name: root, mountPath: /host}]}\n"),
            "spec.volumes[0].hostPath.path: `/`",
        ),
        (runtime("{mediumtype: SSD, path: /mnt/ssd, quota: 1Gi}", "  master: {properties: {namespace.meta-dir: /root/meta}}\n"), "namespace.meta-dir: `/root/meta`"),
    ] {
        let file = s.write("hp.yaml", &yaml);
        let o = s.cistern(&["render", "-f", file.to_str().unwrap()]);
        assert!(!o.status.success() && stderr_of(&o).contains(field) && stderr_of(&o).contains("allowedHostPaths"), "{field}: {}", stderr_of(&o));
    }
    let file = s.write("ok.yaml", &runtime("{mediumtype: SSD, path: /mnt/ssd, quota: 1Gi}", ""));
    let o = s.cistern(&["render", "-f", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let text = stdout_of(&o);
    assert!(text.contains("path: /mnt/ssd/cistern/default-hp"), "the worker mounts its Dataset's own directory: {text}");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert!(!lines.windows(2).any(|w| w == ["path: /mnt/ssd", "type: DirectoryOrCreate"]), "the whole tier is mounted: {text}");
}

/// Every field that shapes a pod reaches the pods: resources (a worker's memory limit grows by
/// its MEM tier, which is charged to its memory), tolerations (the Dataset's go to master and
/// workers), the Dataset's node affinity (workers), pod metadata, image pull secrets and the
/// network mode; and what Cistern does not apply is said on stderr, not dropped.
#[test]
fn fields_that_shape_pods_reach_the_pods() {
    let s = Scratch::new();
    let yaml = r#"apiVersion: data.fluid.io/v1alpha1
kind: Dataset
metadata: {name: shaped}
spec:
  placement: Exclusive
  mounts: [{mountPoint: "local:///srv/data", name: data}]
  tolerations: [{key: cache, operator: Equal, value: "yes", effect: NoSchedule}]
  nodeAffinity:
    required:
      nodeSelectorTerms: [{matchExpressions: [{key: disk, operator: In, values: [ssd]}]}]
---
apiVersion: data.fluid.io/v1alpha1
kind: JindoRuntime
metadata: {name: shaped}
spec:
  replicas: 2
  networkmode: HostNetwork
  podMetadata: {labels: {team: data}}
  imagePullSecrets: [{name: registry}]
  runAs: {uid: 1201, gid: 1202, user: u, group: g}
  hadoopConfig: my-hadoop-conf
  tieredstore:
    levels: [{mediumtype: MEM, path: /dev/shm, volumeType: emptyDir, quota: 1Gi}]
  master:
    tolerations: [{key: master-only, operator: Exists}]
  worker:
    resources: {limits: {memory: 2Gi, cpu: "2"}, requests: {memory: 1Gi}}
    podMetadata: {annotations: {note: worker}}
  fuse:
    resources: {limits: {memory: 512Mi}}
    networkMode: ContainerNetwork
"#;
    let input = s.write("shaped.yaml", yaml);
    let out = s.cistern(&["render", "-f", input.to_str().unwrap(), "--image", "cistern:test"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let warnings = stderr_of(&out);
    assert!(warnings.contains("spec.hadoopConfig"), "unapplied fields not reported:\n{warnings}");
    assert!(!warnings.contains("spec.runAs"), "runAs is applied, not warned:\n{warnings}");
    let objects = objects_of(&stdout_of(&out));
    let pod = |name: &str| find(&objects, if name.ends_with("fuse") { "DaemonSet" } else { "StatefulSet" }, name)["spec"]["template"].clone();
    let worker = pod("shaped-worker");
    let limits = &worker["spec"]["containers"][0]["resources"]["limits"];
    assert_eq!(limits["memory"], (3u64 << 30).to_string(), "2Gi limit plus the 1Gi MEM tier");
    assert_eq!(worker["spec"]["containers"][0]["resources"]["requests"]["memory"], (2u64 << 30).to_string());
    assert_eq!(limits["cpu"], "2");
    assert_eq!(worker["spec"]["tolerations"][0]["key"], "cache");
    let term = &worker["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0];
    assert_eq!(term["matchExpressions"][0]["key"], "disk");
    let anti = worker["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"].as_array().unwrap().clone();
    assert_eq!(anti.len(), 2, "one worker per node, and placement: {anti:?}");
    assert_eq!(worker["metadata"]["labels"]["fluid.io/dataset-placement"], "Exclusive");
    assert_eq!(anti[1]["labelSelector"]["matchExpressions"][0]["operator"], "Exists", "Exclusive avoids every other Dataset's workers");
    assert_eq!(worker["metadata"]["labels"]["team"], "data");
    assert_eq!(worker["metadata"]["labels"]["role"], "worker", "selector labels are not overridden");
    assert_eq!(worker["metadata"]["annotations"]["note"], "worker");
    assert_eq!(worker["spec"]["imagePullSecrets"][0]["name"], "registry");
    assert_eq!((worker["spec"]["hostNetwork"].as_bool(), worker["spec"]["dnsPolicy"].as_str()), (Some(true), Some("ClusterFirstWithHostNet")));
    // runAs: master and workers run as the user, after an init container hands them their
    // directories; the FUSE client stays root (it mounts).
    for (template, dirs) in [(&worker, vec!["/dev/shm", "/run/cistern"]), (&pod("shaped-master"), vec!["/dev/shm/cistern-meta/default-shaped"])] {
        let ctx = &template["spec"]["containers"][0]["securityContext"];
        assert_eq!((ctx["runAsUser"].as_i64(), ctx["runAsGroup"].as_i64(), ctx["runAsNonRoot"].as_bool()), (Some(1201), Some(1202), Some(true)), "{ctx}");
        assert_eq!(template["spec"]["securityContext"]["fsGroup"], 1202, "the credentials Secret is readable by the group");
        let init = &template["spec"]["initContainers"][0];
        assert_eq!(init["name"], "own-dirs");
        assert_eq!(init["securityContext"]["capabilities"]["add"], serde_json::json!(["CHOWN", "DAC_READ_SEARCH"]));
        let args: Vec<&str> = init["args"].as_array().unwrap().iter().filter_map(|a| a.as_str()).collect();
        assert_eq!(args[2], "1201:1202");
        for d in dirs {
            assert!(args[3..].iter().any(|a| a.starts_with(d)), "{d} not handed over: {args:?}");
        }
    }
    let master = pod("shaped-master");
    let keys: Vec<&str> = master["spec"]["tolerations"].as_array().unwrap().iter().filter_map(|t| t["key"].as_str()).collect();
    assert_eq!(keys, ["master-only", "cache"]);
    let fuse = pod("shaped-fuse");
    assert_eq!(fuse["spec"]["containers"][0]["resources"]["limits"]["memory"], "512Mi");
    assert!(fuse["spec"]["hostNetwork"].is_null(), "the FUSE pod's own networkMode wins");
    assert!(fuse["spec"]["tolerations"].is_null(), "the Dataset's tolerations place the cache, not FUSE");
    assert!(fuse["spec"]["containers"][0]["securityContext"]["runAsUser"].is_null() && fuse["spec"]["initContainers"].is_null());
    validate(&s.write("shaped.rendered.yaml", &stdout_of(&out)));

    // Two masters are refused with the field named (a quorum of two survives no loss), never
    // silently run as one.
    let two = s.write("two.yaml", &yaml.replace("    tolerations: [{key: master-only, operator: Exists}]\n", "    replicas: 2\n"));
    let out = s.cistern(&["render", "-f", two.to_str().unwrap()]);
    assert!(!out.status.success() && stderr_of(&out).contains("spec.master.replicas: 2 masters"), "{}", stderr_of(&out));
}

/// A tier's `volumeSource` (Fluid inlines a Kubernetes VolumeSource): emptyDir settings are
/// kept (with at least the headroom the tier's accounting needs) and a PVC backs a tier.
#[test]
fn tier_volume_sources_are_honoured() {
    let s = Scratch::new();
    let yaml = r#"apiVersion: data.fluid.io/v1alpha1
kind: Dataset
metadata: {name: vs}
spec:
  mounts: [{mountPoint: "local:///srv/data", name: data}]
---
apiVersion: data.fluid.io/v1alpha1
kind: AlluxioRuntime
metadata: {name: vs}
spec:
  tieredstore:
    levels:
      - {mediumtype: MEM, path: /dev/shm, quota: 1Gi, volumeType: emptyDir, volumeSource: {emptyDir: {medium: Memory, sizeLimit: 4Gi}}}
      - {mediumtype: SSD, path: /mnt/cache, quota: 10Gi, volumeSource: {persistentVolumeClaim: {claimName: fast-disk}}}
"#;
    let input = s.write("vs.yaml", yaml);
    let out = s.cistern(&["render", "-f", input.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let objects = objects_of(&stdout_of(&out));
    let volumes = find(&objects, "StatefulSet", "vs-worker")["spec"]["template"]["spec"]["volumes"].as_array().unwrap().clone();
    let tier = |n: &str| volumes.iter().find(|v| v["name"] == n).cloned().unwrap();
    assert_eq!(tier("tier-0-0")["emptyDir"]["sizeLimit"], (4u64 << 30).to_string(), "the user's larger limit");
    assert_eq!(tier("tier-1-0")["persistentVolumeClaim"]["claimName"], "fast-disk");
    validate(&s.write("vs.rendered.yaml", &stdout_of(&out)));
}

/// Fluid's documentation samples (tests/fixtures): every custom resource passes the generated
/// CRDs as strict validation would, offline; every Dataset with its runtime renders to valid
/// Kubernetes objects, or is refused naming the field (a tier outside `allowedHostPaths`).
#[test]
fn fluid_documentation_samples_validate_and_render_offline() {
    let s = Scratch::new();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let mut files: Vec<PathBuf> = ["fluid-docs", "jindo-docs"].iter().flat_map(|d| std::fs::read_dir(root.join(d)).unwrap().map(|e| e.unwrap().path())).collect();
    files.sort();
    let crds = s.write("crds.yaml", &stdout_of(&s.cistern(&["crd"])));
    let (ok, text) = validate_crs(&crds, &files);
    assert!(ok, "{text}");
    let checked: usize = text.lines().last().and_then(|l| l.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(checked >= 60, "{text}");
    let mut rendered = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let docs: Vec<Value> = text.split("\n---").filter_map(|d| serde_saphyr::from_str::<Value>(d).ok()).filter(|v| v.is_object()).collect();
        let named = |kind: &dyn Fn(&str) -> bool| -> Vec<String> {
            docs.iter().filter(|d| d["kind"].as_str().is_some_and(kind)).filter_map(|d| d["metadata"]["name"].as_str().map(String::from)).collect()
        };
        let runtimes = named(&|k: &str| k.ends_with("Runtime"));
        for name in named(&|k: &str| k == "Dataset").into_iter().filter(|n| runtimes.contains(n)) {
            let out = s.cistern(&["render", "-f", file.to_str().unwrap(), "--name", &name, "--image", "cistern:test"]);
            if out.status.success() {
                validate(&s.write(&format!("{name}-{rendered}.yaml"), &stdout_of(&out)));
                rendered += 1;
            } else {
                let err = stderr_of(&out);
                assert!(err.contains("allowedHostPaths") || err.contains("spec.master.replicas"), "{}: {name}: {err}", file.display());
            }
        }
    }
    assert!(rendered >= 12, "only {rendered} Datasets rendered");
}

/// `master.replicas: 3`: one StatefulSet of three masters, each with its own claim from the
/// template `meta`, finding the others by name under the headless Service, a
/// PodDisruptionBudget keeping two, and workers and FUSE clients given every master.
#[test]
fn three_masters_render_a_quorum_with_a_claim_each() {
    let s = Scratch::new();
    let yaml = "apiVersion: data.fluid.io/v1alpha1
kind: Dataset
metadata: {name: ha, namespace: team}
spec:
  mounts: [{mountPoint: 'https://example.com/data/', name: web}]
---
apiVersion: data.fluid.io/v1alpha1
kind: AlluxioRuntime
metadata: {name: ha, namespace: team}
spec:
  replicas: 2
  master:
    replicas: 3
    properties:
      namespace.meta-dir: /var/lib/cistern-meta
      cistern.master.meta.size: 5Gi
  tieredstore:
    levels: [{mediumtype: MEM, path: /dev/shm, quota: 1Gi}]
";
    let input = s.write("ha.yaml", yaml);
    let out = s.cistern(&["render", "-f", input.to_str().unwrap(), "--image", "cistern:test"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = stdout_of(&out);
    let objects = objects_of(&text);
    validate(&s.write("ha.rendered.yaml", &text));
    let master = find(&objects, "StatefulSet", "ha-master");
    assert_eq!(master["spec"]["replicas"], 3);
    assert_eq!(master["spec"]["podManagementPolicy"], "Parallel");
    let claim = &master["spec"]["volumeClaimTemplates"][0];
    assert_eq!(claim["metadata"]["name"], "meta");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "5Gi");
    let c = &master["spec"]["template"]["spec"]["containers"][0];
    assert!(c["volumeMounts"].as_array().unwrap().iter().any(|m| m["name"] == "meta" && m["mountPath"] == "/var/lib/cistern-meta"), "{c}");
    let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let list = "ha-master-0.ha-master.team.svc:19998,ha-master-1.ha-master.team.svc:19998,ha-master-2.ha-master.team.svc:19998";
    assert!(args.windows(2).any(|w| w == ["--masters", list]), "{args:?}");
    assert!(c["env"].as_array().unwrap().iter().any(|e| e["name"] == "CISTERN_MASTER_ID"), "{c}");
    // No hostPath for the store: each master's is its claim.
    let vols = master["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
    assert!(!vols.iter().any(|v| v["hostPath"]["path"] == "/var/lib/cistern-meta"), "{vols:?}");
    assert_eq!(find(&objects, "Service", "ha-master")["spec"]["publishNotReadyAddresses"], true);
    let pdb = find(&objects, "PodDisruptionBudget", "ha-master");
    assert_eq!(pdb["spec"]["minAvailable"], 2);
    for (kind, name) in [("StatefulSet", "ha-worker"), ("DaemonSet", "ha-fuse")] {
        let args = &find(&objects, kind, name)["spec"]["template"]["spec"]["containers"][0]["args"];
        assert!(args.as_array().unwrap().windows(2).any(|w| w[0] == "--master" && w[1] == list), "{kind}: {args}");
    }

    // Seed 002's single claim at the meta dir cannot serve three masters: refused, with the fix.
    let one_claim = yaml.replace(
        "    properties:\n",
        "    volumeMounts: [{name: meta, mountPath: /var/lib/cistern-meta}]\n    properties:\n",
    ) + "  volumes: [{name: meta, persistentVolumeClaim: {claimName: ha-meta}}]\n";
    let input = s.write("ha-one-claim.yaml", &one_claim);
    let out = s.cistern(&["render", "-f", input.to_str().unwrap(), "--image", "cistern:test"]);
    let err = stderr_of(&out);
    assert!(!out.status.success() && err.contains("spec.master.volumeMounts") && err.contains("meta-ha-master-N"), "{err}");
}
