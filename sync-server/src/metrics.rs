//! Prometheus metrics: request counts and latencies by route (the matched route, never the raw
//! path, and the method only when it is a standard one, so label cardinality stays fixed), plus
//! the cart's own events. They are served on a listener of their own ([`router`]), never on the
//! API's, as in axum's metrics example.

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Instant;

/// The process-wide recorder (several servers in one test process share it).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("cartsync_http_request_duration_seconds".into()),
                &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
            )
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Only fails if another recorder was installed first, which this process never does.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// The metrics listener's routes: `GET /metrics` in the Prometheus text format.
pub fn router() -> Router {
    Router::new().route("/metrics", axum::routing::get(|| async { handle().render() }))
}

/// The label of a matched route, kept once for the process (routes are a fixed few), so
/// counting a request builds no string.
fn route_label(req: &Request) -> &'static str {
    static ROUTES: OnceLock<std::sync::RwLock<std::collections::HashSet<&'static str>>> = OnceLock::new();
    let Some(path) = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str) else {
        return "unmatched";
    };
    let routes = ROUTES.get_or_init(Default::default);
    if let Some(known) = routes.read().unwrap_or_else(|e| e.into_inner()).get(path) {
        return known;
    }
    let mut routes = routes.write().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = routes.get(path) {
        return known;
    }
    let kept: &'static str = Box::leak(path.to_owned().into_boxed_str());
    routes.insert(kept);
    kept
}

fn status_label(status: u16) -> metrics::SharedString {
    match status {
        200 => "200".into(),
        201 => "201".into(),
        304 => "304".into(),
        400 => "400".into(),
        401 => "401".into(),
        404 => "404".into(),
        409 => "409".into(),
        412 => "412".into(),
        422 => "422".into(),
        503 => "503".into(),
        other => other.to_string().into(),
    }
}

pub async fn track(req: Request, next: Next) -> Response {
    let route = route_label(&req);
    use axum::http::Method;
    let method: &'static str = match *req.method() {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let start = Instant::now();
    let res = next.run(req).await;
    let status = status_label(res.status().as_u16());
    metrics::counter!("cartsync_http_requests_total", "method" => method, "route" => route, "status" => status).increment(1);
    metrics::histogram!("cartsync_http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    res
}

/// Counts one cart op by what became of it (`applied`, `duplicate`, `rejected`).
pub fn op(outcome: &'static str) {
    metrics::counter!("cartsync_cart_ops_total", "outcome" => outcome).increment(1);
}

pub fn event(name: &'static str, result: &'static str) {
    metrics::counter!(name, "result" => result).increment(1);
}

/// Adds `n` to a counter without labels.
pub fn count(name: &'static str, n: u64) {
    metrics::counter!(name).increment(n);
}

/// Sets a gauge.
pub fn gauge(name: &'static str, label: &'static str, value: f64) {
    metrics::gauge!(name, "queue" => label).set(value);
}
