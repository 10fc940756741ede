//! `cistern up` on a bucket of a real S3 server (SeaweedFS on 127.0.0.1), with the option
//! names JindoRuntime and AlluxioRuntime users write, and credentials from Secrets.

mod support;

use support::s3::{self, ACCESS_KEY, BUCKET, SECRET_KEY};
use support::*;

fn s3_yaml(name: &str, kind: &str, endpoint_opt: &str, id_opt: &str, secret_opt: &str, with_secret_doc: bool, cache: &std::path::Path) -> String {
    let endpoint = &s3::server().endpoint;
    let secret_doc = if with_secret_doc {
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s3-keys\nstringData:\n  {id_opt}: {ACCESS_KEY}\n  {secret_opt}: {SECRET_KEY}\n---\n")
    } else {
        String::new()
    };
    format!(
        "{secret_doc}apiVersion: data.fluid.io/v1alpha1
kind: Dataset
metadata:
  name: {name}
spec:
  mounts:
    - mountPoint: s3://{BUCKET}/{name}
      name: bucket
      path: /
      options:
        {endpoint_opt}: {endpoint}
        fs.s3.region: us-east-1
      encryptOptions:
        - name: {id_opt}
          valueFrom:
            secretKeyRef:
              name: s3-keys
              key: {id_opt}
        - name: {secret_opt}
          valueFrom:
            secretKeyRef:
              name: s3-keys
              key: {secret_opt}
---
apiVersion: data.fluid.io/v1alpha1
kind: {kind}
metadata:
  name: {name}
spec:
  replicas: 1
  tieredstore:
    levels:
      - mediumtype: MEM
        path: {cache}
        quota: 256Mi
",
        cache = cache.display()
    )
}

#[test]
fn s3_bucket_is_served_byte_for_byte_and_secrets_stay_secret() {
    let s = Scratch::new();
    let files = tree::layout(300, 20 << 20);
    s3::upload("jindo", &files);
    let yaml = s3_yaml("jindo", "JindoRuntime", "fs.s3.endpoint", "fs.s3.accessKeyId", "fs.s3.accessKeySecret", true, &s.path("cache"));
    let file = s.write("jindo.yaml", &yaml);
    let mut up = Up::start(&s, &file, &[], "default", "jindo");
    tree::assert_mount_matches(&up.mountpoint, &files);
    tree::assert_mount_matches(&up.mountpoint, &files); // warm, from the cache

    let json = stdout_of(&s.cistern(&["get", "dataset", "-o", "json"]));
    let yaml_out = stdout_of(&s.cistern(&["get", "dataset", "-o", "yaml"]));
    let status_file = std::fs::read_to_string(s.run_root().join("default-jindo/status.json")).unwrap();
    assert!(up.terminate().success(), "{}", up.stderr());
    for (what, text) in [("json", &json), ("yaml", &yaml_out), ("status.json", &status_file), ("stdout", &up.stdout()), ("stderr", &up.stderr())] {
        assert!(!text.contains(SECRET_KEY), "the secret key leaked into {what}");
    }
    assert!(json.contains("\"phase\": \"Bound\""), "{json}");
}

/// At the most verbose level, through every component (the master, the workers, the FUSE
/// daemon, the S3 signer and HTTP client inside them), neither key of `encryptOptions` is
/// printed, nor passed on any component's command line.
#[test]
fn no_secret_at_trace_level_nor_in_any_command_line() {
    let s = Scratch::new();
    let files = tree::layout(20, 2 << 20);
    s3::upload("trace", &files);
    let yaml = s3_yaml("trace", "JindoRuntime", "fs.s3.endpoint", "fs.s3.accessKeyId", "fs.s3.accessKeySecret", true, &s.path("cache"));
    let file = s.write("trace.yaml", &yaml);
    let mut up = Up::start(&s, &file, &["--log-level", "trace"], "default", "trace");
    tree::assert_mount_matches(&up.mountpoint, &files);
    let mut cmdlines = String::new();
    for e in std::fs::read_dir(&up.run_dir).unwrap().flatten() {
        if e.file_name().to_string_lossy().ends_with(".pid") {
            let pid = std::fs::read_to_string(e.path()).unwrap();
            let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap_or_default();
            cmdlines.push_str(&String::from_utf8_lossy(&cmdline));
        }
    }
    assert!(cmdlines.contains("worker"), "the components' command lines were read: {cmdlines}");
    assert!(up.terminate().success(), "{}", up.stderr());
    let logs = up.stderr();
    assert!(logs.lines().count() > 200 && logs.contains("TRACE"), "not a trace-level log ({} lines)", logs.lines().count());
    for secret in [SECRET_KEY, ACCESS_KEY] {
        for (what, text) in [("stderr", &logs), ("stdout", &up.stdout()), ("command lines", &cmdlines)] {
            assert!(!text.contains(secret), "{secret} leaked into {what}");
        }
    }
}

#[test]
fn alluxio_option_names_with_secrets_from_a_directory() {
    let s = Scratch::new();
    let files = tree::layout(20, 5 << 20);
    s3::upload("alluxio", &files);
    let secrets = s.path("secrets/s3-keys");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("aws.accessKeyId"), format!("{ACCESS_KEY}\n")).unwrap();
    std::fs::write(secrets.join("aws.secretKey"), SECRET_KEY).unwrap();
    let yaml = s3_yaml("alluxio", "AlluxioRuntime", "alluxio.underfs.s3.endpoint", "aws.accessKeyId", "aws.secretKey", false, &s.path("cache"));
    let file = s.write("alluxio.yaml", &yaml);
    let dir = s.path("secrets");
    let up = Up::start(&s, &file, &["--secret-dir", dir.to_str().unwrap()], "default", "alluxio");
    tree::assert_mount_matches(&up.mountpoint, &files);
    let rt = stdout_of(&s.cistern(&["get", "runtime", "-o", "wide"]));
    assert!(rt.contains("AlluxioRuntime"), "{rt}");
}

#[test]
fn wrong_credentials_fail_clearly_without_leaking() {
    let s = Scratch::new();
    let wrong = "wrong-secret-value-1234";
    let yaml = s3_yaml("denied", "JindoRuntime", "fs.s3.endpoint", "fs.s3.accessKeyId", "fs.s3.accessKeySecret", true, &s.path("cache"))
        .replace(SECRET_KEY, wrong);
    let file = s.write("denied.yaml", &yaml);
    let o = s.cistern(&["up", "-f", file.to_str().unwrap(), "--mount-root", s.mount_root().to_str().unwrap()]);
    let err = stderr_of(&o);
    assert!(!o.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.starts_with("error: spec.mounts[0].mountPoint: cannot reach s3://"), "{err}");
    assert!(!err.contains(wrong) && !stdout_of(&o).contains(wrong), "secret leaked: {err}");
    assert!(!is_mounted(&s.mount_root().join("default/denied")));
}
