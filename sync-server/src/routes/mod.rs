//! The HTTP routes of the v1 API: the cart here, checkout and orders in `checkout`, the
//! catalog admin in `admin`.

mod admin;
mod checkout;

use crate::app::{SharedState, now};
use crate::error::{ApiError, ApiResult, JsonBody};
use crate::hot::{ApplyResult, MergeResult, StoreError};
use crate::identity::{CART_TOKEN_HEADER, CartId, CartKey, Identity, identify};
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde_json::json;
use shared::wire::{self, CartView, MergeResponse, OpResult, OpsResponse, Owner};
use shared::{Cart, ErrorCode, Op, OpId, OpKind, OpOutcome, Sku, Timestamp};

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/v1/cart", get(get_cart))
        .route("/v1/cart/items", post(add_item))
        .route("/v1/cart/items/{sku}", put(set_quantity).delete(remove_item))
        .route("/v1/cart/items/{sku}/save-for-later", post(save_for_later))
        .route("/v1/cart/saved/{sku}/move-to-cart", post(move_to_cart))
        .route("/v1/cart/saved/{sku}", delete(remove_saved))
        .route("/v1/cart/ops", post(push_ops))
        .route("/v1/cart/merge", post(merge))
        .route("/v1/products", get(checkout::products))
        .route("/v1/cart/checkout", post(checkout::checkout))
        .route("/v1/orders/{id}", get(checkout::get_order))
        .route("/v1/orders/{id}/payment", post(checkout::payment))
        .route("/v1/admin/products", post(admin::bulk_load))
        .route("/v1/admin/products/{sku}", put(admin::put_product).get(admin::get_product))
        .route("/v1/dev/login", post(dev_login))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(|| async { crate::metrics::handle().render() }))
        .route("/openapi.json", get(|| async { axum::Json(crate::openapi::document()) }))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such resource")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "this method is not allowed on this resource")
}

pub(crate) fn store_error(e: StoreError) -> ApiError {
    match &e {
        StoreError::Redis(r) if r.is_io_error() || r.is_timeout() || r.is_connection_dropped() || r.is_connection_refusal() => {
            ApiError::unavailable(e)
        }
        _ => ApiError::internal(e),
    }
}

pub(crate) fn path_sku(p: Result<Path<String>, PathRejection>) -> ApiResult<Sku> {
    let Path(raw) = p.map_err(|_| ApiError::new(ErrorCode::InvalidSku, "the SKU in the path is not valid"))?;
    Ok(Sku::parse(&raw)?)
}

/// `If-Match: "7"` (or `7`, or `W/"7"`); `*` matches anything. Anything else can never match.
fn if_match(headers: &HeaderMap) -> Option<u64> {
    let raw = headers.get(header::IF_MATCH)?.to_str().unwrap_or("").trim();
    if raw == "*" {
        return None;
    }
    let v = raw.trim_start_matches("W/").trim_matches('"');
    Some(v.parse().unwrap_or(u64::MAX))
}

fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("digits are a valid header value")
}

/// The cart resource with its `ETag`, and the guest token when it was just issued.
fn cart_response<T: serde::Serialize>(identity: &Identity, version: u64, body: &T) -> Response {
    let mut res = axum::Json(body).into_response();
    decorate(&mut res, identity, version);
    res
}

fn decorate(res: &mut Response, identity: &Identity, version: u64) {
    let h = res.headers_mut();
    h.insert(header::ETAG, etag(version));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if identity.issued_token
        && let CartId::Guest(t) = &identity.cart
        && let Ok(v) = HeaderValue::from_str(t.as_str())
    {
        h.insert(CART_TOKEN_HEADER, v);
    }
}

/// How fresh the catalog annotations of a cart response must be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Annotations {
    /// A cart read: stale or missing facts are looked up first (one batched query).
    Refreshed,
    /// A cart write: whatever the cache holds, refreshed in the background, so no write waits
    /// on the database.
    Cached,
}

/// The cart resource, annotated with live prices and availability from the catalog cache. The
/// annotations are a display aid: if the catalog cannot be read they are left out, and the cart
/// is still served.
async fn view(state: &SharedState, id: &CartKey, cart: &Cart, freshness: Annotations) -> CartView {
    let owner = if id.is_user() { Owner::User } else { Owner::Guest };
    let expires_at = cart.accessed_at.plus_seconds(state.rules.expiry(id).cart_seconds);
    let skus: Vec<Sku> = cart.lines.iter().chain(&cart.saved).map(|l| l.sku.clone()).collect();
    let facts = match freshness {
        Annotations::Cached => state.catalog.lookup_cached(&state.durable, &skus),
        Annotations::Refreshed => match state.catalog.lookup(&state.durable, &skus).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "cart served without catalog annotations");
                Default::default()
            }
        },
    };
    CartView::new(cart, owner, expires_at, |sku, q| state.catalog.annotate(&facts, sku, q))
}

/// Restores a user cart from the durable store into the hot store (an empty one if there is none).
async fn restore(state: &SharedState, id: &CartKey, now: Timestamp) -> ApiResult<()> {
    let Some(user) = id.user() else {
        return Ok(());
    };
    let stored = state.durable.load_user_cart(user).await.map_err(ApiError::unavailable)?;
    let restored = stored.is_some();
    let snapshot = stored.unwrap_or_else(|| {
        let mut cart = Cart::new(state.rules.currency);
        cart.accessed_at = now;
        shared::CartState::new(cart)
    });
    state.hot.restore(id, &snapshot, &state.rules, now).await.map_err(store_error)?;
    if restored {
        tracing::info!(version = snapshot.cart.version, "restored a user cart from the durable store");
    }
    Ok(())
}

/// Applies ops to the identified cart, restoring a user cart first if the hot store lost it.
async fn run_ops(state: &SharedState, id: &CartKey, ops: &[Op], expected: Option<u64>) -> ApiResult<(Cart, Vec<OpOutcome>)> {
    let now = now();
    for _ in 0..3 {
        match state.hot.apply(id, ops, expected, &state.rules, now).await.map_err(store_error)? {
            ApplyResult::Done { cart, outcomes } => {
                for o in &outcomes {
                    crate::metrics::op(o.status());
                }
                return Ok((cart, outcomes));
            }
            ApplyResult::NeedsRestore => restore(state, id, now).await?,
            ApplyResult::Merged => {
                return Err(ApiError::new(
                    ErrorCode::CartMerged,
                    "this guest cart was merged into a user's cart at login; send its changes as that user",
                ));
            }
            ApplyResult::VersionMismatch(current) => {
                return Err(ApiError::new(ErrorCode::VersionMismatch, format!("the cart is at version {current}"))
                    .with_detail("current_version", json!(current)));
            }
        }
    }
    Err(ApiError::internal("a user cart could not be restored"))
}

fn server_op(kind: OpKind) -> Op {
    let id = OpId::parse(&format!("srv-{}", uuid::Uuid::new_v4())).expect("a uuid is a valid op id");
    Op { id, kind }
}

/// Applies one op made from a REST call; a rejection becomes the response's error.
async fn single(state: SharedState, headers: HeaderMap, kind: OpKind) -> ApiResult<Response> {
    let identity = identify(&headers, &state.auth)?;
    let (cart, outcomes) = run_ops(&state, &identity.cart.key(), &[server_op(kind)], if_match(&headers)).await?;
    if let Some(OpOutcome::Rejected(e)) = outcomes.into_iter().next() {
        return Err(e.into());
    }
    Ok(cart_response(&identity, cart.version, &view(&state, &identity.cart.key(), &cart, Annotations::Cached).await))
}

async fn get_cart(State(state): State<SharedState>, headers: HeaderMap) -> ApiResult<Response> {
    let identity = identify(&headers, &state.auth)?;
    let (cart, _) = run_ops(&state, &identity.cart.key(), &[], None).await?;
    let tag = etag(cart.version);
    let not_modified = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(',').any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/").as_bytes() == tag.as_bytes()
        })
    });
    if not_modified {
        let mut res = StatusCode::NOT_MODIFIED.into_response();
        decorate(&mut res, &identity, cart.version);
        return Ok(res);
    }
    Ok(cart_response(&identity, cart.version, &view(&state, &identity.cart.key(), &cart, Annotations::Refreshed).await))
}

async fn add_item(State(state): State<SharedState>, headers: HeaderMap, JsonBody(body): JsonBody) -> ApiResult<Response> {
    let kind = wire::parse_add_item(&body, &state.rules.limits)?;
    single(state, headers, kind).await
}

async fn set_quantity(
    State(state): State<SharedState>,
    headers: HeaderMap,
    sku: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let kind = wire::parse_set_quantity(&body, path_sku(sku)?, &state.rules.limits)?;
    single(state, headers, kind).await
}

async fn remove_item(
    State(state): State<SharedState>,
    headers: HeaderMap,
    sku: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    single(state, headers, OpKind::Remove { sku: path_sku(sku)? }).await
}

async fn save_for_later(
    State(state): State<SharedState>,
    headers: HeaderMap,
    sku: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    single(state, headers, OpKind::SaveForLater { sku: path_sku(sku)? }).await
}

async fn move_to_cart(
    State(state): State<SharedState>,
    headers: HeaderMap,
    sku: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    single(state, headers, OpKind::MoveToCart { sku: path_sku(sku)? }).await
}

async fn remove_saved(
    State(state): State<SharedState>,
    headers: HeaderMap,
    sku: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    single(state, headers, OpKind::RemoveSaved { sku: path_sku(sku)? }).await
}

/// Applies the valid ops of a parsed batch, and reports every op's outcome in request order.
async fn apply_parsed(
    state: &SharedState,
    id: &CartKey,
    parsed: Vec<wire::ParsedOp>,
    expected: Option<u64>,
) -> ApiResult<(Cart, Vec<OpResult>)> {
    let valid: Vec<Op> =
        parsed.iter().filter_map(|(id, k)| k.as_ref().ok().map(|kind| Op { id: id.clone(), kind: kind.clone() })).collect();
    let (cart, outcomes) = run_ops(state, id, &valid, expected).await?;
    let mut applied = outcomes.into_iter();
    let results = parsed
        .iter()
        .map(|(op_id, kind)| match kind {
            Ok(_) => OpResult::new(op_id, &applied.next().unwrap_or(OpOutcome::Duplicate)),
            Err(e) => OpResult::new(op_id, &OpOutcome::Rejected(e.clone())),
        })
        .collect();
    Ok((cart, results))
}

async fn push_ops(State(state): State<SharedState>, headers: HeaderMap, JsonBody(body): JsonBody) -> ApiResult<Response> {
    let identity = identify(&headers, &state.auth)?;
    let parsed = wire::parse_ops_request(&body, &state.rules.limits)?;
    let (cart, results) = apply_parsed(&state, &identity.cart.key(), parsed, if_match(&headers)).await?;
    let body = OpsResponse { cart: view(&state, &identity.cart.key(), &cart, Annotations::Cached).await, results };
    Ok(cart_response(&identity, cart.version, &body))
}

/// Merges a guest cart into the caller's user cart: exactly once per guest cart, however many
/// times, from however many tabs, it is called (see ARCHITECTURE.md, "Merge on login").
async fn merge(State(state): State<SharedState>, headers: HeaderMap, JsonBody(body): JsonBody) -> ApiResult<Response> {
    let identity = identify(&headers, &state.auth)?;
    let user = identity.cart.key();
    if !user.is_user() {
        return Err(ApiError::new(ErrorCode::Unauthorized, "merging needs Authorization: Bearer <user token>"));
    }
    let (token, parsed) = wire::parse_merge_request(&body, &state.rules.limits)?;
    let guest = CartId::Guest(token).key();
    // The guest's still-pending ops land in the guest cart first, exactly once each. If the
    // guest cart was merged already (a login retried after a lost answer), they go to the user's
    // cart instead, which by then knows every op id the guest cart applied.
    let mut for_user = Vec::new();
    if !parsed.is_empty() {
        match apply_parsed(&state, &guest, parsed.clone(), None).await {
            Ok(_) => {}
            Err(e) if e.code == ErrorCode::CartMerged => for_user = parsed,
            Err(e) => return Err(e),
        }
    }
    let now = now();
    let frozen = state.hot.freeze_guest(&guest, &state.rules, now).await.map_err(store_error)?;
    let op_id = format!("merge:{}:{}", guest.tag, frozen.generation);
    let mut result = None;
    for _ in 0..3 {
        match state.hot.merge_into(&user, &op_id, &frozen, &state.rules, now).await.map_err(store_error)? {
            MergeResult::NeedsRestore => restore(&state, &user, now).await?,
            MergeResult::Done { cart, applied } => {
                result = Some((cart, applied));
                break;
            }
        }
    }
    let Some((mut cart, applied)) = result else {
        return Err(ApiError::internal("a user cart could not be restored for a merge"));
    };
    state.hot.finish_merge(&guest).await.map_err(store_error)?;
    if !for_user.is_empty() {
        cart = apply_parsed(&state, &user, for_user, None).await?.0;
    }
    let merged = applied && !frozen.cart.is_empty();
    crate::metrics::event("cartsync_merges_total", if merged { "merged" } else { "nothing_to_merge" });
    if merged {
        tracing::info!(lines = frozen.cart.lines.len(), saved = frozen.cart.saved.len(), "merged a guest cart");
    }
    Ok(cart_response(&identity, cart.version, &MergeResponse { cart: view(&state, &user, &cart, Annotations::Cached).await, merged }))
}

/// `POST /v1/dev/login {"user": "alice"}`: a user token for the demo storefront, when
/// `CARTSYNC_DEV_LOGIN` is on (otherwise this route does not exist).
async fn dev_login(State(state): State<SharedState>, JsonBody(body): JsonBody) -> ApiResult<Response> {
    let secret = state.dev_login_secret.as_ref().ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such resource"))?;
    let user = body.get("user").and_then(serde_json::Value::as_str).map(str::trim).unwrap_or("");
    let user = shared::UserId::parse(user).map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "user is 1 to 255 characters"))?;
    let exp = now().millis() / 1000 + 24 * 3600;
    let claims = json!({"sub": user.as_str(), "exp": exp});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.expose().as_bytes()),
    )
    .map_err(ApiError::internal)?;
    Ok(axum::Json(json!({ "token": token, "user": user.as_str() })).into_response())
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<SharedState>) -> Response {
    let hot = state.hot.ping().await.map_err(|e| e.to_string());
    let durable = state.durable.ping().await.map_err(|e| e.to_string());
    let status = if hot.is_ok() && durable.is_ok() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let show = |r: &Result<(), String>| match r {
        Ok(()) => json!("ok"),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            json!("unavailable")
        }
    };
    (status, axum::Json(json!({"status": if status == StatusCode::OK { "ok" } else { "unavailable" }, "hot_store": show(&hot), "durable_store": show(&durable)}))).into_response()
}
