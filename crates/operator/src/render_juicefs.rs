//! The objects of a JuiceFSRuntime: JuiceFS's own engine, as Fluid runs it (seed 004). There
//! is no Cistern master: the FUSE DaemonSet runs `juicefs format` then `juicefs mount` at the
//! PV's `fluid_path`, and the worker StatefulSet runs a `juicefs mount` of its own whose cache
//! (the tiered store's paths, `quota` in MiB) is what DataLoads warm. The PV and PVC are the
//! same as for every runtime, with `mount_type: fuse.juicefs`.
//!
//! Secrets reach the pods as environment variables from the Secrets (`METAURL`, `ACCESS_KEY`,
//! `SECRET_KEY`), never as values in the objects.

use crate::objects::{host_path_volume, mount, Object};
use crate::render::{fluid_path, fuse_set, worker_set, Names, RenderOptions};
use crate::volume::{persistent_volume, persistent_volume_claim, tier_volumes};
use cistern_api::juicefs::JuiceFsVolume;
use cistern_api::DatasetPlan;
use k8s_openapi::api::core::v1::{Container, ContainerPort, EnvVar, EnvVarSource, SecretKeySelector, SecurityContext, Volume, VolumeMount};

pub const MOUNT_TYPE: &str = "fuse.juicefs";

/// Where a worker mounts the volume inside its pod (only to fill its cache).
const WORKER_MOUNT: &str = "/runtime-mnt/juicefs-worker";

/// Environment variables the JuiceFS commands read, from the encryptOptions' Secrets.
fn secret_env(plan: &DatasetPlan) -> Vec<EnvVar> {
    let spec = &plan.dataset.spec;
    let var = |name: &str| match name {
        "metaurl" | "meta-url" => Some("METAURL"),
        "access-key" => Some("ACCESS_KEY"),
        "secret-key" => Some("SECRET_KEY"),
        "token" => Some("SESSION_TOKEN"),
        _ => None,
    };
    spec.shared_encrypt_options
        .iter()
        .chain(spec.mounts.iter().flat_map(|m| &m.encrypt_options))
        .filter_map(|e| {
            var(&e.name).map(|v| {
                let key = SecretKeySelector { name: e.value_from.secret_key_ref.name.clone(), key: e.value_from.secret_key_ref.key.clone(), optional: None };
                EnvVar { name: v.into(), value_from: Some(EnvVarSource { secret_key_ref: Some(key), ..Default::default() }), ..Default::default() }
            })
        })
        .collect()
}

/// A shell line: the metadata URL comes from `$METAURL` when a Secret gives it.
fn shell(args: &[std::ffi::OsString], meta_url: &str, from_secret: bool) -> String {
    args.iter()
        .map(|a| {
            let a = a.to_string_lossy();
            if from_secret && a == meta_url {
                "\"$METAURL\"".to_string()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn container(plan: &DatasetPlan, vol: &JuiceFsVolume, opts: &RenderOptions, role: &str, mountpoint: &str, mounts: Vec<VolumeMount>) -> Container {
    let env = secret_env(plan);
    let from_secret = env.iter().any(|e| e.name == "METAURL");
    let format = shell(&vol.format_args(), &vol.meta_url, from_secret);
    let mount = shell(&vol.mount_args(std::path::Path::new(mountpoint), "0.0.0.0:9567"), &vol.meta_url, from_secret);
    Container {
        name: role.into(),
        image: Some(opts.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec!["sh".into(), "-c".into(), format!("mkdir -p '{mountpoint}' && juicefs {format} && exec juicefs {mount}")]),
        env: Some(env),
        ports: Some(vec![ContainerPort { name: Some("metrics".into()), container_port: 9567, ..Default::default() }]),
        security_context: Some(SecurityContext { privileged: Some(true), ..Default::default() }),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

pub fn render(plan: &DatasetPlan, vol: &JuiceFsVolume, opts: &RenderOptions) -> Result<Vec<Object>, String> {
    let n = Names { ns: &plan.namespace, name: &plan.name };
    let (tier_vols, tier_mounts) = tier_volumes(plan, false, "juicefs-cache")?;
    // SQLite (no metaurl): the database lives on the node, beside the cache.
    let mut meta = Vec::new();
    if vol.meta_url.starts_with("sqlite3://") {
        let dir = plan.meta_dir.display().to_string();
        meta.push((host_path_volume("meta", dir.clone()), mount("meta", dir, false)));
    }
    let volumes = |extra: Vec<Volume>| -> Vec<Volume> { tier_vols.iter().cloned().chain(meta.iter().map(|m| m.0.clone())).chain(extra).collect() };
    let mounts = |extra: Vec<VolumeMount>| -> Vec<VolumeMount> { tier_mounts.iter().cloned().chain(meta.iter().map(|m| m.1.clone())).chain(extra).collect() };

    let worker = container(plan, vol, opts, "worker", WORKER_MOUNT, mounts(vec![]));
    let workers = worker_set(plan, &n, worker, volumes(vec![]));
    let mount_dir = format!("{}/{}/{}", opts.mount_root, n.ns, n.name);
    let fuse_mount = VolumeMount { mount_propagation: Some("Bidirectional".into()), ..mount("fuse-mount", mount_dir.clone(), false) };
    let fuse_container = container(plan, vol, opts, "fuse", &fluid_path(plan, opts), mounts(vec![fuse_mount]));
    let fuse_volume = host_path_volume("fuse-mount", mount_dir);
    let fuse = fuse_set(plan, &n, fuse_container, volumes(vec![fuse_volume]));
    Ok(vec![workers.into(), fuse.into(), persistent_volume(plan, &n, opts, MOUNT_TYPE).into(), persistent_volume_claim(plan, &n).into()])
}
