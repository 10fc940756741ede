//! The admission webhook registered with the real API server.

use crate::harness::*;
use crate::support;

/// The admission webhook on the real API server: pods that mount a Dataset's PVC get node
/// affinity toward its cache's nodes (preferred, or required when the pod asks) and the
/// scheduler follows it; a pod that mounts no Dataset is not patched at all. The webhook runs
/// as a process here (kwok runs no pods), with a ServiceAccount that may only get Datasets.
#[test]
fn the_webhook_steers_pods_that_use_a_dataset_to_its_cache() {
    let _ = installed();
    let c = cluster();
    let ns = c.namespace("webhook");
    c.kubectl(&["label", "namespace", &ns, "cistern-webhook-test=on", "--overwrite"]);
    // The chart's webhook permissions, for a ServiceAccount of the test's.
    let _ = c.try_kubectl(&["create", "serviceaccount", "webhook-test", "-n", SYSTEM]);
    let _ = c.try_kubectl(&["delete", "clusterrole", "cistern-webhook-test", "--ignore-not-found"]);
    let _ = c.try_kubectl(&["create", "clusterrole", "cistern-webhook-test", "--verb=get", "--resource=datasets.data.fluid.io,jindoruntimes.data.fluid.io,alluxioruntimes.data.fluid.io,juicefsruntimes.data.fluid.io"]);
    let _ = c.try_kubectl(&["create", "clusterrolebinding", "cistern-webhook-test", "--clusterrole=cistern-webhook-test", &format!("--serviceaccount={SYSTEM}:webhook-test")]);
    let kubeconfig = c.service_account_kubeconfig(SYSTEM, "webhook-test");
    let tls = c.dir.join("webhook-tls");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut webhook = Command::new(support::cistern_bin())
        .args(["webhook", "--listen", &format!("127.0.0.1:{port}"), "--self-signed", "127.0.0.1", "--image", "cistern:test"])
        .arg("--tls-dir")
        .arg(&tls)
        .env("KUBECONFIG", &kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(30, "the webhook listening", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(std::fs::read(tls.join("ca.crt")).unwrap());
    let config = format!(
        r#"{{"apiVersion":"admissionregistration.k8s.io/v1","kind":"MutatingWebhookConfiguration","metadata":{{"name":"cistern-webhook-test"}},
        "webhooks":[{{"name":"pods.cistern.io","admissionReviewVersions":["v1"],"sideEffects":"None","failurePolicy":"Fail","timeoutSeconds":5,
        "clientConfig":{{"url":"https://127.0.0.1:{port}/mutate-pods","caBundle":"{ca}"}},
        "rules":[{{"apiGroups":[""],"apiVersions":["v1"],"operations":["CREATE"],"resources":["pods"]}}],
        "namespaceSelector":{{"matchLabels":{{"cistern-webhook-test":"on"}}}}}}]}}"#
    );
    c.kubectl_in(&["apply", "-f", "-"], &config);
    let result = std::panic::catch_unwind(|| {
        apply_demo(c, &ns, 1);
        wait_until(60, "a cache node labelled", || cache_nodes(c, &ns, "demo").len() == 1);
        let pod = |name: &str, claim: &str, labels: &str| {
            format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","labels":{{{labels}}}}},"spec":{{"containers":[{{"name":"c","image":"busybox"}}],"volumes":[{{"name":"d","persistentVolumeClaim":{{"claimName":"{claim}"}}}}]}}}}"#)
        };
        c.kubectl_in(&["apply", "-n", &ns, "-f", "-"], &pod("reader", "demo", ""));
        c.kubectl_in(&["apply", "-n", &ns, "-f", "-"], &pod("strict", "demo", r#""fluid.io/dataset.demo.sched":"required""#));
        c.kubectl_in(&["apply", "-n", &ns, "-f", "-"], &pod("other", "not-a-dataset", ""));
        let key = format!("fluid.io/s-{ns}-demo");
        let reader = json_of(c, &["pod", "reader", "-n", &ns]);
        let pref = &reader["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
        assert_eq!(pref["preference"]["matchExpressions"][0]["key"], key.as_str(), "{reader}");
        let strict = json_of(c, &["pod", "strict", "-n", &ns]);
        let term = &strict["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0];
        assert_eq!(term["matchExpressions"][0]["key"], key.as_str(), "{strict}");
        assert!(json_of(c, &["pod", "other", "-n", &ns])["spec"]["affinity"].is_null(), "a pod without a Dataset is not patched");
        // A serverless pod (seed 001's label) gets a FUSE sidecar instead of node affinity.
        let app = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"serverless","labels":{"alibabacloud.com/fluid-sidecar-target":"eci"},"annotations":{"alibabacloud.com/fuse-recover-policy":"auto"}},
            "spec":{"containers":[{"name":"demo","image":"nginx","volumeMounts":[{"name":"data-vol","mountPath":"/data"}]}],"volumes":[{"name":"data-vol","persistentVolumeClaim":{"claimName":"demo"}}]}}"#;
        c.kubectl_in(&["apply", "-n", &ns, "-f", "-"], app);
        let pod = json_of(c, &["pod", "serverless", "-n", &ns]);
        let spec = &pod["spec"];
        assert!(spec["affinity"].is_null(), "a serverless pod gets a sidecar, not node affinity: {spec}");
        let vol = spec["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "data-vol").unwrap();
        assert!(vol["emptyDir"].is_object() && vol["persistentVolumeClaim"].is_null(), "{vol}");
        assert_eq!(spec["containers"][0]["volumeMounts"][0]["mountPropagation"], "HostToContainer");
        let sidecar = &spec["initContainers"][0];
        assert_eq!((sidecar["restartPolicy"].as_str(), sidecar["securityContext"]["privileged"].as_bool()), (Some("Always"), Some(true)), "{sidecar}");
        assert!(sidecar["startupProbe"]["exec"]["command"].is_array(), "the app waits for the mount: {sidecar}");
        let args: Vec<&str> = sidecar["args"].as_array().unwrap().iter().filter_map(|a| a.as_str()).collect();
        assert!(args.windows(2).any(|w| w[0] == "--master" && w[1] == format!("demo-master.{ns}.svc:19998")), "{args:?}");
        let creds = spec["volumes"].as_array().unwrap().iter().find(|v| v["secret"]["secretName"] == "demo-cistern-credentials").expect("client credentials");
        let keys: Vec<&str> = creds["secret"]["items"].as_array().unwrap().iter().filter_map(|i| i["key"].as_str()).collect();
        assert_eq!(keys, ["ca.pem", "client.pem", "client.key"], "never ref.key or the CA key in an application's pod");
        assert_eq!(pod["metadata"]["labels"]["fluid.io/dataset-id"], format!("{ns}-demo").as_str(), "the Dataset's NetworkPolicy admits the pod");
        // Pod Security admission checks the pod as mutated: where the namespace enforces
        // `baseline`, the privileged sidecar has the pod refused, saying why; `privileged`
        // (what the README asks of namespaces with serverless pods) admits it.
        c.kubectl(&["label", "namespace", &ns, "pod-security.kubernetes.io/enforce=baseline", "--overwrite"]);
        let refused = c.try_kubectl_in(&["apply", "-n", &ns, "-f", "-"], &app.replace("\"serverless\"", "\"serverless-2\""));
        let why = refused.expect_err("a privileged sidecar admitted under baseline");
        assert!(why.contains("privileged"), "{why}");
        c.kubectl(&["label", "namespace", &ns, "pod-security.kubernetes.io/enforce=privileged", "--overwrite"]);
        c.kubectl_in(&["apply", "-n", &ns, "-f", "-"], &app.replace("\"serverless\"", "\"serverless-3\""));
        // The scheduler honours it: the strict pod runs where the cache is.
        wait_until(60, "the strict pod scheduled", || json_of(c, &["pod", "strict", "-n", &ns])["spec"]["nodeName"].is_string());
        let node = json_of(c, &["pod", "strict", "-n", &ns])["spec"]["nodeName"].as_str().unwrap().to_string();
        assert_eq!(vec![node], cache_nodes(c, &ns, "demo"));
    });
    let _ = c.try_kubectl(&["delete", "mutatingwebhookconfiguration", "cistern-webhook-test"]);
    let _ = webhook.kill();
    let _ = webhook.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
