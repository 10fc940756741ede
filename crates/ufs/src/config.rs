//! From a Fluid mount (scheme, `options`, `encryptOptions`) to an OpenDAL operator.
//!
//! Option names are the ones Fluid users already write for each runtime: JindoRuntime's
//! `fs.oss.*` / `fs.s3.*`, AlluxioRuntime's `alluxio.underfs.s3.*` and `aws.*`. The first name
//! set wins. Credentials never come from the environment or `~/.aws`: only from the Dataset,
//! so what a Dataset can read is what it declares.

use crate::UfsError;
use cistern_api::{MountPlan, Scheme};
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{services, Operator};
use std::time::Duration;

const S3_ENDPOINT: &[&str] = &["fs.s3.endpoint", "alluxio.underfs.s3.endpoint", "s3.endpoint", "endpoint"];
const S3_REGION: &[&str] = &["fs.s3.region", "alluxio.underfs.s3.endpoint.region", "s3.region", "region"];
const S3_KEY_ID: &[&str] = &["fs.s3.accessKeyId", "aws.accessKeyId", "s3.accessKeyId", "access-key"];
const S3_SECRET: &[&str] =
    &["fs.s3.accessKeySecret", "aws.secretKey", "s3.accessKeySecret", "secret-key"];
const OSS_ENDPOINT: &[&str] = &["fs.oss.endpoint", "alluxio.underfs.oss.endpoint", "endpoint"];
const OSS_KEY_ID: &[&str] = &["fs.oss.accessKeyId", "fs.oss.accessKeyID", "aliyun.accessKeyId"];
const OSS_SECRET: &[&str] = &["fs.oss.accessKeySecret", "aliyun.accessKeySecret"];
const GCS_ENDPOINT: &[&str] = &["fs.gcs.endpoint", "alluxio.underfs.gcs.endpoint", "endpoint"];
/// A service account's JSON key, base64-encoded (an encryptOption, from a Secret).
const GCS_CREDENTIAL: &[&str] = &["fs.gcs.credential", "fs.gcs.credentials"];
/// A file holding the key (mounted into the pods, e.g. from a Secret volume).
const GCS_CREDENTIAL_PATH: &[&str] = &["fs.gcs.credential.path", "fs.gcs.credentialsPath", "fs.gcs.credentials.path"];

/// What an operator serves: a tree under a root, or exactly one file (an http URL to a file).
pub(crate) struct Built {
    pub op: Operator,
    pub single_file: Option<String>,
    /// For `local://`: the root, resolved, that no path may leave through a symbolic link.
    pub local_root: Option<std::path::PathBuf>,
}

pub(crate) fn build(m: &MountPlan) -> Result<Built, UfsError> {
    let (_, rest) = Scheme::parse(&m.mount_point).map_err(|e| err(m, format!("mountPoint: {e}")))?;
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, format!("/{p}")),
        None => (rest, "/".to_string()),
    };
    let mut single_file = None;
    let mut local_root = None;
    let op = match m.scheme {
        Scheme::Local => {
            if !authority.is_empty() {
                return Err(err(m, format!("mountPoint: `{}` must be local:///absolute/path (three slashes)", m.mount_point)));
            }
            // OpenDAL would create a missing root; a Dataset must point at data that exists.
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => return Err(err(m, format!("mountPoint: cannot reach {}: {path} is not a directory", m.mount_point))),
                Err(e) => return Err(err(m, format!("mountPoint: cannot reach {}: {path}: {e}", m.mount_point))),
            }
            local_root = Some(std::fs::canonicalize(&path).map_err(|e| err(m, format!("mountPoint: cannot resolve {path}: {e}")))?);
            Operator::new(services::Fs::default().root(&path))
        }
        Scheme::S3 => {
            let mut b = services::S3::default().bucket(need_bucket(m, authority)?).root(&path).disable_config_load();
            b = b.disable_ec2_metadata();
            if let Some(e) = m.option(S3_ENDPOINT) {
                b = b.endpoint(&with_http(&e));
            }
            b = b.region(&m.option(S3_REGION).unwrap_or_else(|| "us-east-1".into()));
            match (m.option(S3_KEY_ID), m.option(S3_SECRET)) {
                (Some(id), Some(secret)) => b = b.access_key_id(&id).secret_access_key(&secret),
                (None, None) => b = b.skip_signature(),
                (Some(_), None) => return Err(err(m, "encryptOptions: fs.s3.accessKeyId is set but fs.s3.accessKeySecret is not; set both or neither".into())),
                (None, Some(_)) => return Err(err(m, "encryptOptions: fs.s3.accessKeySecret is set but fs.s3.accessKeyId is not; set both or neither".into())),
            }
            Operator::new(b)
        }
        Scheme::Oss => {
            let endpoint = m
                .option(OSS_ENDPOINT)
                .ok_or_else(|| err(m, "options: fs.oss.endpoint is missing; set it, e.g. oss-cn-hangzhou.aliyuncs.com".into()))?;
            let mut b = services::Oss::default().bucket(need_bucket(m, authority)?).root(&path).endpoint(&with_http_s(&endpoint));
            match (m.option(OSS_KEY_ID), m.option(OSS_SECRET)) {
                (Some(id), Some(secret)) => b = b.access_key_id(&id).access_key_secret(&secret),
                _ => b = b.skip_signature(),
            }
            Operator::new(b)
        }
        Scheme::Gcs => {
            let mut b = services::Gcs::default().bucket(need_bucket(m, authority)?).root(&path).disable_config_load().disable_vm_metadata();
            if let Some(e) = m.option(GCS_ENDPOINT) {
                b = b.endpoint(&with_http_s(&e));
            }
            match (m.option(GCS_CREDENTIAL), m.option(GCS_CREDENTIAL_PATH)) {
                (Some(c), _) => b = b.credential(&c),
                (None, Some(p)) => b = b.credential_path(&p),
                // A public bucket: no credential is looked up from the environment.
                (None, None) => b = b.skip_signature(),
            }
            Operator::new(b)
        }
        Scheme::Http | Scheme::Https => {
            let scheme = if m.scheme == Scheme::Http { "http" } else { "https" };
            let (dir, file) = match path.rsplit_once('/') {
                Some((d, f)) if !f.is_empty() => (format!("{d}/"), Some(f.to_string())),
                _ => (path.clone(), None),
            };
            single_file = file;
            Operator::new(services::Http::default().endpoint(&format!("{scheme}://{authority}")).root(&dir))
                
        }
        Scheme::Hdfs | Scheme::WebHdfs => {
            // HDFS is reached through its WebHDFS REST endpoint (the namenode's HTTP port).
            let endpoint = m.option(&["fs.hdfs.webhdfs.endpoint"]).unwrap_or_else(|| format!("http://{authority}"));
            Operator::new(services::Webhdfs::default().endpoint(&endpoint).root(&path))
        }
        Scheme::Pvc => {
            return Err(err(
                m,
                "mountPoint: pvc:// names a PersistentVolumeClaim, which exists only on a Kubernetes cluster; in embedded mode use local:///path/to/the/data".into(),
            ))
        }
        Scheme::JuiceFs => {
            return Err(err(
                m,
                "mountPoint: juicefs:// is served by the JuiceFS engine (the `juicefs` binary), not by Cistern's master and workers: run it with `cistern up`, or a JuiceFSRuntime on Kubernetes".into(),
            ))
        }
    }
    .map_err(|e| err(m, format!("mountPoint: {e}")))?;
    let op = op
        .layer(TimeoutLayer::new().with_timeout(Duration::from_secs(30)).with_io_timeout(Duration::from_secs(20)))
        .layer(RetryLayer::new().with_max_times(3).with_jitter().with_max_delay(Duration::from_secs(2)));
    Ok(Built { op, single_file, local_root })
}

fn need_bucket<'a>(m: &MountPlan, authority: &'a str) -> Result<&'a str, UfsError> {
    if authority.is_empty() {
        return Err(err(m, format!("mountPoint: `{}` has no bucket; write s3://bucket/dir", m.mount_point)));
    }
    Ok(authority)
}

fn with_http(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

/// OSS endpoints are usually written bare (`oss-cn-hangzhou.aliyuncs.com`) and served over https.
fn with_http_s(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("https://{endpoint}")
    }
}

fn err(m: &MountPlan, message: String) -> UfsError {
    UfsError::config(m, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(point: &str, options: &[(&str, &str)]) -> MountPlan {
        let (scheme, _) = Scheme::parse(point).unwrap();
        MountPlan {
            field: "spec.mounts[0]".into(),
            name: "m".into(),
            mount_point: point.into(),
            scheme,
            path: "/".into(),
            options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            secrets: Default::default(),
            read_only: true,
        }
    }

    /// gs:// (Fluid's GCS samples) builds a GCS operator from the mount alone: a public bucket
    /// signs nothing, and no credential is read from the environment.
    #[test]
    fn gcs_mounts_build_without_the_environment() {
        let built = build(&mount("gs://bucket/dir", &[("fs.gcs.endpoint", "http://127.0.0.1:1")])).unwrap();
        assert_eq!(built.op.info().scheme().to_string(), "gcs");
        assert_eq!(built.op.info().name(), "bucket");
        assert!(build(&mount("gs:///dir", &[])).err().map(|e| e.to_string()).unwrap_or_default().contains("no bucket"));
    }
}
