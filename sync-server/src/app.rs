//! Start-up, state and the layer stack.

use crate::catalog::CatalogCache;
use crate::config::{Secret, Settings};
use crate::durable::Durable;
use crate::error::ApiError;
use crate::hot::{HotStore, MemoryStore, RedisStore, Rules};
use crate::identity::Auth;
use crate::{routes, writebehind};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request, header};
use shared::{ErrorCode, Timestamp};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

pub struct AppState {
    pub hot: HotStore,
    pub durable: Durable,
    pub auth: Auth,
    pub rules: Rules,
    pub catalog: Arc<CatalogCache>,
    pub admin_token: Option<Secret>,
    pub webhook_secret: Option<Secret>,
    pub hold_ms: i64,
    pub idempotency_wait_ms: u64,
    /// Set when development logins are enabled: the HS256 secret to sign them with.
    pub dev_login_secret: Option<Secret>,
}

pub type SharedState = Arc<AppState>;

/// The wall clock, read once per request and passed down.
pub fn now() -> Timestamp {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    Timestamp::from_millis(ms)
}

/// Connects the stores the settings name. Every failure is one line naming its variable.
pub async fn connect(settings: &Settings) -> Result<AppState, String> {
    let auth = Auth::from_settings(settings)?;
    let hot = match &settings.redis_url {
        Some(url) => {
            let store = tokio::time::timeout(Duration::from_secs(10), RedisStore::connect(url, &settings.redis_prefix))
                .await
                .map_err(|_| "CARTSYNC_REDIS_URL: timed out connecting to Redis".to_owned())?
                .map_err(|e| format!("CARTSYNC_REDIS_URL: cannot use Redis: {e}"))?;
            HotStore::Redis(store.with_claim_idle(settings.write_behind_claim_ms))
        }
        None => HotStore::Memory(Arc::new(MemoryStore::default())),
    };
    let durable =
        tokio::time::timeout(Duration::from_secs(15), Durable::connect_with_pool(&settings.database_url, settings.database_pool_size))
            .await
            .map_err(|_| "CARTSYNC_DATABASE_URL: timed out connecting to the database".to_owned())?
            .map_err(|e| format!("CARTSYNC_DATABASE_URL: {e}"))?;
    let rules = Rules {
        limits: settings.limits(),
        currency: settings.currency,
        guest: settings.guest_expiry(),
        user: settings.user_expiry(),
        merge: settings.merge_policy,
    };
    let catalog = Arc::new(CatalogCache::new(
        Duration::from_secs(settings.price_cache_seconds),
        Duration::from_secs(settings.stock_cache_seconds),
        settings.low_stock_threshold,
    ));
    Ok(AppState {
        hot,
        durable,
        auth,
        rules,
        catalog,
        admin_token: settings.admin_token.clone(),
        webhook_secret: settings.webhook_secret.clone(),
        hold_ms: i64::try_from(settings.hold_seconds.saturating_mul(1000)).unwrap_or(i64::MAX),
        idempotency_wait_ms: settings.idempotency_wait_ms,
        dev_login_secret: match (settings.dev_login, &settings.jwt_secret) {
            (false, _) => None,
            (true, Some(secret)) => {
                tracing::warn!("development logins are enabled: anyone can get a user token");
                Some(secret.clone())
            }
            (true, None) => return Err("CARTSYNC_DEV_LOGIN: needs CARTSYNC_JWT_SECRET to sign the tokens it hands out".into()),
        },
    })
}

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
    app.with_state(state)
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(cors(settings))
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a request handler panicked");
            axum::response::IntoResponse::into_response(ApiError::new(ErrorCode::Internal, "something went wrong on our side"))
        }))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let route = req.extensions().get::<axum::extract::MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_default();
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            tracing::info_span!("request", method = %req.method(), route, request_id = id)
        }))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, HeaderName::from_static("x-cart-token")]))
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

/// Serves on `listener` until `shutdown` completes, then drains the write-behind queue.
pub async fn launch_with_listener(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let state = Arc::new(connect(&settings).await?);
    serve(state, settings, listener, shutdown).await
}

pub async fn serve(
    state: SharedState,
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let worker = tokio::spawn(writebehind::run(state.hot.clone(), state.durable.clone(), state.rules, stop_rx.clone()));
    if let HotStore::Memory(m) = &state.hot {
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
    tokio::spawn(sweep_holds(state.clone(), Duration::from_millis(settings.sweep_interval_ms), stop_rx.clone()));
    let app = router(state, &settings);
    tracing::info!(addr = %listener.local_addr().map_err(|e| e.to_string())?, "serving");
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    let _ = stop_tx.send(true);
    if tokio::time::timeout(Duration::from_secs(20), worker).await.is_err() {
        tracing::error!("the write-behind queue did not drain in time");
    }
    served.map_err(|e| format!("server error: {e}"))
}

/// Releases expired stock holds every `every`, and forgets idempotency keys after two days.
/// Any number of instances may run this at once: each hold is released by exactly one.
async fn sweep_holds(state: SharedState, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_key_sweep = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        match state.durable.release_expired_holds(now()).await {
            Ok(skus) if !skus.is_empty() => {
                tracing::info!(skus = skus.len(), "released expired stock holds");
                crate::metrics::event("cartsync_hold_sweeps_total", "released");
                state.catalog.forget(&skus);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not release expired holds"),
        }
        if last_key_sweep.elapsed() > Duration::from_secs(3600) {
            last_key_sweep = std::time::Instant::now();
            let before = Timestamp::from_millis(now().millis() - 48 * 3600 * 1000);
            if let Err(e) = state.durable.idempotency_sweep(before).await {
                tracing::warn!(error = %e, "could not forget old idempotency keys");
            }
        }
    }
}

/// Runs the server as the binary does: binds the configured address, stops on Ctrl-C or SIGTERM.
pub async fn run(settings: Settings) -> Result<(), String> {
    let listener =
        TcpListener::bind(settings.listen).await.map_err(|e| format!("CARTSYNC_LISTEN: cannot listen on {}: {e}", settings.listen))?;
    launch_with_listener(settings, listener, shutdown_signal()).await
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
