//! The master's HTTP port: Prometheus metrics, the status as JSON, a small web page, and the
//! log level changed at runtime (Alluxio's `logLevel`), on one axum router.
//!
//! - `GET /metrics`: [`Figures`] in Prometheus text format
//! - `GET /api/v1/status`: the Dataset and runtime statuses as JSON
//! - `GET /api/v1/loglevel`, `PUT /api/v1/loglevel?level=FILTER`: read or set the log filter
//! - `GET /`: a page with the same figures for a browser
//!
//! The read-only pages are open to whoever reaches the port (as Alluxio's are). Changing the
//! log level is accepted only from a loopback peer: on the master's own machine, or through
//! `kubectl port-forward` (which connects from inside the pod), never from another pod.

use crate::metrics::Figures;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

/// What the web port shows; implemented by whoever runs the master.
pub trait WebSource: Send + Sync + 'static {
    /// Brings the figures up to date before a page is answered (default: nothing to do).
    fn refresh(&self) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn figures(&self) -> Figures;
    fn status(&self) -> serde_json::Value;
    /// The current log filters (the master's; and workers' and FUSE clients' when set).
    fn log_level(&self) -> String;
    /// Sets the log filter (`info`, `debug`, `warn,cistern_worker=trace`, ...) of `target`:
    /// `master`, `workers`, `fuse` or `all`.
    fn set_log_level(&self, target: &str, filter: &str) -> Result<(), String>;
}

type Source = Arc<dyn WebSource>;

pub fn router(source: Source) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/api/v1/loglevel", get(log_level).put(set_log_level).post(set_log_level))
        .with_state(source)
}

/// Serves until the listener fails or the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, source: Source) -> std::io::Result<()> {
    axum::serve(listener, router(source).into_make_service_with_connect_info::<std::net::SocketAddr>()).await
}

/// OpenMetrics to a scraper that asks for it (Prometheus does), the classic text format to
/// anything else (curl, promtool).
async fn metrics(State(s): State<Source>, headers: axum::http::HeaderMap) -> Response {
    s.refresh().await;
    let body = s.figures().encode();
    let wants_openmetrics = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("application/openmetrics-text"));
    if wants_openmetrics {
        ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
    } else {
        ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::metrics::to_classic(&body)).into_response()
    }
}

async fn status(State(s): State<Source>) -> Json<serde_json::Value> {
    s.refresh().await;
    Json(s.status())
}

async fn log_level(State(s): State<Source>) -> String {
    s.log_level() + "\n"
}

#[derive(serde::Deserialize)]
struct LevelQuery {
    level: Option<String>,
    /// master (the default), workers, fuse or all.
    target: Option<String>,
}

async fn set_log_level(State(s): State<Source>, ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>, Query(q): Query<LevelQuery>) -> (StatusCode, String) {
    if !peer.ip().is_loopback() {
        return (StatusCode::FORBIDDEN, "the log level is changed from the master's own machine only (127.0.0.1, or kubectl port-forward)\n".into());
    }
    let Some(level) = q.level.filter(|l| !l.trim().is_empty()) else {
        return (StatusCode::BAD_REQUEST, "missing ?level=; give a filter such as info or debug\n".into());
    };
    let target = q.target.unwrap_or_else(|| "master".into());
    match s.set_log_level(&target, &level) {
        Ok(()) => (StatusCode::OK, format!("log level of {target} set to {level}\n")),
        Err(e) => (StatusCode::BAD_REQUEST, format!("level `{level}`: {e}\n")),
    }
}

async fn index(State(s): State<Source>) -> Html<String> {
    s.refresh().await;
    let f = s.figures();
    let or_calc = |v: Option<u64>| v.map_or("[Calculating]".to_string(), |v| v.to_string());
    let mut rows = vec![
        ("UFS total bytes", or_calc(f.ufs_total_bytes)),
        ("Files", or_calc(f.ufs_files)),
        ("Cached bytes", f.cached_bytes.to_string()),
        ("Capacity bytes", f.capacity_bytes.to_string()),
        ("Served from local cache", f.local_bytes.to_string()),
        ("Served from the UFS", f.ufs_bytes.to_string()),
        ("Of those, read by short-circuit", f.short_circuit_bytes.to_string()),
        ("UFS requests", f.ufs_fetches.to_string()),
        ("Corrupt blocks refetched", f.corrupt_blocks.to_string()),
    ];
    for l in &f.levels {
        rows.push(("Level", format!("worker {} {}: {} of {} bytes", l.worker, l.medium, l.used_bytes, l.quota_bytes)));
    }
    let body: String = rows.iter().map(|(k, v)| format!("<tr><th>{k}</th><td>{}</td></tr>", escape(v))).collect();
    Html(format!(
        "<!doctype html><html><head><title>cistern {ns}/{name}</title><meta http-equiv=refresh content=2></head>\
         <body><h1>Dataset {ns}/{name}</h1><table>{body}</table>\
         <p><a href=/metrics>metrics</a> · <a href=/api/v1/status>status</a> · <a href=/api/v1/loglevel>log level</a></p></body></html>",
        ns = escape(&f.namespace),
        name = escape(&f.dataset),
    ))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use std::sync::Mutex;
    use tower::ServiceExt;

    struct Fake(Mutex<String>);
    impl WebSource for Fake {
        fn figures(&self) -> Figures {
            Figures::default()
        }
        fn status(&self) -> serde_json::Value {
            serde_json::json!({})
        }
        fn log_level(&self) -> String {
            self.0.lock().unwrap().clone()
        }
        fn set_log_level(&self, _target: &str, filter: &str) -> Result<(), String> {
            *self.0.lock().unwrap() = filter.to_string();
            Ok(())
        }
    }

    async fn put_from(source: &Arc<Fake>, peer: &str) -> StatusCode {
        let request = Request::builder()
            .method("PUT")
            .uri("/api/v1/loglevel?level=debug")
            .extension(ConnectInfo::<std::net::SocketAddr>(peer.parse().unwrap()))
            .body(Body::empty())
            .unwrap();
        router(source.clone()).oneshot(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn the_log_level_is_changed_from_loopback_only() {
        let source = Arc::new(Fake(Mutex::new("info".into())));
        assert_eq!(put_from(&source, "10.1.2.3:5000").await, StatusCode::FORBIDDEN);
        assert_eq!(source.log_level(), "info", "a peer on the network changed the log level");
        assert_eq!(put_from(&source, "127.0.0.1:5000").await, StatusCode::OK);
        assert_eq!(source.log_level(), "debug");
        assert_eq!(put_from(&source, "[::1]:5000").await, StatusCode::OK);
    }
}
