//! Each kind of bad input gives one clear error naming the field and the fix.

use cistern_api::Manifest;

const GOOD_RUNTIME: &str = "---\napiVersion: data.fluid.io/v1alpha1\nkind: AlluxioRuntime\nmetadata:\n  name: demo\nspec:\n  tieredstore:\n    levels:\n      - mediumtype: MEM\n        path: /dev/shm\n        quota: 1Gi\n";

fn dataset(mount_point: &str) -> String {
    format!("apiVersion: data.fluid.io/v1alpha1\nkind: Dataset\nmetadata:\n  name: demo\nspec:\n  mounts:\n    - mountPoint: {mount_point}\n      name: data\n")
}

fn plan_err(yaml: &str) -> String {
    let mut m = Manifest::default();
    match m.add_yaml(yaml, "test.yaml") {
        Err(e) => e.to_string(),
        Ok(()) => m.plan(None).expect_err("expected an error"),
    }
}

#[test]
fn malformed_yaml() {
    let e = plan_err("kind: Dataset\nmetadata: {name: [unclosed\n");
    assert!(e.starts_with("test.yaml: not valid YAML"), "{e}");
}

#[test]
fn missing_kind_and_name() {
    assert!(plan_err("apiVersion: v1\nmetadata: {name: x}\n").contains("field `kind` is missing"));
    assert!(plan_err("apiVersion: v1\nkind: Secret\n").contains("`metadata.name` is missing"));
}

#[test]
fn wrong_field_type_names_the_path() {
    let y = "apiVersion: data.fluid.io/v1alpha1\nkind: Dataset\nmetadata:\n  name: demo\nspec:\n  mounts:\n    - name: x\n";
    let e = plan_err(y);
    assert!(e.contains("document 1 (Dataset demo): spec.mounts[0]: missing field `mountPoint`"), "{e}");
}

#[test]
fn missing_dataset_and_runtime() {
    assert!(plan_err(GOOD_RUNTIME).contains("no `kind: Dataset`"));
    let e = plan_err(&dataset("local:///tmp"));
    assert!(e.contains("no runtime for Dataset `demo`"), "{e}");
}

#[test]
fn mismatched_names() {
    let y = format!("{}{}", dataset("local:///tmp"), GOOD_RUNTIME.replace("name: demo", "name: other"));
    let e = plan_err(&y);
    assert!(e.contains("AlluxioRuntime `other` does not match Dataset `demo`"), "{e}");
}

#[test]
fn unknown_scheme() {
    let e = plan_err(&format!("{}{}", dataset("gopher://x/y"), GOOD_RUNTIME));
    assert!(e.starts_with("spec.mounts[0].mountPoint: scheme `gopher://` is not supported"), "{e}");
}

#[test]
fn bad_quantities() {
    for (q, field) in [("12GB", "quota"), ("lots", "quota")] {
        let y = format!("{}{}", dataset("local:///tmp"), GOOD_RUNTIME.replace("1Gi", q));
        let e = plan_err(&y);
        assert!(e.contains(&format!("spec.tieredstore.levels[0].{field}: `{q}` is not a quantity")), "{e}");
    }
    let y = format!("{}{}        high: \"1.5\"\n", dataset("local:///tmp"), GOOD_RUNTIME);
    assert!(plan_err(&y).contains("spec.tieredstore.levels[0].high"));
    let y = format!("{}{}        high: \"0.5\"\n        low: \"0.9\"\n", dataset("local:///tmp"), GOOD_RUNTIME);
    assert!(plan_err(&y).contains("low must not exceed high"));
}

#[test]
fn missing_secret_key_names_secret_and_key_but_no_value() {
    let y = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: keys\nstringData:\n  fs.s3.accessKeyId: AKIDSECRETVALUE\n---\napiVersion: data.fluid.io/v1alpha1\nkind: Dataset\nmetadata:\n  name: demo\nspec:\n  mounts:\n    - mountPoint: s3://b/p\n      encryptOptions:\n        - name: fs.s3.accessKeySecret\n          valueFrom:\n            secretKeyRef:\n              name: keys\n              key: fs.s3.accessKeySecret\n";
    let e = plan_err(&format!("{y}{GOOD_RUNTIME}"));
    assert!(e.contains("spec.mounts[0].encryptOptions[0] (fs.s3.accessKeySecret): Secret `keys` has no key"), "{e}");
    assert!(!e.contains("AKIDSECRETVALUE"));
    let e = plan_err(&format!("{}{GOOD_RUNTIME}", y.replace("name: keys\n              key", "name: nope\n              key")));
    assert!(e.contains("Secret `nope` is not defined"), "{e}");
}

#[test]
fn unsupported_fluid_version_and_kind() {
    let e = plan_err("apiVersion: data.fluid.io/v1beta9\nkind: Dataset\nmetadata: {name: x}\n");
    assert!(e.contains("use data.fluid.io/v1alpha1"), "{e}");
    let e = plan_err("apiVersion: data.fluid.io/v1alpha1\nkind: GooseRuntime\nmetadata: {name: x}\n");
    assert!(e.contains("kind `GooseRuntime` is not supported"), "{e}");
}

#[test]
fn names_that_are_not_kubernetes_names_and_overlapping_tiers_are_refused() {
    let crafted = dataset("local:///data").replace("name: demo\nspec", "name: ../../etc\nspec") + &GOOD_RUNTIME.replace("name: demo", "name: ../../etc");
    let e = plan_err(&crafted);
    assert!(e.contains("metadata.name: `../../etc` is not a valid Kubernetes name"), "{e}");
    let ns = dataset("local:///data").replace("  name: demo\n", "  name: demo\n  namespace: Bad_NS\n")
        + &GOOD_RUNTIME.replace("  name: demo\n", "  name: demo\n  namespace: Bad_NS\n");
    assert!(plan_err(&ns).contains("metadata.namespace: `Bad_NS`"), "{}", plan_err(&ns));
    let three = GOOD_RUNTIME.replace(
        "      - mediumtype: MEM\n        path: /dev/shm\n        quota: 1Gi\n",
        "      - {mediumtype: MEM, path: /dev/shm, quota: 1Gi}\n      - {mediumtype: SSD, path: /dev/shm, quota: 1Gi}\n      - {mediumtype: HDD, path: /dev/shm/x, quota: 1Gi}\n",
    );
    let e = plan_err(&(dataset("local:///data") + &three));
    assert!(e.contains("levels[1].path: `/dev/shm` overlaps `/dev/shm` of spec.tieredstore.levels[0]"), "{e}");
    let dots = GOOD_RUNTIME.replace("path: /dev/shm", "path: /var/cache/../../etc");
    assert!(plan_err(&(dataset("local:///data") + &dots)).contains("holds `..`"));
}
