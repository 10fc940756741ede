//! `cistern webhook`: the mutating admission webhook for Pods (HTTPS, `POST /mutate-pods`).
//! A pod that mounts the PVC of a Dataset in its namespace gets node affinity toward the nodes
//! holding that Dataset's cache ([`cistern_operator::webhook`]); any other pod is allowed with
//! no patch. Every error allows the pod unpatched (the chart's `failurePolicy` decides what the
//! API server does when the webhook itself is down).

use anyhow::{anyhow, Context, Result};
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use cistern_api::Dataset;
use cistern_operator::webhook::{affinity_patch, claims};
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::Api;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct WebhookArgs {
    /// Where the API server calls the webhook (HTTPS).
    #[arg(long, default_value = "0.0.0.0:9443")]
    pub listen: String,
    /// The serving certificate and key: DIR/tls.crt and DIR/tls.key (a Secret the chart makes).
    #[arg(long)]
    pub tls_dir: PathBuf,
    /// Make a CA and a serving certificate for these host names or IPs into --tls-dir
    /// (tls.crt, tls.key and ca.crt, the caBundle), for running outside a cluster.
    #[arg(long, value_delimiter = ',')]
    pub self_signed: Vec<String>,
    /// Require the cache's nodes instead of preferring them, for every pod.
    #[arg(long)]
    pub require_cache_affinity: bool,
    /// The image of injected FUSE sidecars (the one that holds `cistern`).
    #[arg(long, default_value_t = cistern_operator::RenderOptions::default().image)]
    pub image: String,
}

struct Ctx {
    client: kube::Client,
    require: bool,
    image: String,
}

pub fn run(args: WebhookArgs) -> Result<()> {
    if !args.self_signed.is_empty() {
        let ca = cistern_rpc::tls::Authority::generate().map_err(|e| anyhow!(e))?;
        let (cert, key) = ca.issue_server(&args.self_signed).map_err(|e| anyhow!(e))?;
        crate::rundir::create_private_dir(&args.tls_dir)?;
        std::fs::write(args.tls_dir.join("ca.crt"), &ca.cert_pem)?;
        std::fs::write(args.tls_dir.join("tls.crt"), cert)?;
        crate::credentials::write_private(&args.tls_dir.join("tls.key"), key.as_bytes())?;
    }
    let cert = std::fs::read(args.tls_dir.join("tls.crt")).with_context(|| format!("{}/tls.crt", args.tls_dir.display()))?;
    let key = std::fs::read(args.tls_dir.join("tls.key")).with_context(|| format!("{}/tls.key", args.tls_dir.display()))?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs = rustls_pemfile_certs(&cert)?;
    use rustls::pki_types::pem::PemObject;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&key).map_err(|e| anyhow!("{}/tls.key: {e}", args.tls_dir.display()))?;
    let tls = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).map_err(|e| anyhow!("the serving certificate: {e}"))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(2).build()?;
    rt.block_on(async {
        let client = kube::Client::try_default().await.context("cannot reach the Kubernetes API")?;
        let ctx = Arc::new(Ctx { client, require: args.require_cache_affinity, image: args.image.clone() });
        let app = Router::new().route("/mutate-pods", post(mutate)).with_state(ctx);
        let listener = tokio::net::TcpListener::bind(&args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
        tracing::info!("admission webhook on https://{}", listener.local_addr()?);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((tcp, _)) = accepted else { continue };
                    let (acceptor, app) = (acceptor.clone(), app.clone());
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else { return };
                        let service = hyper_util::service::TowerToHyperService::new(app);
                        let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tls), service).await;
                    });
                }
                _ = super::stop_requested() => return Ok(()),
            }
        }
    })
}

fn rustls_pemfile_certs(pem: &[u8]) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| anyhow!("tls.crt: {e}"))
}

/// One AdmissionReview: the pod, the Datasets among its claims, the patch.
async fn mutate(State(ctx): State<Arc<Ctx>>, Json(review): Json<Value>) -> Json<Value> {
    // Checked into typed values: a review that is not of a Pod gets one clear refusal.
    let request: AdmissionRequest<Pod> = match serde_json::from_value::<AdmissionReview<Pod>>(review).map_err(|e| e.to_string()).and_then(|r| r.try_into().map_err(|e: kube::core::admission::ConvertAdmissionReviewError| e.to_string())) {
        Ok(r) => r,
        Err(e) => return answer(AdmissionResponse::invalid(format!("not an AdmissionReview of a Pod: {e}"))),
    };
    let Some(pod) = request.object.as_ref() else { return answer(AdmissionResponse::from(&request)) };
    let ns = request.namespace.as_deref().unwrap_or("default");
    let datasets: Api<Dataset> = Api::namespaced(ctx.client.clone(), ns);
    let mut used = Vec::new();
    let mut found = Vec::new();
    for claim in claims(pod) {
        match datasets.get_opt(&claim).await {
            Ok(Some(ds)) => {
                used.push(claim);
                found.push(ds);
            }
            Ok(None) => {}
            // Allowed unpatched: a webhook that cannot look never blocks a pod.
            Err(e) => tracing::warn!(namespace = ns, claim, "cannot look up the Dataset: {e}"),
        }
    }
    if cistern_operator::sidecar::wanted(pod) {
        // A serverless pod: FUSE sidecars instead of node affinity (its node has no agents).
        let mut served = Vec::new();
        for (name, ds) in used.into_iter().zip(found) {
            // A reference is served by its physical Dataset's runtime, once bound (which
            // needs the physical Dataset's consent for another namespace).
            let physical = match cistern_operator::reference::target(&ds) {
                Some(Ok(p)) if ds.status.as_ref().is_some_and(|s| s.phase == "Bound") => Some(p),
                Some(_) => {
                    tracing::warn!(namespace = ns, dataset = name, "a reference that is not bound: the pod is admitted without a sidecar for it");
                    continue;
                }
                None => None,
            };
            let (rns, rname) = physical.clone().unwrap_or_else(|| (ns.to_string(), name.clone()));
            match cistern_operator::controller::find_runtime(&ctx.client, &rns, &rname).await {
                Ok(Some(rt)) => served.push(cistern_operator::sidecar::Target { claim: name, runtime: rt, physical }),
                Ok(None) => tracing::warn!(namespace = ns, dataset = name, "no runtime yet: the pod is admitted without a sidecar for it"),
                Err(e) => tracing::warn!(namespace = ns, dataset = name, "cannot look up the runtime: {e}"),
            }
        }
        let ops = cistern_operator::sidecar::patch(pod, ns, &served, &ctx.image);
        let patch = (!served.is_empty()).then_some(ops);
        return answer(patched(&request, patch));
    }
    let patch = affinity_patch(pod, ns, &used, ctx.require);
    answer(patched(&request, patch))
}

/// Allowed, with `ops` as its JSON Patch when there are any.
fn patched(request: &AdmissionRequest<Pod>, ops: Option<Vec<json_patch::PatchOperation>>) -> AdmissionResponse {
    let allowed = AdmissionResponse::from(request);
    match ops {
        Some(ops) => allowed.clone().with_patch(json_patch::Patch(ops)).unwrap_or_else(|e| {
            tracing::warn!("cannot serialize the patch ({e}): the pod is admitted unpatched");
            allowed
        }),
        None => allowed,
    }
}

fn answer(response: AdmissionResponse) -> Json<Value> {
    Json(serde_json::to_value(response.into_review()).unwrap_or_default())
}
