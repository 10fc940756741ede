//! DataLoads: a Job to Complete, Cron, runAfter, TTL and OnEvent.

use crate::harness::*;

#[test]
fn a_dataload_runs_its_job_to_complete_and_mirrors_its_phase() {
    let _ = installed();
    let c = cluster();
    let ns = c.namespace("dataload");
    apply_demo(c, &ns, 1);
    let load = "apiVersion: data.fluid.io/v1alpha1\nkind: DataLoad\nmetadata:\n  name: warm\nspec:\n  dataset:\n    name: demo\n    namespace: dataload\n  target:\n    - path: /\n";
    c.kubectl_in(&["apply", "--validate=strict", "-n", &ns, "-f", "-"], load);
    wait_until(90, "the DataLoad Complete", || phase_of(c, "dataload", &ns, "warm") == "Complete");
    let job = json_of(c, &["job", "warm-loader", "-n", &ns]);
    assert_eq!(job["status"]["succeeded"], 1, "{job}");
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "DataLoad");
    let described = c.kubectl(&["describe", "dataload", "warm", "-n", &ns]);
    assert!(described.contains("LoadComplete"), "kubectl describe dataload:\n{described}");
}

/// `policy: Cron` runs as a CronJob whose runs the DataLoad mirrors; `runAfter` waits for the
/// preceding load and, with `affinityStrategy: Require`, runs on the node it ran on;
/// `ttlSecondsAfterFinished` deletes a finished DataLoad; placement fields reach the pod.
#[test]
fn dataload_policies_cron_run_after_and_ttl() {
    let _ = installed();
    let c = cluster();
    let ns = c.namespace("dataload-policies");
    apply_demo(c, &ns, 1);
    let loads = format!(
        r#"apiVersion: data.fluid.io/v1alpha1
kind: DataLoad
metadata: {{name: first}}
spec:
  dataset: {{name: demo, namespace: {ns}}}
  tolerations: [{{key: loaders, operator: Exists}}]
  podMetadata: {{labels: {{team: data}}}}
---
apiVersion: data.fluid.io/v1alpha1
kind: DataLoad
metadata: {{name: second}}
spec:
  dataset: {{name: demo, namespace: {ns}}}
  runAfter: {{kind: DataLoad, name: first, affinityStrategy: {{policy: Require}}}}
---
apiVersion: data.fluid.io/v1alpha1
kind: DataLoad
metadata: {{name: short-lived}}
spec:
  dataset: {{name: demo, namespace: {ns}}}
  ttlSecondsAfterFinished: 2
---
apiVersion: data.fluid.io/v1alpha1
kind: DataLoad
metadata: {{name: hourly}}
spec:
  dataset: {{name: demo, namespace: {ns}}}
  policy: Cron
  schedule: "* * * * *"
"#
    );
    c.kubectl_in(&["apply", "--validate=strict", "-n", &ns, "-f", "-"], &loads);
    wait_until(90, "the first DataLoad Complete", || phase_of(c, "dataload", &ns, "first") == "Complete");
    let first_pod = items(c, &["pods", "-n", &ns, "-l", "fluid.io/dataload=first"]).into_iter().next().expect("the first loader's pod");
    assert_eq!(first_pod["metadata"]["labels"]["team"], "data");
    assert_eq!(first_pod["spec"]["tolerations"].as_array().unwrap().iter().filter(|t| t["key"] == "loaders").count(), 1);
    wait_until(90, "the second DataLoad Complete", || phase_of(c, "dataload", &ns, "second") == "Complete");
    let second = json_of(c, &["job", "second-loader", "-n", &ns]);
    let term = &second["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"][0];
    assert_eq!((term["key"].as_str(), term["values"][0].as_str()), (Some("kubernetes.io/hostname"), first_pod["spec"]["nodeName"].as_str()), "{second}");
    wait_until(90, "the short-lived DataLoad deleted after its TTL", || c.get_json(&["dataload", "short-lived", "-n", &ns]).is_none());
    assert!(c.get_json(&["cronjob", "hourly-loader", "-n", &ns]).is_some(), "a Cron DataLoad runs as a CronJob");
    wait_until(150, "the Cron DataLoad's first run", || {
        c.get_json(&["dataload", "hourly", "-n", &ns]).is_some_and(|d| d["status"]["phase"] == "Complete" && d["status"]["lastScheduleTime"].is_string())
    });
}

/// `policy: OnEvent` loads again when the Dataset changes: its UFS total or file count (the
/// figures the operator copies from the master) differ from those the last run started from.
#[test]
fn an_on_event_dataload_loads_again_when_the_dataset_changes() {
    let _ = installed();
    let c = cluster();
    let ns = c.namespace("dataload-on-event");
    apply_demo(c, &ns, 1);
    wait_until(60, "Bound", || phase_of(c, "dataset", &ns, "demo") == "Bound");
    let figures = |files: &str| format!(r#"{{"status":{{"ufsTotal":"4.00MiB","fileNum":"{files}"}}}}"#);
    c.kubectl(&["patch", "dataset", "demo", "-n", &ns, "--subresource=status", "--type=merge", "-p", &figures("2")]);
    let load = format!("apiVersion: data.fluid.io/v1alpha1\nkind: DataLoad\nmetadata: {{name: follow}}\nspec:\n  dataset: {{name: demo, namespace: {ns}}}\n  policy: OnEvent\n");
    c.kubectl_in(&["apply", "--validate=strict", "-n", &ns, "-f", "-"], &load);
    wait_until(90, "the first run Complete", || phase_of(c, "dataload", &ns, "follow") == "Complete");
    let first = json_of(c, &["job", "follow-loader", "-n", &ns])["metadata"]["uid"].clone();
    assert_eq!(json_of(c, &["dataload", "follow", "-n", &ns])["status"]["infos"]["fileNum"], "2");
    // Nothing changed: no new run.
    std::thread::sleep(std::time::Duration::from_secs(8));
    assert_eq!(json_of(c, &["job", "follow-loader", "-n", &ns])["metadata"]["uid"], first);
    c.kubectl(&["patch", "dataset", "demo", "-n", &ns, "--subresource=status", "--type=merge", "-p", &figures("3")]);
    wait_until(90, "a new run for the changed Dataset", || {
        c.get_json(&["job", "follow-loader", "-n", &ns]).is_some_and(|j| j["metadata"]["uid"] != first && j["status"]["succeeded"] == 1)
            && c.get_json(&["dataload", "follow", "-n", &ns]).is_some_and(|d| d["status"]["infos"]["fileNum"] == "3" && d["status"]["phase"] == "Complete")
    });
    assert!(c.kubectl(&["describe", "dataload", "follow", "-n", &ns]).contains("DatasetChanged"));
}
