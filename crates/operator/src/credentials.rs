//! The Dataset's credentials Secret (`<name>-cistern-credentials`): the reference key the
//! master signs file references with, the Dataset's CA and one certificate per role (see the
//! README's security section). Made once, with random keys, so it is created when missing
//! rather than server-side applied (which would replace it at every reconcile); owned by the
//! runtime, so it goes with it. Each pod mounts only its own role's files
//! ([`crate::render::credentials_volume`]).
//!
//! **Rotation** is a rolling restart. The Secret records when its certificates expire
//! ([`NOT_AFTER`]) and a serial ([`SERIAL`]). Once fewer than [`RENEW_BEFORE_DAYS`] days are
//! left, the operator issues new certificates with the same CA (so old and new pods trust
//! each other during the roll) and bumps the serial; the serial is an annotation of every pod
//! template, so the StatefulSets and the DaemonSet roll their pods onto the new files.

use crate::controller::Error;
use crate::render::credentials_secret;
use cistern_rpc::tls::{Authority, Role, VALIDITY_DAYS};
use cistern_rpc::RefKey;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use std::collections::BTreeMap;

/// When the Secret's certificates expire (RFC 3339).
pub const NOT_AFTER: &str = "cistern.io/credentials-not-after";
/// Bumped at every renewal; pod templates carry it, so a renewal rolls the pods.
pub const SERIAL: &str = "cistern.io/credentials-serial";
/// Certificates are renewed this many days before they expire.
pub const RENEW_BEFORE_DAYS: i64 = 30;

fn not_after_from_now() -> String {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * VALIDITY_DAYS);
    t.to_string()
}

/// One certificate and key per role, issued by `ca`.
fn issue_all(ca: &Authority, data: &mut BTreeMap<String, Vec<u8>>) -> Result<(), String> {
    for role in Role::ALL {
        let (cert, key) = ca.issue(&[role])?;
        data.insert(format!("{}.pem", role.name()), cert.into_bytes());
        data.insert(format!("{}.key", role.name()), key.into_bytes());
    }
    Ok(())
}

/// A new Dataset's credentials, by file name.
pub fn new_credentials() -> Result<BTreeMap<String, Vec<u8>>, String> {
    let ca = Authority::generate()?;
    let mut data = BTreeMap::new();
    data.insert("ref.key".to_string(), RefKey::generate_bytes().to_vec());
    data.insert("ca.pem".to_string(), ca.cert_pem.clone().into_bytes());
    data.insert("ca.key".to_string(), ca.key_pem().as_bytes().to_vec());
    issue_all(&ca, &mut data)?;
    Ok(data)
}

/// The Secret object for `name`'s credentials in `ns`, owned by `owner`.
pub fn secret(ns: &str, name: &str, owner: Option<OwnerReference>) -> Result<Secret, String> {
    let data = new_credentials()?.into_iter().map(|(k, v)| (k, ByteString(v))).collect();
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(credentials_secret(name)),
            namespace: Some(ns.to_string()),
            labels: Some(BTreeMap::from([("app".to_string(), "cistern".to_string())])),
            annotations: Some(BTreeMap::from([(NOT_AFTER.to_string(), not_after_from_now()), (SERIAL.to_string(), "1".to_string())])),
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    })
}

/// True when certificates expiring at `not_after` are due for renewal now.
pub fn due(not_after: &str) -> bool {
    match not_after.parse::<jiff::Timestamp>() {
        Ok(t) => t - jiff::SignedDuration::from_hours(24 * RENEW_BEFORE_DAYS) <= jiff::Timestamp::now(),
        Err(_) => true, // unreadable: renew rather than run on certificates of unknown age
    }
}

/// Creates the credentials Secret when there is none, renews its certificates when they are
/// due; returns its serial (for the pod templates).
pub async fn ensure(client: &Client, ns: &str, name: &str, owner: OwnerReference) -> Result<String, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret_name = credentials_secret(name);
    let Some(existing) = api.get_opt(&secret_name).await? else {
        let s = secret(ns, name, Some(owner)).map_err(Error::Invalid)?;
        return match api.create(&PostParams::default(), &s).await {
            Ok(_) => Ok("1".into()),
            // Made by another reconcile meanwhile: its serial is 1 as well.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok("1".into()),
            Err(e) => Err(e.into()),
        };
    };
    let annotations = existing.metadata.annotations.clone().unwrap_or_default();
    let serial = annotations.get(SERIAL).cloned().unwrap_or_else(|| "1".into());
    if !annotations.get(NOT_AFTER).is_some_and(|t| due(t)) {
        return Ok(serial);
    }
    let data = existing.data.unwrap_or_default();
    let text = |k: &str| data.get(k).map(|b| String::from_utf8_lossy(&b.0).into_owned()).ok_or_else(|| Error::Invalid(format!("{ns}/{secret_name}: no {k} to renew the certificates with; delete the Secret to make a new one")));
    let ca = Authority::from_pem(text("ca.pem")?, text("ca.key")?);
    let mut renewed = BTreeMap::new();
    issue_all(&ca, &mut renewed).map_err(Error::Invalid)?;
    let next = (serial.parse::<u64>().unwrap_or(1) + 1).to_string();
    let data: BTreeMap<String, ByteString> = renewed.into_iter().map(|(k, v)| (k, ByteString(v))).collect();
    // The renewed certificates and their annotations; the CA and the reference key stay.
    let patch = Secret {
        metadata: ObjectMeta {
            annotations: Some(BTreeMap::from([(NOT_AFTER.to_string(), not_after_from_now()), (SERIAL.to_string(), next.clone())])),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    api.patch(&secret_name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    tracing::info!(namespace = ns, secret = secret_name, serial = next, "renewed the Dataset's certificates; rolling its pods");
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_due_a_month_before_they_expire() {
        assert!(!due(&not_after_from_now()));
        let soon = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 10)).to_string();
        assert!(due(&soon));
        assert!(due("yesterday"), "an unreadable date renews");
    }
}
