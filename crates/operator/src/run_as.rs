//! `runAs`: the master's and workers' processes run as the runtime's user and group, as
//! Fluid runs Alluxio's. What that takes:
//! - the master and worker containers get `runAsUser`/`runAsGroup` (and `runAsNonRoot` for a
//!   uid other than 0) without privilege escalation; the pod's `fsGroup` is the group, so the
//!   kubelet makes the credentials Secret (mode 0400) readable by it (0440, group `gid`);
//! - an init container (`own-dirs`, as root with only `CHOWN` and `DAC_READ_SEARCH`) hands the
//!   directories the process writes (the Dataset's own directory of each tier, the node's run
//!   directory of the Dataset, `namespace.meta-dir`) to `uid:gid`, recursively, and only when
//!   the top directory is not theirs already (so a restart over a large cache costs one stat).
//!   It runs `initUsers.image` when given (Fluid's init image), else Cistern's own image, with
//!   `initUsers.resources`;
//! - the FUSE client stays root (mounting needs it) and trusts the descriptor socket of a
//!   worker running as `runAs.uid` besides root and itself (`cistern_rpc::descriptors`).
//! The names `user` and `group` are not needed: the ids are used as numbers (no passwd entry
//! is made, unlike Fluid's init-users container).

use crate::render::RenderOptions;
use cistern_api::{DatasetPlan, Runtime, User};
use k8s_openapi::api::core::v1::{Capabilities, Container, PodSecurityContext, PodTemplateSpec, SecurityContext};

/// The user a runtime's master and workers run as, checked: `None` without `runAs`, and for
/// JuiceFS, whose workers mount FUSE as root.
pub fn user(plan: &DatasetPlan) -> Result<Option<(u32, u32)>, String> {
    if matches!(plan.runtime, Runtime::JuiceFS(_)) {
        return Ok(None);
    }
    let Some(User { uid, gid, .. }) = plan.runtime.spec().run_as else { return Ok(None) };
    let id = |field: &str, v: i64| u32::try_from(v).map_err(|_| format!("spec.runAs.{field}: {v} is not a user or group id (0 to 4294967295)"));
    Ok(Some((id("uid", uid)?, id("gid", gid)?)))
}

fn init_image(plan: &DatasetPlan, opts: &RenderOptions) -> (String, Option<k8s_openapi::api::core::v1::ResourceRequirements>) {
    let init = match &plan.runtime {
        Runtime::Alluxio(r) => Some(&r.spec.init_users),
        Runtime::JuiceFS(r) => Some(&r.spec.init_users),
        Runtime::Jindo(_) => None,
    };
    match init {
        Some(i) if !i.image.is_empty() => {
            let tag = if i.image_tag.is_empty() { String::new() } else { format!(":{}", i.image_tag) };
            (format!("{}{tag}", i.image), i.resources.clone())
        }
        Some(i) => (opts.image.clone(), i.resources.clone()),
        None => (opts.image.clone(), None),
    }
}

/// Makes the pod of `template` run its containers as the runtime's user, with `owned` (paths
/// inside the pod) handed to that user first. Nothing changes without `runAs`.
pub fn apply(template: &mut PodTemplateSpec, plan: &DatasetPlan, opts: &RenderOptions, owned: &[String]) {
    let Ok(Some((uid, gid))) = user(plan) else { return };
    let Some(pod) = template.spec.as_mut() else { return };
    for c in &mut pod.containers {
        c.security_context = Some(SecurityContext {
            run_as_user: Some(uid.into()),
            run_as_group: Some(gid.into()),
            run_as_non_root: (uid != 0).then_some(true),
            allow_privilege_escalation: Some(false),
            ..c.security_context.clone().unwrap_or_default()
        });
    }
    pod.security_context = Some(PodSecurityContext { fs_group: Some(gid.into()), ..pod.security_context.clone().unwrap_or_default() });
    let mounts = pod.containers.first().and_then(|c| c.volume_mounts.clone()).unwrap_or_default();
    let mounts: Vec<_> = mounts.into_iter().filter(|m| owned.iter().any(|o| std::path::Path::new(o).starts_with(&m.mount_path))).collect();
    let (image, resources) = init_image(plan, opts);
    // The directories come as arguments, never pasted into the script.
    let script = r#"owner="$1"; shift; for d in "$@"; do mkdir -p "$d" && [ "$(stat -c %u:%g "$d")" = "$owner" ] || chown -R "$owner" "$d"; done"#;
    let mut args = vec![script.to_string(), "own-dirs".into(), format!("{uid}:{gid}")];
    args.extend(owned.iter().cloned());
    let init = Container {
        name: "own-dirs".into(),
        image: Some(image),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec!["sh".into(), "-c".into()]),
        args: Some(args),
        resources,
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: Some(vec!["CHOWN".into(), "DAC_READ_SEARCH".into()]) }),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    pod.init_containers.get_or_insert_with(Vec::new).insert(0, init);
}
