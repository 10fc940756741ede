//! The chart, the examples, scaling, deletion, failover, a real master's figures and
//! host-network ports.

use crate::harness::*;
use crate::support;

#[test]
fn the_chart_installs_and_its_crds_are_established() {
    installed();
    let c = cluster();
    for crd in ["datasets", "jindoruntimes", "alluxioruntimes", "juicefsruntimes", "dataloads"] {
        let o = json_of(c, &["crd", &format!("{crd}.data.fluid.io")]);
        let established = o["status"]["conditions"].as_array().unwrap().iter().any(|c| c["type"] == "Established" && c["status"] == "True");
        assert!(established, "{crd} not established");
        assert!(o["spec"]["names"]["categories"].as_array().is_some_and(|c| c.iter().any(|x| x == "fluid")), "{crd}: no category fluid");
    }
    // The operator's Deployment passes Pod Security `restricted` (its pod was admitted);
    // the privileged CSI plugin lives in a namespace of its own.
    wait_until(60, "the operator's pod", || !items(c, &["pods", "-n", SYSTEM, "-l", "app.kubernetes.io/component=operator"]).is_empty());
    wait_until(60, "the CSI plugin's pods", || items(c, &["pods", "-n", CSI_NAMESPACE, "-l", "app.kubernetes.io/component=csi"]).len() == 3);
    let restricted = json_of(c, &["namespace", SYSTEM])["metadata"]["labels"]["pod-security.kubernetes.io/enforce"].clone();
    assert_eq!(restricted, "restricted");
    // A privileged pod is refused there: the label is enforced, not decorative.
    let privileged = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"probe"},"spec":{"containers":[{"name":"c","image":"x","securityContext":{"privileged":true}}]}}"#;
    let refused = c.try_kubectl_in(&["apply", "-n", SYSTEM, "-f", "-"], privileged).unwrap_err();
    assert!(refused.contains("violates PodSecurity"), "{refused}");
}

#[test]
fn every_example_applies_strictly_binds_and_becomes_ready() {
    let _ = installed();
    let c = cluster();
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples()).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 4, "examples missing from {}", examples().display());
    for file in &files {
        let stem = file.file_stem().unwrap().to_str().unwrap().to_lowercase().replace('_', "-");
        let ns = c.namespace(&format!("ex-{}", &stem[..stem.len().min(50)]));
        let text = std::fs::read_to_string(file).unwrap();
        if text.contains("storageClassName: alicloud-disk-topology-alltype") {
            // Seed 002's claim names a cloud storage class; here a PV of that class stands in.
            let pv = format!(
                r#"{{"apiVersion":"v1","kind":"PersistentVolume","metadata":{{"name":"{ns}-meta"}},"spec":{{"capacity":{{"storage":"30Gi"}},"accessModes":["ReadWriteOnce"],"storageClassName":"alicloud-disk-topology-alltype","hostPath":{{"path":"/var/lib/cistern/{ns}"}},"claimRef":{{"namespace":"{ns}","name":"demo-jindo-master-meta"}}}}}}"#
            );
            let _ = c.try_kubectl(&["delete", "pv", &format!("{ns}-meta"), "--ignore-not-found"]);
            c.kubectl_in(&["apply", "-f", "-"], &pv);
        }
        let out = c.try_kubectl(&["apply", "--validate=strict", "--server-side", "-n", &ns, "-f", file.to_str().unwrap()]);
        assert!(out.is_ok(), "{}: {}", file.display(), out.unwrap_err());
        let objects = fluid_objects(&text);
        for (kind, name) in objects.iter().filter(|(k, _)| k.ends_with("Runtime")) {
            assert!(objects.iter().any(|(k, n)| k == "Dataset" && n == name), "{}: {kind} {name} without its Dataset", file.display());
            wait_until(60, &format!("Dataset {ns}/{name} Bound"), || phase_of(c, "dataset", &ns, name) == "Bound");
            wait_runtime_ready(c, kind, &ns, name);
            assert_rendered_objects(c, &ns, name, kind);
            // What users type: Fluid's columns from the real kubectl.
            let table = c.kubectl(&["get", "dataset", name, "-n", &ns]);
            for column in ["UFS TOTAL SIZE", "CACHED", "CACHE CAPACITY", "CACHED PERCENTAGE", "PHASE", "AGE"] {
                assert!(table.contains(column), "kubectl get dataset lacks {column}:\n{table}");
            }
            assert!(table.contains("Bound"), "{table}");
            let everything = c.kubectl(&["get", "fluid", "-n", &ns]);
            assert!(everything.contains(&format!("dataset.data.fluid.io/{name}")), "kubectl get fluid:\n{everything}");
            assert!(everything.contains(&format!("{}.data.fluid.io/{name}", kind.to_lowercase())), "kubectl get fluid:\n{everything}");
        }
    }
}

#[test]
fn kubectl_scale_changes_the_workers_and_locality_labels_follow_them() {
    let _ = installed();
    let c = cluster();
    let ns = c.namespace("scale");
    apply_demo(c, &ns, 1);
    wait_runtime_ready(c, "JindoRuntime", &ns, "demo");
    wait_until(60, "one cache node labelled", || cache_nodes(c, &ns, "demo").len() == 1);
    c.kubectl(&["scale", "jindoruntime", "demo", "-n", &ns, "--replicas=3"]);
    wait_until(90, "three workers running", || running_workers(c, &ns).len() == 3);
    wait_until(60, "three ready workers in the status", || {
        c.get_json(&["jindoruntime", "demo", "-n", &ns]).is_some_and(|o| o["status"]["workerNumberReady"] == 3 && o["status"]["workerPhase"] == "Ready")
    });
    // One worker per node (anti-affinity), and every worker's node carries the label.
    wait_until(60, "three cache nodes labelled", || cache_nodes(c, &ns, "demo") == running_workers(c, &ns));
    assert_eq!(cache_nodes(c, &ns, "demo").len(), 3);
    c.kubectl(&["scale", "jindoruntime", "demo", "-n", &ns, "--replicas=1"]);
    wait_until(90, "one worker left", || running_workers(c, &ns).len() == 1);
    wait_until(60, "labels only where the worker runs", || cache_nodes(c, &ns, "demo") == running_workers(c, &ns));
}

#[test]
fn deleting_a_dataset_waits_while_a_pod_uses_it_and_events_say_why() {
    let _ = installed();
    let c = cluster();
    let ns = c.namespace("deletion");
    apply_demo(c, &ns, 1);
    wait_until(60, "Bound", || phase_of(c, "dataset", &ns, "demo") == "Bound");
    let app = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"app"},"spec":{"containers":[{"name":"app","image":"busybox","volumeMounts":[{"name":"data","mountPath":"/data"}]}],"volumes":[{"name":"data","persistentVolumeClaim":{"claimName":"demo"}}]}}"#;
    c.kubectl_in(&["apply", "-n", &ns, "-f", "-"], app);
    wait_until(60, "the app pod running", || phase_of(c, "pod", &ns, "app") == "Running");
    c.kubectl(&["delete", "dataset", "demo", "-n", &ns, "--wait=false"]);
    wait_until(30, "the DatasetInUse event", || c.kubectl(&["describe", "dataset", "demo", "-n", &ns]).contains("DatasetInUse"));
    let described = c.kubectl(&["describe", "dataset", "demo", "-n", &ns]);
    assert!(described.contains("Bound") && described.contains("in use by pod app"), "kubectl describe dataset:\n{described}");
    assert!(c.get_json(&["dataset", "demo", "-n", &ns]).is_some(), "deleted while a pod uses its PVC");
    c.kubectl(&["delete", "pod", "app", "-n", &ns, "--wait=false"]);
    wait_until(60, "the Dataset gone once the pod is", || c.get_json(&["dataset", "demo", "-n", &ns]).is_none());
}

#[test]
fn a_killed_operator_is_replaced_by_the_lease_holder_and_nothing_is_duplicated_or_orphaned() {
    let inst = installed();
    let c = cluster();
    wait_until(60, "operator-a holding the Lease", || lease_holder(c) == "operator-a");
    // A second replica waits: only the Lease holder reconciles.
    start_operator(c, inst, "operator-b");
    wait_until(30, "operator-b waiting for the Lease", || operator_log("operator-b").contains("waiting for the Lease"));
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(lease_holder(c), "operator-a");
    assert!(!operator_log("operator-b").contains("holding the Lease"), "two replicas reconciling");

    let ns = c.namespace("failover");
    apply_demo(c, &ns, 2);
    // SIGKILL mid-reconcile: right after the first of its objects is applied.
    wait_until(30, "the first rendered object", || c.try_kubectl(&["get", "configmap", "demo-cistern-config", "-n", &ns]).is_ok());
    kill9_operator("operator-a");
    wait_until(60, "operator-b holding the Lease", || lease_holder(c) == "operator-b");
    wait_until(60, "Bound", || phase_of(c, "dataset", &ns, "demo") == "Bound");
    wait_runtime_ready(c, "JindoRuntime", &ns, "demo");
    assert_rendered_objects(c, &ns, "demo", "JindoRuntime");
    let secrets: Vec<Value> = items(c, &["secrets", "-n", &ns]).into_iter().filter(|s| s["metadata"]["name"] == "demo-cistern-credentials").collect();
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0]["metadata"]["ownerReferences"][0]["kind"], "JindoRuntime", "the credentials Secret is owned");
    // Every object with the Dataset's labels is owned (the PV is cluster-scoped: one, ours).
    for o in items(c, &["all,configmaps,secrets,networkpolicies,persistentvolumeclaims", "-n", &ns, "-l", "release=demo"]) {
        let kind = o["kind"].as_str().unwrap_or_default();
        if kind == "Pod" || kind == "ControllerRevision" {
            continue; // owned by their StatefulSet or DaemonSet
        }
        assert!(o["metadata"]["ownerReferences"].is_array(), "orphan: {kind} {}", o["metadata"]["name"]);
    }
    assert_eq!(items(c, &["pv", "-l", &format!("fluid.io/dataset-id={ns}-demo")]).len(), 1);

    // The old leader comes back as a follower.
    start_operator(c, inst, "operator-a2");
    wait_until(30, "operator-a2 waiting", || operator_log("operator-a2").contains("waiting for the Lease"));
    assert_eq!(lease_holder(c), "operator-b");
    // Events explain what happened, as Fluid users expect from `kubectl describe`.
    let described = c.kubectl(&["describe", "jindoruntime", "demo", "-n", &ns]);
    assert!(described.contains("RuntimeReady"), "kubectl describe jindoruntime:\n{described}");
}

#[test]
fn the_operator_copies_a_real_masters_figures_into_the_statuses() {
    let inst = installed();
    let c = cluster();
    let ns = c.namespace("status-sync");
    let s = support::Scratch::new();
    let data = s.path("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(data.join("a.bin"), vec![7u8; 3 << 20]).unwrap();
    std::fs::write(data.join("sub/b.bin"), vec![9u8; 1 << 20]).unwrap();
    let yaml = format!(
        "apiVersion: data.fluid.io/v1alpha1\nkind: Dataset\nmetadata:\n  name: demo\n  namespace: {ns}\nspec:\n  mounts:\n    - mountPoint: local://{}\n      name: data\n---\napiVersion: data.fluid.io/v1alpha1\nkind: JindoRuntime\nmetadata:\n  name: demo\n  namespace: {ns}\nspec:\n  replicas: 1\n  tieredstore:\n    levels:\n      - mediumtype: MEM\n        path: /dev/shm\n        volumeType: emptyDir\n        quota: 1Gi\n",
        data.display()
    );
    let file = s.write("demo.yaml", &yaml);
    // The master the pod would run, as a process on this host (kwok pods run nothing).
    let master = support::MasterProcess::start(&s, &file);
    let port = master.web_port;
    let mut map = std::fs::OpenOptions::new().append(true).open(&inst.master_map).unwrap();
    std::io::Write::write_all(&mut map, format!("{ns}/demo http://127.0.0.1:{port}\n").as_bytes()).unwrap();
    c.kubectl_in(&["apply", "--validate=strict", "-f", "-"], &yaml);
    wait_until(90, "the master's figures in the Dataset's status", || {
        c.get_json(&["dataset", "demo", "-n", &ns]).is_some_and(|d| d["status"]["fileNum"] == "2" && d["status"]["ufsTotal"] == "4.00MiB")
    });
    drop(master);
    let wide = c.kubectl(&["get", "dataset", "demo", "-n", &ns, "-o", "wide"]);
    assert!(wide.contains("4.00MiB") && wide.contains("TOTAL FILES"), "kubectl get dataset -o wide:\n{wide}");
}

/// Host-network Datasets get node ports of their own from the operator (three each, recorded
/// on the runtime), so two of them on one node never collide; the pods listen there.
#[test]
fn host_network_datasets_get_ports_that_do_not_collide() {
    let _ = installed();
    let c = cluster();
    let ns = c.namespace("host-network");
    for name in ["one", "two"] {
        let yaml = demo_yaml(1).replace("name: demo", &format!("name: {name}")).replace("spec:\n  replicas: 1", "spec:\n  networkmode: HostNetwork\n  replicas: 1");
        c.kubectl_in(&["apply", "--validate=strict", "-n", &ns, "-f", "-"], &yaml);
    }
    let ports = |name: &str| -> Option<Vec<u16>> {
        let rt = c.get_json(&["jindoruntime", name, "-n", &ns])?;
        let text = rt["metadata"]["annotations"]["cistern.io/host-ports"].as_str()?.to_string();
        Some(text.split(',').filter_map(|kv| kv.split_once('=')?.1.parse().ok()).collect())
    };
    wait_until(60, "both runtimes' ports", || ports("one").is_some() && ports("two").is_some());
    let (one, two) = (ports("one").unwrap(), ports("two").unwrap());
    assert_eq!((one.len(), two.len()), (3, 3));
    assert!(one.iter().all(|p| !two.contains(p) && (20000..=26000).contains(p)), "{one:?} {two:?}");
    wait_until(60, "the master listening on its port", || {
        c.get_json(&["statefulset", "one-master", "-n", &ns]).is_some_and(|s| {
            let pod = &s["spec"]["template"]["spec"];
            pod["hostNetwork"] == true && pod["containers"][0]["ports"][0]["containerPort"] == one[0]
        })
    });
    let policy = json_of(c, &["networkpolicy", "two-cistern", "-n", &ns]);
    assert_eq!(policy["spec"]["ingress"][0]["ports"][2]["port"], two[2]);
}

/// `cleanCachePolicy`: a deleted runtime's hostPath cache is emptied on every node that held
/// it, by one Job per node bounded by the policy, before the runtime goes; the nodes lose the
/// cache label and an Event says where it was cleaned.
#[test]
fn a_deleted_runtime_cleans_its_cache_off_the_nodes_within_its_policy() {
    let _ = installed();
    let c = cluster();
    let ns = c.namespace("clean");
    let yaml = demo_yaml(2)
        .replace("        path: /dev/shm\n        volumeType: emptyDir\n", "        path: /var/cache/cistern\n")
        .replace("  replicas: 2\n", "  replicas: 2\n  cleanCachePolicy: {gracePeriodSeconds: 30, maxRetryAttempts: 1}\n");
    c.kubectl_in(&["apply", "--validate=strict", "-n", &ns, "-f", "-"], &yaml);
    wait_until(90, "two workers running", || running_workers(c, &ns).len() == 2);
    wait_until(60, "two cache nodes labelled", || cache_nodes(c, &ns, "demo").len() == 2);
    let held = cache_nodes(c, &ns, "demo");
    wait_until(30, "the cleanup finalizer on the runtime", || {
        c.get_json(&["jindoruntime", "demo", "-n", &ns]).is_some_and(|o| o["metadata"]["finalizers"].to_string().contains("cistern-cache-cleanup"))
    });
    c.kubectl(&["delete", "jindoruntime", "demo", "-n", &ns, "--wait=false"]);
    let jobs = support::eventually(60, "one clean-cache Job per cache node", || {
        let jobs = items(c, &["jobs", "-n", &ns, "-l", "release=demo,role=clean-cache"]);
        (jobs.len() == 2).then_some(jobs)
    });
    let mut pinned: Vec<String> = Vec::new();
    for job in &jobs {
        assert_eq!((job["spec"]["activeDeadlineSeconds"].as_i64(), job["spec"]["backoffLimit"].as_i64()), (Some(30), Some(1)), "{job}");
        let pod = &job["spec"]["template"]["spec"];
        pinned.push(pod["nodeName"].as_str().unwrap().to_string());
        let paths: Vec<&str> = pod["volumes"].as_array().unwrap().iter().filter_map(|v| v["hostPath"]["path"].as_str()).collect();
        assert_eq!(paths, [format!("/var/cache/cistern/cistern/{ns}-demo")], "only the Dataset's own directory");
    }
    pinned.sort();
    assert_eq!(pinned, held, "one Job on each node that held the cache");
    assert!(running_workers(c, &ns).is_empty(), "the workers stop before their cache is removed");
    wait_until(90, "the runtime gone once its cache is cleaned", || c.get_json(&["jindoruntime", "demo", "-n", &ns]).is_none());
    assert!(cache_nodes(c, &ns, "demo").is_empty(), "the nodes keep the cache label");
    let events = c.kubectl(&["get", "events", "-n", &ns, "--field-selector", "reason=CacheCleaned"]);
    assert!(events.contains("emptied /var/cache/cistern/cistern/"), "{events}");
}

/// `master.replicas: 3` on the cluster: three master pods, each bound to its own claim made
/// from the StatefulSet's template (the PVs are made here: the test cluster has no
/// provisioner), a PodDisruptionBudget keeping two, and the runtime's status counting ready
/// and desired masters as Fluid's wide columns do.
#[test]
fn three_masters_get_a_claim_each_a_budget_and_their_count_in_the_status() {
    let _ = installed();
    let c = cluster();
    let ns = c.namespace("ha");
    for i in 0..3 {
        let pv = format!(
            r#"{{"apiVersion":"v1","kind":"PersistentVolume","metadata":{{"name":"{ns}-meta-{i}"}},"spec":{{"capacity":{{"storage":"2Gi"}},"accessModes":["ReadWriteOnce"],"persistentVolumeReclaimPolicy":"Delete","hostPath":{{"path":"/var/lib/cistern-test/{ns}-{i}"}},"claimRef":{{"namespace":"{ns}","name":"meta-demo-master-{i}"}}}}}}"#
        );
        c.kubectl_in(&["apply", "-f", "-"], &pv);
    }
    let yaml = demo_yaml(1).replace("  replicas: 1\n", "  replicas: 1\n  master:\n    replicas: 3\n");
    c.kubectl_in(&["apply", "--validate=strict", "-n", &ns, "-f", "-"], &yaml);
    wait_until(120, "three masters ready in the status", || {
        c.get_json(&["jindoruntime", "demo", "-n", &ns]).is_some_and(|o| {
            o["status"]["masterNumberReady"] == 3 && o["status"]["desiredMasterNumberScheduled"] == 3 && o["status"]["masterPhase"] == "Ready"
        })
    });
    for i in 0..3 {
        let claim = json_of(c, &["pvc", &format!("meta-demo-master-{i}"), "-n", &ns]);
        assert_eq!(claim["status"]["phase"], "Bound", "{claim}");
        assert_eq!(claim["spec"]["volumeName"], format!("{ns}-meta-{i}"));
    }
    let pdb = json_of(c, &["pdb", "demo-master", "-n", &ns]);
    assert_eq!(pdb["spec"]["minAvailable"], 2, "{pdb}");
    let wide = c.kubectl(&["get", "jindoruntime", "demo", "-n", &ns, "-o", "wide"]);
    println!("{wide}");
    assert!(wide.contains("READY MASTERS") && wide.contains("DESIRED MASTERS"), "{wide}");
    // One master deleted (a node lost): the status says PartialReady until it is back.
    c.kubectl(&["delete", "pod", "demo-master-1", "-n", &ns, "--wait=false"]);
    wait_until(90, "three masters again", || {
        c.get_json(&["jindoruntime", "demo", "-n", &ns]).is_some_and(|o| o["status"]["masterNumberReady"] == 3)
    });
    let claim = json_of(c, &["pvc", "meta-demo-master-1", "-n", &ns]);
    assert_eq!(claim["spec"]["volumeName"], format!("{ns}-meta-1"), "the rescheduled master kept its claim");
}
