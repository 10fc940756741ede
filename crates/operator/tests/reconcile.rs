//! The reconcilers against a scripted API server (kube-rs's tower-test mock, as in
//! kube-rs/controller-rs): each test states the exact calls a reconcile makes, in order,
//! checks what it sends, and answers as the API server would.

use cistern_api::JindoRuntime;
use cistern_operator::controller::{reconcile_dataset, reconcile_runtime, Context, Error, FINALIZER};
use cistern_operator::{cache_cleanup, RenderOptions};
use http::{Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use std::sync::Arc;
use tower_test::mock::{Handle, SendResponse};

struct ApiServer(Handle<Request<Body>, Response<Body>>);

/// One call the reconcile made: its query string and JSON body, and where to answer.
struct Call {
    query: String,
    body: Value,
    reply: SendResponse<Response<Body>>,
}

impl Call {
    fn ok(self, body: &Value) {
        self.reply.send_response(Response::builder().body(Body::from(serde_json::to_vec(body).unwrap())).unwrap());
    }
    fn not_found(self) {
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"});
        self.reply.send_response(Response::builder().status(404).body(Body::from(serde_json::to_vec(&status).unwrap())).unwrap());
    }
}

impl ApiServer {
    fn new() -> (Arc<Context>, ApiServer) {
        // No master answers there (a closed port): phases come from Kubernetes alone.
        ApiServer::with_master("http://127.0.0.1:1")
    }

    fn with_master(master_web: &str) -> (Arc<Context>, ApiServer) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let mut ctx = Context::new(Client::new(service, "default"), RenderOptions { image: "cistern:test".into(), ..Default::default() });
        ctx.master_web = Some(master_web.into());
        (Arc::new(ctx), ApiServer(handle))
    }

    /// The next call, which must be `method path`.
    async fn expect(&mut self, method: &str, path: &str) -> Call {
        let (request, reply) = tokio::time::timeout(std::time::Duration::from_secs(5), self.0.next_request())
            .await
            .unwrap_or_else(|_| panic!("no call came; expected {method} {path}"))
            .expect("the client is gone");
        assert_eq!((request.method().as_str(), request.uri().path()), (method, path), "unexpected call");
        let query = request.uri().query().unwrap_or_default().to_string();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        Call { query, body, reply }
    }
}

const FLUID: &str = "/apis/data.fluid.io/v1alpha1/namespaces/default";
const VOLUME: &str = "/api/v1/persistentvolumes/default-demo";
const CREDENTIALS: &str = "/api/v1/namespaces/default/secrets/demo-cistern-credentials";

/// The runtime's credentials Secret: made when missing (owned by the runtime, with the
/// reference key, the CA and one certificate per role), left alone when there.
async fn credentials(api: &mut ApiServer, exists: bool) {
    let call = api.expect("GET", CREDENTIALS).await;
    if exists {
        call.ok(&json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "demo-cistern-credentials", "namespace": "default"}}));
        return;
    }
    call.not_found();
    let call = api.expect("POST", "/api/v1/namespaces/default/secrets").await;
    let body = call.body.clone();
    assert_eq!(body["metadata"]["name"], "demo-cistern-credentials");
    assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "rt-uid");
    for key in ["ref.key", "ca.pem", "ca.key", "master.pem", "master.key", "worker.pem", "worker.key", "client.pem", "client.key"] {
        assert!(body["data"][key].is_string(), "{key} missing from the credentials");
    }
    call.ok(&body);
}

/// The worker StatefulSet's current size, read to hold a scale-in until the master has seen
/// it (`None`: not there yet).
async fn worker_size(api: &mut ApiServer, current: Option<i32>) {
    let call = api.expect("GET", "/apis/apps/v1/namespaces/default/statefulsets/demo-worker").await;
    match current {
        Some(n) => call.ok(&json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "demo-worker", "namespace": "default"}, "spec": {"replicas": n, "selector": {}, "serviceName": "demo-worker", "template": {}}})),
        None => call.not_found(),
    }
}

fn dataset(finalizers: &[&str], deleting: bool) -> Value {
    let mut d = json!({
        "apiVersion": "data.fluid.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "demo", "namespace": "default", "uid": "ds-uid", "finalizers": finalizers, "resourceVersion": "1"},
        "spec": {"mounts": [{
            "mountPoint": "oss://bucket/dir", "name": "demo", "options": {"fs.oss.endpoint": "oss.example"},
            "encryptOptions": [{"name": "fs.oss.accessKeyId", "valueFrom": {"secretKeyRef": {"name": "access-key", "key": "id"}}}],
        }]},
    });
    if deleting {
        d["metadata"]["deletionTimestamp"] = json!("2026-11-22T00:00:00Z");
    }
    d
}

fn jindo(replicas: u32) -> Value {
    json!({
        "apiVersion": "data.fluid.io/v1alpha1",
        "kind": "JindoRuntime",
        "metadata": {"name": "demo", "namespace": "default", "uid": "rt-uid", "resourceVersion": "1", "finalizers": [cache_cleanup::FINALIZER]},
        "spec": {
            "replicas": replicas,
            "tieredstore": {"levels": [{"mediumtype": "MEM", "path": "/dev/shm", "quota": "2Gi", "high": "0.99", "low": "0.95"}]},
            "master": {"properties": {"namespace.meta-dir": "/meta"}, "volumeMounts": [{"name": "meta-vol", "mountPath": "/meta"}]},
            "volumes": [{"name": "meta-vol", "persistentVolumeClaim": {"claimName": "demo-meta"}}],
        },
    })
}

fn object<T: serde::de::DeserializeOwned>(v: Value) -> Arc<T> {
    Arc::new(serde_json::from_value(v).unwrap())
}

#[tokio::test]
async fn a_new_dataset_gets_the_finalizer_first() {
    let (ctx, mut api) = ApiServer::new();
    let run = tokio::spawn(reconcile_dataset(object(dataset(&[], false)), ctx));
    let call = api.expect("PATCH", &format!("{FLUID}/datasets/demo")).await;
    assert!(call.body.to_string().contains(FINALIZER), "{}", call.body);
    call.ok(&dataset(&[FINALIZER], false));
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_dataset_is_bound_by_the_runtime_of_its_name() {
    let (ctx, mut api) = ApiServer::new();
    let run = tokio::spawn(reconcile_dataset(object(dataset(&[FINALIZER], false)), ctx));
    api.expect("GET", &format!("{FLUID}/jindoruntimes/demo")).await.ok(&jindo(2));
    let call = api.expect("PATCH", &format!("{FLUID}/datasets/demo/status")).await;
    assert_eq!(call.body["status"]["phase"], "Bound");
    assert_eq!(call.body["status"]["runtimes"][0]["type"], "jindo");
    assert_eq!(call.body["status"]["runtimes"][0]["name"], "demo");
    call.ok(&dataset(&[FINALIZER], false));
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn without_a_runtime_a_dataset_is_not_bound() {
    let (ctx, mut api) = ApiServer::new();
    let run = tokio::spawn(reconcile_dataset(object(dataset(&[FINALIZER], false)), ctx));
    for kind in ["jindoruntimes", "alluxioruntimes", "juicefsruntimes"] {
        api.expect("GET", &format!("{FLUID}/{kind}/demo")).await.not_found();
    }
    let call = api.expect("PATCH", &format!("{FLUID}/datasets/demo/status")).await;
    assert_eq!(call.body["status"]["phase"], "NotBound");
    call.ok(&dataset(&[FINALIZER], false));
    run.await.unwrap().unwrap();
}

fn pod(phase: &str, claim: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "trainer", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "i"}], "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]},
        "status": {"phase": phase},
    })
}

fn pod_list(pods: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": pods})
}

#[tokio::test]
async fn deletion_waits_while_a_running_pod_uses_the_pvc() {
    let (ctx, mut api) = ApiServer::new();
    let run = tokio::spawn(reconcile_dataset(object(dataset(&[FINALIZER], true)), ctx));
    api.expect("GET", "/api/v1/namespaces/default/pods").await.ok(&pod_list(vec![pod("Running", "demo")]));
    match run.await.unwrap() {
        Err(Error::InUse(ds, pod)) => assert_eq!((ds.as_str(), pod.as_str()), ("default/demo", "trainer")),
        other => panic!("deletion went on while the PVC is in use: {other:?}"),
    }
}

#[tokio::test]
async fn deletion_goes_on_once_no_running_pod_uses_the_pvc() {
    let (ctx, mut api) = ApiServer::new();
    let run = tokio::spawn(reconcile_dataset(object(dataset(&[FINALIZER], true)), ctx));
    let pods = pod_list(vec![pod("Succeeded", "demo"), pod("Running", "other-claim")]);
    api.expect("GET", "/api/v1/namespaces/default/pods").await.ok(&pods);
    // The Dataset's PV goes with it (cluster-scoped: no owner takes it away).
    let pv = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "default-demo", "labels": {"fluid.io/dataset-id": "default-demo"}}});
    api.expect("GET", VOLUME).await.ok(&pv);
    api.expect("DELETE", VOLUME).await.ok(&pv);
    let call = api.expect("PATCH", &format!("{FLUID}/datasets/demo")).await;
    assert!(call.body.to_string().contains("remove") || !call.body.to_string().contains(FINALIZER), "finalizer not removed: {}", call.body);
    call.ok(&dataset(&[], true));
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_runtime_applies_its_objects_owned_and_reports_phases_and_scales() {
    for replicas in [2u32, 3] {
        let (ctx, mut api) = ApiServer::new();
        let run = tokio::spawn(reconcile_runtime::<JindoRuntime>(object(jindo(replicas)), ctx));
        api.expect("GET", &format!("{FLUID}/datasets/demo")).await.ok(&dataset(&[FINALIZER], false));
        api.expect("GET", VOLUME).await.not_found();
        credentials(&mut api, replicas == 3).await;
        // 3 → 2 is a scale-in, but no master answers: not held.
        worker_size(&mut api, Some(3)).await;
        let applied = [
            "/api/v1/namespaces/default/configmaps/demo-cistern-config",
            "/api/v1/namespaces/default/services/demo-master",
            "/apis/apps/v1/namespaces/default/statefulsets/demo-master",
            "/apis/apps/v1/namespaces/default/statefulsets/demo-worker",
            "/apis/apps/v1/namespaces/default/daemonsets/demo-fuse",
            "/api/v1/persistentvolumes/default-demo",
            "/api/v1/namespaces/default/persistentvolumeclaims/demo",
            "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies/demo-cistern",
        ];
        for path in applied {
            let call = api.expect("PATCH", path).await;
            assert!(call.query.contains("fieldManager=cistern-operator") && call.query.contains("force=true"), "{path}: {}", call.query);
            let owner = &call.body["metadata"]["ownerReferences"][0];
            if path.contains("persistentvolumes/") {
                assert!(owner.is_null(), "a cluster-scoped PV cannot be owned by a namespaced runtime");
            } else {
                assert_eq!((owner["uid"].as_str(), owner["kind"].as_str(), owner["controller"].as_bool()), (Some("rt-uid"), Some("JindoRuntime"), Some(true)), "{path}");
            }
            if path.ends_with("statefulsets/demo-worker") {
                assert_eq!(call.body["spec"]["replicas"], replicas, "scaling");
            }
            if path.ends_with("configmaps/demo-cistern-config") {
                let yaml = call.body["data"]["dataset.yaml"].as_str().unwrap();
                assert!(yaml.contains("access-key") && yaml.contains("secretKeyRef"), "secret references kept: {yaml}");
            }
            let body = call.body.clone();
            call.ok(&body);
        }
        let set = |ready: u32| json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "x"}, "status": {"replicas": ready, "readyReplicas": ready}});
        api.expect("GET", "/apis/apps/v1/namespaces/default/statefulsets/demo-master").await.ok(&set(1));
        api.expect("GET", "/apis/apps/v1/namespaces/default/statefulsets/demo-worker").await.ok(&set(2));
        let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "demo-fuse"},
            "status": {"currentNumberScheduled": 1, "desiredNumberScheduled": 1, "numberMisscheduled": 0, "numberReady": 1}});
        api.expect("GET", "/apis/apps/v1/namespaces/default/daemonsets/demo-fuse").await.ok(&ds);
        // Workers run on node-a and node-b; node-c still carries the label from an old worker.
        let workers = vec![worker_pod("Running", "node-a"), worker_pod("Running", "node-b"), worker_pod("Pending", "node-d")];
        let patched = answer_locality(&mut api, workers, &["node-b", "node-c"], 2).await;
        assert_eq!(patched, [("node-a".to_string(), json!("true")), ("node-c".to_string(), Value::Null)]);
        let call = api.expect("PATCH", &format!("{FLUID}/jindoruntimes/demo/status")).await;
        let status = &call.body["status"];
        let term = &status["cacheAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"][0];
        assert_eq!(term["key"], "fluid.io/s-default-demo", "{status}");
        assert_eq!(status["masterPhase"], "Ready");
        assert_eq!(status["workerPhase"], if replicas == 2 { "Ready" } else { "PartialReady" }, "{status}");
        assert_eq!(status["fusePhase"], "Ready");
        assert_eq!(status["desiredWorkerNumberScheduled"], replicas);
        call.ok(&jindo(replicas));
        run.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_runtime_without_its_dataset_is_not_ready() {
    let (ctx, mut api) = ApiServer::new();
    let run = tokio::spawn(reconcile_runtime::<JindoRuntime>(object(jindo(1)), ctx));
    api.expect("GET", &format!("{FLUID}/datasets/demo")).await.not_found();
    let call = api.expect("PATCH", &format!("{FLUID}/jindoruntimes/demo/status")).await;
    assert_eq!(call.body["status"]["workerPhase"], "NotReady");
    call.ok(&jindo(1));
    run.await.unwrap().unwrap();
}

/// A runtime gets the finalizer that cleans its cache off the nodes before anything else,
/// by a JSON Patch that keeps other controllers' finalizers.
#[tokio::test]
async fn a_runtime_gets_the_cache_cleanup_finalizer_first() {
    let (ctx, mut api) = ApiServer::new();
    let mut rt = jindo(1);
    rt["metadata"]["finalizers"] = json!(["someone.else/keep"]);
    let run = tokio::spawn(reconcile_runtime::<JindoRuntime>(object(rt.clone()), ctx));
    let call = api.expect("PATCH", &format!("{FLUID}/jindoruntimes/demo")).await;
    assert_eq!(call.body, json!([
        {"op": "test", "path": "/metadata/finalizers", "value": ["someone.else/keep"]},
        {"op": "add", "path": "/metadata/finalizers/-", "value": cache_cleanup::FINALIZER},
    ]));
    call.ok(&rt);
    api.expect("GET", &format!("{FLUID}/datasets/demo")).await.not_found();
    api.expect("PATCH", &format!("{FLUID}/jindoruntimes/demo/status")).await.ok(&rt);
    run.await.unwrap().unwrap();
}

fn worker_pod(phase: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("demo-worker-{node}"), "namespace": "default", "labels": {"release": "demo", "role": "worker"}},
        "spec": {"nodeName": node, "containers": [{"name": "worker", "image": "i"}]},
        "status": {"phase": phase},
    })
}

/// Answers the cache-locality calls: the worker pods, the nodes already labelled, then
/// `patches` node patches; returns each as (node, the label's new value).
async fn answer_locality(api: &mut ApiServer, workers: Vec<Value>, labelled: &[&str], patches: usize) -> Vec<(String, Value)> {
    let call = api.expect("GET", "/api/v1/namespaces/default/pods").await;
    assert!(call.query.contains("labelSelector=release%3Ddemo%2Crole%3Dworker"), "{}", call.query);
    call.ok(&pod_list(workers));
    let call = api.expect("GET", "/api/v1/nodes").await;
    assert!(call.query.contains("labelSelector=fluid.io%2Fs-default-demo"), "{}", call.query);
    let nodes: Vec<Value> = labelled.iter().map(|n| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n, "labels": {"fluid.io/s-default-demo": "true"}}})).collect();
    call.ok(&json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {"resourceVersion": "1"}, "items": nodes}));
    let mut patched = Vec::new();
    for _ in 0..patches {
        let (request, reply) = tokio::time::timeout(std::time::Duration::from_secs(5), api.0.next_request()).await.expect("a node patch").expect("client");
        assert_eq!(request.method(), "PATCH");
        let node = request.uri().path().strip_prefix("/api/v1/nodes/").unwrap_or_else(|| panic!("not a node patch: {}", request.uri())).to_string();
        let body: Value = serde_json::from_slice(&request.into_body().collect_bytes().await.unwrap()).unwrap();
        patched.push((node.clone(), body["metadata"]["labels"]["fluid.io/s-default-demo"].clone()));
        reply.send_response(Response::builder().body(Body::from(serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})).unwrap())).unwrap());
    }
    patched
}

/// A master's web port that answers `/api/v1/status` with `status`, once per connection.
async fn fake_master(status: Value) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let n = conn.read(&mut buf).await.unwrap_or(0);
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("GET /api/v1/status "), "{}", String::from_utf8_lossy(&buf[..n]));
            let body = status.to_string();
            let reply = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            let _ = conn.write_all(reply.as_bytes()).await;
        }
    });
    base
}

#[tokio::test]
async fn the_masters_figures_go_into_the_runtime_and_dataset_statuses() {
    let figures = json!({
        "dataset": {"status": {"phase": "Bound", "ufsTotal": "72.00MiB", "fileNum": "2",
            "cacheStates": {"cached": "64.00MiB", "cacheCapacity": "2.00GiB", "cachedPercentage": "88.9%"}}},
        "runtime": {"status": {"cacheStates": {"cached": "64.00MiB", "cacheCapacity": "2.00GiB"}}},
    });
    let (ctx, mut api) = ApiServer::with_master(&fake_master(figures).await);
    let run = tokio::spawn(reconcile_runtime::<JindoRuntime>(object(jindo(1)), ctx));
    api.expect("GET", &format!("{FLUID}/datasets/demo")).await.ok(&dataset(&[FINALIZER], false));
    api.expect("GET", VOLUME).await.not_found();
    credentials(&mut api, true).await;
    worker_size(&mut api, None).await;
    for _ in 0..8 {
        let (_, reply) = api.0.next_request().await.unwrap();
        reply.send_response(Response::builder().body(Body::from(b"{}".to_vec())).unwrap());
    }
    for path in ["statefulsets/demo-master", "statefulsets/demo-worker", "daemonsets/demo-fuse"] {
        api.expect("GET", &format!("/apis/apps/v1/namespaces/default/{path}")).await.not_found();
    }
    assert!(answer_locality(&mut api, vec![], &[], 0).await.is_empty());
    let call = api.expect("PATCH", &format!("{FLUID}/jindoruntimes/demo/status")).await;
    assert_eq!(call.body["status"]["cacheStates"]["cached"], "64.00MiB", "{}", call.body);
    assert_eq!(call.body["status"]["masterPhase"], "NotReady");
    call.ok(&jindo(1));
    let call = api.expect("PATCH", &format!("{FLUID}/datasets/demo/status")).await;
    let status = &call.body["status"];
    assert_eq!((status["ufsTotal"].as_str(), status["fileNum"].as_str()), (Some("72.00MiB"), Some("2")));
    assert_eq!(status["cacheStates"]["cachedPercentage"], "88.9%");
    assert!(status.get("phase").is_none(), "the Dataset controller owns the phase");
    call.ok(&dataset(&[FINALIZER], false));
    run.await.unwrap().unwrap();
}

/// Scale-in 3 → 2 while the master still says 3 (the kubelet has not delivered the new
/// ConfigMap): the worker StatefulSet stays at 3 and the reconcile comes back in 5 s, so the
/// leaving worker's SIGTERM finds the master knowing it leaves.
#[tokio::test]
async fn a_scale_in_waits_until_the_master_has_seen_it() {
    let master = fake_master(json!({"runtime": {"status": {"desiredWorkerNumberScheduled": 3}}})).await;
    let (ctx, mut api) = ApiServer::with_master(&master);
    let run = tokio::spawn(reconcile_runtime::<JindoRuntime>(object(jindo(2)), ctx));
    api.expect("GET", &format!("{FLUID}/datasets/demo")).await.ok(&dataset(&[FINALIZER], false));
    api.expect("GET", VOLUME).await.not_found();
    credentials(&mut api, true).await;
    worker_size(&mut api, Some(3)).await;
    let mut worker_replicas = None;
    for _ in 0..8 {
        let (request, reply) = api.0.next_request().await.unwrap();
        let path = request.uri().path().to_string();
        let body: Value = serde_json::from_slice(&request.into_body().collect_bytes().await.unwrap()).unwrap();
        if path.ends_with("statefulsets/demo-worker") {
            worker_replicas = body["spec"]["replicas"].as_i64();
        }
        reply.send_response(Response::builder().body(Body::from(b"{}".to_vec())).unwrap());
    }
    assert_eq!(worker_replicas, Some(3), "the worker StatefulSet was shrunk before the master knew");
    for path in ["statefulsets/demo-master", "statefulsets/demo-worker", "daemonsets/demo-fuse"] {
        api.expect("GET", &format!("/apis/apps/v1/namespaces/default/{path}")).await.not_found();
    }
    assert!(answer_locality(&mut api, vec![], &[], 0).await.is_empty());
    api.expect("PATCH", &format!("{FLUID}/jindoruntimes/demo/status")).await.ok(&jindo(2));
    let action = run.await.unwrap().unwrap();
    assert_eq!(action, kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(5)));
}

/// Certificates a month from expiry are renewed with the same CA and the serial bumped; every
/// pod template carries the new serial, so the pods roll onto the new files.
#[tokio::test]
async fn certificates_near_expiry_are_renewed_and_the_pods_rolled() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let ca = cistern_rpc::tls::Authority::generate().unwrap();
    let soon = "2026-12-05T00:00:00Z"; // days away, inside the renewal window
    let existing = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "demo-cistern-credentials", "namespace": "default", "annotations": {"cistern.io/credentials-not-after": soon, "cistern.io/credentials-serial": "4"}},
        "data": {"ca.pem": b64(&ca.cert_pem), "ca.key": b64(ca.key_pem()), "ref.key": b64("k")}});
    let (ctx, mut api) = ApiServer::new();
    let run = tokio::spawn(reconcile_runtime::<JindoRuntime>(object(jindo(1)), ctx));
    api.expect("GET", &format!("{FLUID}/datasets/demo")).await.ok(&dataset(&[FINALIZER], false));
    api.expect("GET", VOLUME).await.not_found();
    api.expect("GET", CREDENTIALS).await.ok(&existing);
    let call = api.expect("PATCH", CREDENTIALS).await;
    assert_eq!(call.body["metadata"]["annotations"]["cistern.io/credentials-serial"], "5");
    assert_ne!(call.body["metadata"]["annotations"]["cistern.io/credentials-not-after"], soon);
    for key in ["master.pem", "master.key", "worker.pem", "worker.key", "client.pem", "client.key"] {
        assert!(call.body["data"][key].is_string(), "{key} not renewed");
    }
    assert!(call.body["data"].get("ca.key").is_none() && call.body["data"].get("ref.key").is_none(), "the CA and the reference key are kept");
    let body = call.body.clone();
    call.ok(&body);
    worker_size(&mut api, Some(1)).await;
    let mut templates = 0;
    for _ in 0..8 {
        let (request, reply) = api.0.next_request().await.unwrap();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        if body["spec"]["template"].is_object() {
            assert_eq!(body["spec"]["template"]["metadata"]["annotations"]["cistern.io/credentials-serial"], "5", "{}", body["kind"]);
            templates += 1;
        }
        reply.send_response(Response::builder().body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap());
    }
    assert_eq!(templates, 3, "master, workers and FUSE roll");
    run.abort();
}

// ---- DataLoads ----

fn dataload(phase: Option<&str>) -> Value {
    let mut d = json!({
        "apiVersion": "data.fluid.io/v1alpha1",
        "kind": "DataLoad",
        "metadata": {"name": "warm", "namespace": "default", "uid": "dl-uid", "resourceVersion": "1"},
        "spec": {"dataset": {"name": "demo", "namespace": "default"}, "target": [{"path": "/train"}]},
    });
    if let Some(p) = phase {
        d["status"] = json!({"phase": p});
    }
    d
}

fn job(status: Value) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "warm-loader", "namespace": "default"}, "status": status})
}

/// Runs one DataLoad reconcile against a bound Dataset whose loader Job has `job_status`;
/// returns the status the reconcile wrote.
async fn reconcile_load_with_job(job_status: Value) -> Value {
    let (ctx, mut api) = ApiServer::new();
    let run = tokio::spawn(cistern_operator::dataload::reconcile_dataload(object(dataload(None)), ctx));
    api.expect("GET", &format!("{FLUID}/datasets/demo")).await.ok(&dataset(&[FINALIZER], false));
    api.expect("GET", &format!("{FLUID}/jindoruntimes/demo")).await.ok(&jindo(1));
    let call = api.expect("PATCH", "/apis/batch/v1/namespaces/default/jobs/warm-loader").await;
    assert!(call.query.contains("fieldManager=cistern-operator"), "{}", call.query);
    let owner = &call.body["metadata"]["ownerReferences"][0];
    assert_eq!((owner["kind"].as_str(), owner["uid"].as_str()), (Some("DataLoad"), Some("dl-uid")));
    let args: Vec<&str> = call.body["spec"]["template"]["spec"]["containers"][0]["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(args.windows(2).any(|w| w == ["--master", "demo-master.default.svc:19998"]) && args.ends_with(&["/train"]), "{args:?}");
    let body = call.body.clone();
    call.ok(&body);
    api.expect("GET", "/apis/batch/v1/namespaces/default/jobs/warm-loader").await.ok(&job(job_status));
    let call = api.expect("PATCH", &format!("{FLUID}/dataloads/warm/status")).await;
    let status = call.body["status"].clone();
    call.ok(&dataload(status["phase"].as_str()));
    run.await.unwrap().unwrap();
    status
}

#[tokio::test]
async fn a_dataload_mirrors_its_loader_jobs_phase() {
    assert_eq!(reconcile_load_with_job(json!({})).await["phase"], "Pending");
    assert_eq!(reconcile_load_with_job(json!({"active": 1})).await["phase"], "Executing");
    let done = reconcile_load_with_job(json!({
        "succeeded": 1, "startTime": "2026-11-22T00:00:00Z", "completionTime": "2026-11-22T00:01:05Z",
        "conditions": [{"type": "Complete", "status": "True"}],
    }))
    .await;
    assert_eq!((done["phase"].as_str(), done["duration"].as_str()), (Some("Complete"), Some("65s")));
    let failed = reconcile_load_with_job(json!({
        "failed": 4, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}],
    }))
    .await;
    assert_eq!(failed["phase"], "Failed");
    assert_eq!(failed["conditions"][0]["reason"], "BackoffLimitExceeded");
    assert!(failed["conditions"][0]["message"].as_str().unwrap().contains("backoff limit"), "{failed}");
}

#[tokio::test]
async fn a_dataload_waits_for_its_dataset() {
    let (ctx, mut api) = ApiServer::new();
    let run = tokio::spawn(cistern_operator::dataload::reconcile_dataload(object(dataload(None)), ctx));
    api.expect("GET", &format!("{FLUID}/datasets/demo")).await.not_found();
    let call = api.expect("PATCH", &format!("{FLUID}/dataloads/warm/status")).await;
    assert_eq!(call.body["status"]["phase"], "Pending");
    assert!(call.body["status"]["conditions"][0]["message"].as_str().unwrap().contains("Dataset default/demo does not exist"), "{}", call.body);
    call.ok(&dataload(Some("Pending")));
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_finished_dataload_is_left_alone() {
    for phase in ["Complete", "Failed"] {
        let (ctx, mut api) = ApiServer::new();
        cistern_operator::dataload::reconcile_dataload(object(dataload(Some(phase))), ctx).await.unwrap();
        let call = tokio::time::timeout(std::time::Duration::from_millis(200), api.0.next_request()).await;
        assert!(!matches!(call, Ok(Some(_))), "{phase}: a finished DataLoad made an API call");
    }
}

// ---- Seed 002, unchanged ----

/// The Dataset and JindoRuntime of seed 002's YAML, as the API server would return them.
fn seed_002() -> (Value, Value) {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/examples/seed-002-jindo-meta-persist.yaml");
    let m = cistern_api::Manifest::from_path(&path).unwrap_or_else(|e| panic!("{}: {e} (../shared must be beside the checkout)", path.display()));
    let mut ds = serde_json::to_value(&m.datasets[0]).unwrap();
    let mut rt = m.runtimes[0].to_value().unwrap();
    for (o, uid) in [(&mut ds, "ds-uid"), (&mut rt, "rt-uid")] {
        o["metadata"]["namespace"] = json!("default");
        o["metadata"]["uid"] = json!(uid);
        o["metadata"]["resourceVersion"] = json!("1");
    }
    ds["metadata"]["finalizers"] = json!([FINALIZER]);
    rt["metadata"]["finalizers"] = json!([cache_cleanup::FINALIZER]);
    (ds, rt)
}

#[tokio::test]
async fn seed_002_creates_the_objects_and_binds_the_dataset() {
    let (ds, rt) = seed_002();
    assert_eq!((ds["metadata"]["name"].as_str(), rt["kind"].as_str()), (Some("demo"), Some("JindoRuntime")));

    // The runtime: every object applied, the master's meta-dir on the seed's PVC.
    let (ctx, mut api) = ApiServer::new();
    let run = tokio::spawn(reconcile_runtime::<JindoRuntime>(object(rt.clone()), ctx));
    api.expect("GET", &format!("{FLUID}/datasets/demo")).await.ok(&ds);
    api.expect("GET", VOLUME).await.not_found();
    credentials(&mut api, false).await;
    worker_size(&mut api, None).await;
    let mut applied = Vec::new();
    for _ in 0..8 {
        let (request, reply) = api.0.next_request().await.unwrap();
        assert_eq!(request.method(), "PATCH");
        let path = request.uri().path().to_string();
        let body: Value = serde_json::from_slice(&request.into_body().collect_bytes().await.unwrap()).unwrap();
        reply.send_response(Response::builder().body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap());
        applied.push((path, body));
    }
    let get = |suffix: &str| &applied.iter().find(|(p, _)| p.ends_with(suffix)).unwrap_or_else(|| panic!("{suffix} not applied")).1;
    let master = &get("statefulsets/demo-master")["spec"]["template"]["spec"];
    let claim = master["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "meta-vol").expect("meta-vol");
    assert_eq!(claim["persistentVolumeClaim"]["claimName"], "demo-jindo-master-meta");
    assert_eq!(get("statefulsets/demo-worker")["spec"]["replicas"], 2);
    assert_eq!(get("persistentvolumes/default-demo")["spec"]["csi"]["driver"], "fuse.csi.fluid.io");
    assert_eq!(get("persistentvolumeclaims/demo")["spec"]["volumeName"], "default-demo");
    let text = serde_json::to_string(&applied.iter().map(|a| &a.1).collect::<Vec<_>>()).unwrap();
    assert!(!text.contains("******"), "a secret value in an applied object");
    for path in ["statefulsets/demo-master", "statefulsets/demo-worker", "daemonsets/demo-fuse"] {
        api.expect("GET", &format!("/apis/apps/v1/namespaces/default/{path}")).await.not_found();
    }
    answer_locality(&mut api, vec![], &[], 0).await;
    let call = api.expect("PATCH", &format!("{FLUID}/jindoruntimes/demo/status")).await;
    assert_eq!(call.body["status"]["desiredWorkerNumberScheduled"], 2);
    call.ok(&rt);
    run.await.unwrap().unwrap();

    // The Dataset: bound by the runtime of its name.
    let (ctx, mut api) = ApiServer::new();
    let run = tokio::spawn(reconcile_dataset(object(ds.clone()), ctx));
    api.expect("GET", &format!("{FLUID}/jindoruntimes/demo")).await.ok(&rt);
    let call = api.expect("PATCH", &format!("{FLUID}/datasets/demo/status")).await;
    assert_eq!(call.body["status"]["phase"], "Bound");
    call.ok(&ds);
    run.await.unwrap().unwrap();
}
