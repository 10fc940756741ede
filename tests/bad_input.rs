//! Bad input to `cistern up`: each case exits non-zero with one clear line that names the
//! field or path and the fix, and leaves no mount behind.

mod support;

use support::*;

/// Runs `cistern up` expecting failure; returns its one-line error.
fn up_fails(s: &Scratch, file: &std::path::Path, extra: &[&str]) -> String {
    let root = s.mount_root();
    let mut args = vec!["up", "-f", file.to_str().unwrap(), "--mount-root", root.to_str().unwrap()];
    args.extend_from_slice(extra);
    // Bounded: an input that wrongly starts serving must fail the test, not hang it.
    let (out, errf) = (s.path("up-fails.out"), s.path("up-fails.err"));
    let mut child = std::process::Command::new(cistern_bin())
        .args(&args)
        .env("CISTERN_RUN_ROOT", s.run_root())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&errf).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > deadline {
            // SAFETY: SIGTERM to our own child, so that it unmounts what it mounted.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
            panic!("expected a failure, but `up` still ran after 60s:\n{}", std::fs::read_to_string(&out).unwrap_or_default());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let err = std::fs::read_to_string(&errf).unwrap();
    assert!(!status.success(), "expected failure, got success:\n{}", std::fs::read_to_string(&out).unwrap_or_default());
    assert_eq!(err.trim_end().lines().count(), 1, "expected one line:\n{err}");
    assert!(err.starts_with("error: "), "{err}");
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!info.contains(s.mount_root().to_str().unwrap()), "a mount was left behind");
    err
}

fn local_yaml(s: &Scratch, name: &str) -> String {
    std::fs::create_dir_all(s.path("ufs")).unwrap();
    dataset_yaml(name, &format!("local://{}", s.path("ufs").display()), "", &s.path("cache"), "64Mi", 1)
}

#[test]
fn malformed_yaml() {
    let s = Scratch::new();
    let f = s.write("bad.yaml", "apiVersion: data.fluid.io/v1alpha1\nkind: Dataset\nmetadata: {name: [oops\n");
    let e = up_fails(&s, &f, &[]);
    assert!(e.contains("bad.yaml: not valid YAML"), "{e}");
}

#[test]
fn missing_file() {
    let s = Scratch::new();
    let e = up_fails(&s, &s.path("nope.yaml"), &[]);
    assert!(e.contains("nope.yaml: cannot read it"), "{e}");
}

#[test]
fn unknown_scheme_and_cluster_only_schemes() {
    let s = Scratch::new();
    let cases = [
        ("gopher://host/x", "spec.mounts[0].mountPoint: scheme `gopher://` is not supported"),
        ("pvc://my-claim/dir", "pvc:// names a PersistentVolumeClaim"),
        ("juicefs:///demo", "juicefs:// is served by the JuiceFS engine"),
    ];
    for (mp, want) in cases {
        let y = dataset_yaml("demo", mp, "", &s.path("cache"), "64Mi", 1);
        let f = s.write("ds.yaml", &y);
        let e = up_fails(&s, &f, &[]);
        assert!(e.contains(want), "{mp}: {e}");
    }
}

#[test]
fn unparsable_quantity_names_the_field() {
    let s = Scratch::new();
    let y = local_yaml(&s, "demo").replace("quota: 64Mi", "quota: 12GB");
    let f = s.write("ds.yaml", &y);
    let e = up_fails(&s, &f, &[]);
    assert!(e.contains("spec.tieredstore.levels[0].quota: `12GB` is not a quantity"), "{e}");
}

#[test]
fn missing_secret_key() {
    let s = Scratch::new();
    let extra = "      encryptOptions:\n        - name: fs.s3.accessKeySecret\n          valueFrom:\n            secretKeyRef:\n              name: keys\n              key: fs.s3.accessKeySecret\n";
    let y = dataset_yaml("demo", "s3://bucket/dir", extra, &s.path("cache"), "64Mi", 1);
    let f = s.write("ds.yaml", &y);
    let e = up_fails(&s, &f, &[]);
    assert!(e.contains("encryptOptions[0] (fs.s3.accessKeySecret): Secret `keys` is not defined"), "{e}");
}

#[test]
fn unreachable_endpoint() {
    let s = Scratch::new();
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let extra = "      options:\n        fs.s3.endpoint: http://127.0.0.1:1\n";
    let y = dataset_yaml("demo", "s3://bucket/dir", extra, &s.path("cache"), "64Mi", 1);
    let f = s.write("ds.yaml", &y);
    let e = up_fails(&s, &f, &[]);
    assert!(e.contains("spec.mounts[0].mountPoint: cannot reach s3://bucket/dir"), "{e}");
    assert!(!s.mount_root().join("default/demo").exists(), "mount point dir left behind");
}

#[test]
fn missing_local_directory() {
    let s = Scratch::new();
    let y = dataset_yaml("demo", "local:///definitely/not/here", "", &s.path("cache"), "64Mi", 1);
    let f = s.write("ds.yaml", &y);
    let e = up_fails(&s, &f, &[]);
    assert!(e.contains("cannot reach local:///definitely/not/here"), "{e}");
}

#[test]
fn mount_path_not_empty() {
    let s = Scratch::new();
    let f = s.write("ds.yaml", &local_yaml(&s, "demo"));
    let mp = s.mount_root().join("default/demo");
    std::fs::create_dir_all(&mp).unwrap();
    std::fs::write(mp.join("precious.txt"), "keep me").unwrap();
    let e = up_fails(&s, &f, &[]);
    assert!(e.contains("is not an empty directory"), "{e}");
    assert_eq!(std::fs::read_to_string(mp.join("precious.txt")).unwrap(), "keep me", "nothing lost");
}

#[test]
fn mount_path_already_a_mount_point() {
    let s = Scratch::new();
    let f = s.write("ds.yaml", &local_yaml(&s, "demo"));
    let mp = s.mount_root().join("default/demo");
    std::fs::create_dir_all(&mp).unwrap();
    let st = std::process::Command::new("mount").args(["-t", "tmpfs", "tmpfs"]).arg(&mp).status().unwrap();
    assert!(st.success());
    let o = s.cistern(&["up", "-f", f.to_str().unwrap(), "--mount-root", s.mount_root().to_str().unwrap()]);
    let _ = std::process::Command::new("umount").arg(&mp).status();
    let err = stderr_of(&o);
    assert!(!o.status.success());
    assert!(err.contains("is already a mount point") && err.contains("umount -l"), "{err}");
}

#[test]
fn second_up_of_the_same_dataset() {
    let s = Scratch::new();
    let f = s.write("ds.yaml", &local_yaml(&s, "demo"));
    let up = Up::start(&s, &f, &[], "default", "demo");
    let o = s.cistern(&["up", "-f", f.to_str().unwrap(), "--mount-root", s.mount_root().to_str().unwrap()]);
    let err = stderr_of(&o);
    assert!(!o.status.success());
    assert!(err.contains("Dataset default/demo is already served by `cistern up`"), "{err}");
    assert!(is_mounted(&up.mountpoint), "the first one must keep serving");
}

#[test]
fn mismatched_names() {
    let s = Scratch::new();
    let y = local_yaml(&s, "demo").replacen("name: demo\nspec:\n  replicas", "name: other\nspec:\n  replicas", 1);
    let f = s.write("ds.yaml", &y);
    let e = up_fails(&s, &f, &[]);
    assert!(e.contains("JindoRuntime `other` does not match Dataset `demo`"), "{e}");
}
