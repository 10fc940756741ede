//! The master's HTTP port: Prometheus metrics, the status as JSON, the web page, and the
//! log level changed at runtime (Alluxio's `logLevel`), on one axum router.
//!
//! - `GET /metrics`: [`Figures`] in Prometheus text format
//! - `GET /api/v1/status`: the Dataset and runtime statuses as JSON
//! - `GET /api/v1/overview`: the status, the figures, version and uptime (the page's header)
//! - `GET /api/v1/workers`: every worker heard from, its state and figures
//! - `GET /api/v1/history`: the figures every 5 s over the last hour ([`history`])
//! - `GET /api/v1/browse?path=/dir`: a directory with cached bytes per entry ([`crate::browse`])
//! - `GET /api/v1/dataloads`: DataLoads with phase and progress
//! - `GET /api/v1/loglevel`, `PUT /api/v1/loglevel?level=FILTER&target=T`: read or set filters
//! - `GET /`: the page (`web/page/`: HTML, CSS and script built into the binary, no CDN)
//!
//! The read-only pages are open to whoever reaches the port (as Alluxio's are). Changing the
//! log level is accepted only from a loopback peer: on the master's own machine, or through
//! `kubectl port-forward` (which connects from inside the pod), never from another pod.

pub mod history;

use crate::metrics::Figures;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use history::{History, Sample};
use std::sync::Arc;
use std::time::Instant;

/// What the web port shows; implemented by whoever runs the master.
pub trait WebSource: Send + Sync + 'static {
    /// Brings the figures up to date before a page is answered (default: nothing to do).
    fn refresh(&self) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn figures(&self) -> Figures;
    fn status(&self) -> serde_json::Value;
    /// Every worker heard from: id, address, node, live, seconds since its last heartbeat,
    /// log level and its figures (default: none).
    fn workers(&self) -> serde_json::Value {
        serde_json::json!([])
    }
    /// A directory of the Dataset, each entry with its size and cached bytes
    /// ([`crate::browse::Listing`]); an error names the path and the fix (default: no
    /// browser).
    fn browse(&self, _path: String) -> futures::future::BoxFuture<'_, Result<serde_json::Value, (StatusCode, String)>> {
        Box::pin(async { Err((StatusCode::NOT_FOUND, "this master has no file browser".to_string())) })
    }
    /// The Dataset's DataLoads with their phase and progress (default: none).
    fn dataloads(&self) -> futures::future::BoxFuture<'_, serde_json::Value> {
        Box::pin(async { serde_json::json!([]) })
    }
    /// The current log filters (the master's; and workers' and FUSE clients' when set).
    fn log_level(&self) -> String;
    /// Sets the log filter (`info`, `debug`, `warn,cistern_worker=trace`, ...) of `target`:
    /// `master`, `workers`, `fuse` or `all`.
    fn set_log_level(&self, target: &str, filter: &str) -> Result<(), String>;
}

type Source = Arc<dyn WebSource>;

#[derive(Clone)]
struct Web {
    source: Source,
    history: Arc<History>,
    started: Instant,
}

pub fn router(source: Source) -> Router {
    router_with(source, Arc::default())
}

fn router_with(source: Source, history: Arc<History>) -> Router {
    let web = Web { source, history, started: Instant::now() };
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("web/page/app.js")) }))
        .route("/style.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("web/page/style.css")) }))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/api/v1/overview", get(overview))
        .route("/api/v1/workers", get(workers))
        .route("/api/v1/history", get(history_samples))
        .route("/api/v1/browse", get(browse))
        .route("/api/v1/dataloads", get(dataloads))
        .route("/api/v1/loglevel", get(log_level).put(set_log_level).post(set_log_level))
        .with_state(web)
}

/// Serves until the listener fails or the task is dropped; samples the figures for the page's
/// plots meanwhile.
pub async fn serve(listener: tokio::net::TcpListener, source: Source) -> std::io::Result<()> {
    let history = Arc::new(History::default());
    let sampler = {
        let (source, history) = (source.clone(), history.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(history::SAMPLE_EVERY);
            loop {
                tick.tick().await;
                history.push(Sample::of(&source.figures()));
            }
        })
    };
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _sampler = AbortOnDrop(sampler);
    axum::serve(listener, router_with(source, history).into_make_service_with_connect_info::<std::net::SocketAddr>()).await
}

/// OpenMetrics to a scraper that asks for it (Prometheus does), the classic text format to
/// anything else (curl, promtool).
async fn metrics(State(w): State<Web>, headers: axum::http::HeaderMap) -> Response {
    w.source.refresh().await;
    let body = w.source.figures().encode();
    let wants_openmetrics = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("application/openmetrics-text"));
    if wants_openmetrics {
        ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
    } else {
        ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::metrics::to_classic(&body)).into_response()
    }
}

async fn status(State(w): State<Web>) -> Json<serde_json::Value> {
    w.source.refresh().await;
    Json(w.source.status())
}

async fn overview(State(w): State<Web>) -> Json<serde_json::Value> {
    w.source.refresh().await;
    Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptimeSeconds": w.started.elapsed().as_secs(),
        "status": w.source.status(),
        "figures": w.source.figures(),
    }))
}

async fn workers(State(w): State<Web>) -> Json<serde_json::Value> {
    w.source.refresh().await;
    Json(w.source.workers())
}

async fn history_samples(State(w): State<Web>) -> Json<Vec<Sample>> {
    Json(w.history.with(Sample::of(&w.source.figures())))
}

#[derive(serde::Deserialize)]
struct BrowseQuery {
    path: Option<String>,
}

async fn browse(State(w): State<Web>, Query(q): Query<BrowseQuery>) -> Response {
    match w.source.browse(q.path.unwrap_or_else(|| "/".into())).await {
        Ok(listing) => Json(listing).into_response(),
        Err((code, message)) => (code, message + "\n").into_response(),
    }
}

async fn dataloads(State(w): State<Web>) -> Json<serde_json::Value> {
    Json(w.source.dataloads().await)
}

async fn log_level(State(w): State<Web>) -> String {
    w.source.log_level() + "\n"
}

#[derive(serde::Deserialize)]
struct LevelQuery {
    level: Option<String>,
    /// master (the default), workers, fuse or all.
    target: Option<String>,
}

async fn set_log_level(State(w): State<Web>, ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>, Query(q): Query<LevelQuery>) -> (StatusCode, String) {
    if !peer.ip().is_loopback() {
        return (StatusCode::FORBIDDEN, "the log level is changed from the master's own machine only (127.0.0.1, or kubectl port-forward)\n".into());
    }
    let Some(level) = q.level.filter(|l| !l.trim().is_empty()) else {
        return (StatusCode::BAD_REQUEST, "missing ?level=; give a filter such as info or debug\n".into());
    };
    let target = q.target.unwrap_or_else(|| "master".into());
    match w.source.set_log_level(&target, &level) {
        Ok(()) => (StatusCode::OK, format!("log level of {target} set to {level}\n")),
        Err(e) => (StatusCode::BAD_REQUEST, format!("level `{level}`: {e}\n")),
    }
}

async fn index() -> Html<&'static str> {
    Html(include_str!("web/page/index.html"))
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
