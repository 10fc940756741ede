//! The Dataset's credentials Secret (`<name>-cistern-credentials`): the reference key the
//! master signs file references with, the Dataset's CA and one certificate per role (see the
//! README's security section). Made once, with random keys, so it is created when missing
//! rather than server-side applied (which would replace it at every reconcile); owned by the
//! runtime, so it goes with it. Each pod mounts only its own role's files
//! ([`crate::render::credentials_volume`]).
//!
//! Rotation: delete the Secret; the next reconcile makes a new one, and the runtime's pods
//! must then be restarted (a rolling restart) to pick it up. Certificates are valid for
//! [`cistern_rpc::tls::VALIDITY_DAYS`] days.

use crate::controller::Error;
use crate::render::credentials_secret;
use cistern_rpc::tls::{Authority, Role};
use cistern_rpc::RefKey;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use std::collections::BTreeMap;

/// A new Dataset's credentials, by file name.
pub fn new_credentials() -> Result<BTreeMap<String, Vec<u8>>, String> {
    let ca = Authority::generate()?;
    let mut data = BTreeMap::new();
    data.insert("ref.key".to_string(), RefKey::generate_bytes().to_vec());
    data.insert("ca.pem".to_string(), ca.cert_pem.clone().into_bytes());
    data.insert("ca.key".to_string(), ca.key_pem().as_bytes().to_vec());
    for role in Role::ALL {
        let (cert, key) = ca.issue(&[role])?;
        data.insert(format!("{}.pem", role.name()), cert.into_bytes());
        data.insert(format!("{}.key", role.name()), key.into_bytes());
    }
    Ok(data)
}

/// The Secret object for `name`'s credentials in `ns`, owned by `owner`.
pub fn secret(ns: &str, name: &str, owner: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>) -> Result<Secret, String> {
    let data = new_credentials()?.into_iter().map(|(k, v)| (k, ByteString(v))).collect();
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(credentials_secret(name)),
            namespace: Some(ns.to_string()),
            labels: Some(BTreeMap::from([("app".to_string(), "cistern".to_string())])),
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    })
}

/// Creates the credentials Secret when there is none yet.
pub async fn ensure(client: &Client, ns: &str, name: &str, owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference) -> Result<(), Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    if api.get_metadata_opt(&credentials_secret(name)).await?.is_some() {
        return Ok(());
    }
    let s = secret(ns, name, Some(owner)).map_err(Error::Invalid)?;
    match api.create(&PostParams::default(), &s).await {
        Ok(_) => Ok(()),
        // Made by another reconcile meanwhile.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
