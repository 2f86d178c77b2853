//! Start-up: the layer stack around the routes, the listeners (the API, and Prometheus apart
//! from it), the background tasks, and shutdown.

pub use crate::clock::now;
use crate::config::Settings;
use crate::error::ApiError;
use crate::hot::HotStore;
pub use crate::state::{AppState, SharedState, connect};
use crate::{idempotency, orders, routes, writebehind};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request, header};
use shared::ErrorCode;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

/// The public API with its layer stack, and the demo storefront's files when there are any.
pub fn router(state: SharedState, settings: &Settings) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let mut app = routes::router();
    if let Some(root) = settings.static_root() {
        // Files answer GET and HEAD only; anything else that matches no route is the API's 404.
        let files = tower_http::services::ServeDir::new(root)
            .not_found_service(axum::handler::HandlerWithoutStateExt::into_service(routes::not_found));
        app = app.fallback(move |req: axum::extract::Request| async move {
            use axum::response::IntoResponse;
            use tower::ServiceExt;
            if matches!(*req.method(), axum::http::Method::GET | axum::http::Method::HEAD) {
                files.oneshot(req).await.into_response()
            } else {
                routes::not_found().await.into_response()
            }
        });
    }
    crate::metrics::handle();
    let limits = state.limits.clone();
    app.with_state(state)
        .layer(axum::middleware::from_fn_with_state(limits, crate::limits::guard))
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(cors(settings))
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a request handler panicked");
            axum::response::IntoResponse::into_response(ApiError::new(ErrorCode::Internal, "something went wrong on our side"))
        }))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            // Borrowed fields: nothing is built for a span the subscriber does not want.
            let route = req.extensions().get::<axum::extract::MatchedPath>().map_or("", |p| p.as_str());
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", method = %req.method(), route, request_id = id)
        }))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, RequestIds::new()))
        .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, HeaderName::from_static("x-cart-token")]))
}

/// Request ids unique to this process's life and, by a random prefix, across instances: a counter
/// rather than a UUID, which would cost a call for randomness on every request.
#[derive(Clone)]
struct RequestIds {
    prefix: Arc<str>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl RequestIds {
    fn new() -> RequestIds {
        let mut seed = [0u8; 6];
        let _ = getrandom::fill(&mut seed);
        RequestIds { prefix: hex::encode(seed).into(), next: Arc::default() }
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        axum::http::HeaderValue::from_str(&format!("{}-{n:x}", self.prefix)).ok().map(RequestId::new)
    }
}

/// CORS for storefronts on other origins: the identity headers may be sent, and the version and
/// the issued guest token may be read.
fn cors(settings: &Settings) -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins: Vec<&str> = settings.cors_origins.split(',').map(str::trim).filter(|o| !o.is_empty()).collect();
    let allow = if origins.contains(&"*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            HeaderName::from_static("x-cart-token"),
            HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([header::ETAG, HeaderName::from_static("x-cart-token")])
        .max_age(Duration::from_secs(600))
}

/// Where the server listens: the API, and the Prometheus metrics apart from it (none: off).
pub struct Listeners {
    pub api: TcpListener,
    pub metrics: Option<TcpListener>,
}

/// Binds the metrics listener the settings name, if any. The cart service matters more than its
/// metrics: an address already in use is logged as an error (naming the variable) and the
/// server runs without a metrics listener rather than not at all.
pub async fn bind_metrics(settings: &Settings) -> Option<TcpListener> {
    let addr = settings.metrics_listen.0?;
    match TcpListener::bind(addr).await {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!("CARTSYNC_METRICS_LISTEN: cannot listen on {addr}: {e}; serving no metrics");
            None
        }
    }
}

/// Serves on `listener` (and the metrics listener of the settings) until `shutdown` completes,
/// then drains the write-behind queue.
pub async fn launch_with_listener(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let state = Arc::new(connect(&settings).await?);
    let metrics = bind_metrics(&settings).await;
    serve(state, settings, Listeners { api: listener, metrics }, shutdown).await
}

/// Serves on the given listeners until `shutdown` completes, then drains the write-behind queue.
pub async fn launch_with_listeners(
    settings: Settings,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let state = Arc::new(connect(&settings).await?);
    serve(state, settings, listeners, shutdown).await
}

pub async fn serve(
    state: SharedState,
    settings: Settings,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let worker = tokio::spawn(writebehind::run(state.hot().clone(), state.durable.clone(), *state.rules(), stop_rx.clone()));
    if let HotStore::Memory(m) = state.hot() {
        let m = m.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = tick.tick() => { m.sweep(now()); }
                    _ = stop.changed() => return,
                }
            }
        });
    }
    if let HotStore::Redis(r) = state.hot() {
        // Another instance may have moved the data's generation on (see `hot::redis`).
        let r = r.clone();
        tokio::spawn(periodically(Duration::from_secs(1), stop_rx.clone(), move || {
            let r = r.clone();
            async move {
                if let Err(e) = r.refresh_generation().await {
                    tracing::debug!(error = %e, "could not read the hot store's generation");
                }
            }
        }));
    }
    // The whole catalog's prices stay in memory, at most the price cache's age old, so an add
    // without a price takes the catalog's without waiting on the database. Loaded once at start
    // (`state::connect`), so the first reload is one period later.
    let catalog = (state.catalog.clone(), state.durable.clone());
    let every = Duration::from_secs(settings.price_cache_seconds.max(1));
    let mut stop = stop_rx.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        periodically(every, stop, move || {
            let (cache, db) = catalog.clone();
            async move {
                if let Err(e) = cache.preload(&db).await {
                    tracing::warn!(error = %e, "could not reload the catalog's prices");
                }
            }
        })
        .await
    });
    tokio::spawn(sweep_holds(state.clone(), Duration::from_millis(settings.sweep_interval_ms), stop_rx.clone()));
    let recorder = tokio::spawn(crate::events::recorder::run(state.hot().clone(), state.durable.clone(), stop_rx.clone()));
    tokio::spawn(crate::events::webhooks::run(state.durable.clone(), state.webhook_policy, stop_rx.clone()));
    tokio::spawn(abandonment_job(state.clone(), Duration::from_millis(settings.abandon_check_interval_ms), stop_rx.clone()));
    tokio::spawn(retention_job(state.clone(), settings.clone(), stop_rx.clone()));
    tokio::spawn(backlog_gauges(state.clone(), stop_rx.clone()));
    if let Some(metrics) = listeners.metrics {
        tracing::info!(addr = %metrics.local_addr().map_err(|e| e.to_string())?, "serving metrics");
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let served = axum::serve(metrics, crate::metrics::router()).with_graceful_shutdown(async move {
                let _ = stop.changed().await;
            });
            if let Err(e) = served.await {
                tracing::error!(error = %e, "the metrics listener failed");
            }
        });
    }
    tokio::spawn(forget_idle_clients(state.clone(), stop_rx.clone()));
    let app = router(state, &settings);
    tracing::info!(addr = %listeners.api.local_addr().map_err(|e| e.to_string())?, "serving");
    let options = crate::http::Options {
        client_timeout: Duration::from_millis(settings.client_timeout_ms),
        max_connections: settings.max_connections as usize,
        grace: Duration::from_millis(settings.shutdown_grace_ms),
    };
    crate::http::serve(listeners.api, app, options, shutdown).await;
    let _ = stop_tx.send(true);
    if tokio::time::timeout(Duration::from_secs(20), worker).await.is_err() {
        tracing::error!("the write-behind queue did not drain in time");
    }
    if tokio::time::timeout(Duration::from_secs(20), recorder).await.is_err() {
        tracing::error!("the event queue did not drain in time");
    }
    Ok(())
}

/// Forgets the rate limits' idle clients every minute, so their memory follows the active ones.
async fn forget_idle_clients(state: SharedState, stop: watch::Receiver<bool>) {
    periodically(Duration::from_secs(60), stop, || async {
        state.limits.forget_idle();
        let (carts, addresses) = state.limits.remembered();
        crate::metrics::gauge("cartsync_rate_limit_keys", "carts", carts as f64);
        crate::metrics::gauge("cartsync_rate_limit_keys", "addresses", addresses as f64);
    })
    .await;
}

/// Runs `pass` every `every` (a tick missed while a pass runs long is not made up) until `stop`
/// turns true: the loop of every periodic job.
async fn periodically<F: std::future::Future<Output = ()>>(every: Duration, mut stop: watch::Receiver<bool>, mut pass: impl FnMut() -> F) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        pass().await;
    }
}

/// Releases expired stock holds every `every`.
/// Any number of instances may run this at once: each hold is released by exactly one.
async fn sweep_holds(state: SharedState, every: Duration, stop: watch::Receiver<bool>) {
    periodically(every, stop, || async {
        match orders::holds::release_expired(&state.durable, now(), 500).await {
            Ok(skus) if !skus.is_empty() => {
                tracing::info!(skus = skus.len(), "released expired stock holds");
                crate::metrics::event("cartsync_hold_sweeps_total", "released");
                state.catalog.forget(&skus);
                // Their promotion uses came back too.
                state.promotions.invalidate();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not release expired holds"),
        }
    })
    .await;
}

/// Reports idle carts every `every` (see `events::abandonment`).
async fn abandonment_job(state: SharedState, every: Duration, stop: watch::Receiver<bool>) {
    periodically(every, stop, || async {
        match crate::events::abandonment::run_once(&state.durable, &state.abandonment, now()).await {
            Ok(n) if n > 0 => tracing::info!(carts = n, "reported abandoned carts"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "the abandonment job failed; it runs again at its next tick"),
        }
    })
    .await;
}

/// Deletes what is past its retention (see `events::retention`).
async fn retention_job(state: SharedState, settings: Settings, stop: watch::Receiver<bool>) {
    periodically(Duration::from_millis(settings.retention_interval_ms), stop, || async {
        let swept = crate::events::retention::sweep(
            &state.durable,
            state.hot(),
            now(),
            settings.cart_retention_days,
            settings.event_retention_days,
            idempotency::KEEP_MS,
            20,
        )
        .await;
        match swept {
            Ok(s) => {
                if s != Default::default() {
                    tracing::info!(carts = s.carts, events = s.events, keys = s.idempotency_keys, "retention sweep");
                }
                crate::metrics::count("cartsync_retention_deleted_total", s.carts + s.events + s.idempotency_keys);
            }
            Err(e) => tracing::warn!(error = %e, "the retention job failed; it runs again at its next tick"),
        }
    })
    .await;
}

/// Backlog gauges every few seconds: entries waiting in the hot store's queues and the age of
/// the oldest, and webhook deliveries pending.
async fn backlog_gauges(state: SharedState, stop: watch::Receiver<bool>) {
    let gauge = |name: &'static str, n: u64, age_ms: i64| {
        crate::metrics::gauge("cartsync_queue_backlog", name, n as f64);
        crate::metrics::gauge("cartsync_queue_oldest_seconds", name, age_ms as f64 / 1000.0);
    };
    periodically(Duration::from_secs(5), stop, || async {
        for q in [crate::hot::Queue::Events, crate::hot::Queue::WriteBehind] {
            if let Ok((n, age)) = state.hot().queue_backlog(q, now()).await {
                gauge(q.name(), n, age);
            }
        }
        if let Ok((n, age)) = crate::events::webhooks::backlog(&state.durable, now()).await {
            gauge("webhook_deliveries", u64::try_from(n).unwrap_or(0), age);
        }
    })
    .await;
}

/// Runs the server as the binary does: binds the configured addresses, stops on Ctrl-C or SIGTERM.
pub async fn run(settings: Settings) -> Result<(), String> {
    let api =
        TcpListener::bind(settings.listen).await.map_err(|e| format!("CARTSYNC_LISTEN: cannot listen on {}: {e}", settings.listen))?;
    launch_with_listener(settings, api, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

pub fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if format == "json" { builder.json().try_init() } else { builder.try_init() };
}
