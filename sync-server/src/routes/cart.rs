//! The cart: reads, the REST item endpoints, the offline client's op push, and the login merge.

use super::path_sku;
use crate::carts::MergePlan;
use crate::clock::now;
use crate::error::{ApiError, ApiResult, JsonBody};
use crate::identity::{CART_TOKEN_HEADER, CartId, CartKey, Identity};
use crate::state::SharedState;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared::promo::{Context, LineInput, PromoCode, PromotionId};
use shared::wire::{self, CartView, Owner, Promos};
use shared::{Cart, ErrorCode, MergePolicy, OpKind, OpOutcome, Sku};

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

/// The cart resource with its `ETag`, and the guest token when it was just issued. The body is
/// written into a buffer sized for the cart at once (about 200 bytes a line), rather than one
/// that doubles its way up.
fn cart_response(identity: &Identity, view: &CartView) -> Response {
    let mut buf = Vec::with_capacity(512 + 200 * (view.lines.len() + view.saved.len()));
    view.write_json(&mut buf);
    let mut res = ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], buf).into_response();
    decorate(&mut res, identity, view.version);
    res
}

/// `{"cart": <view>, <field>: <value>, ...}`, as serde writes `OpsResponse` and `MergeResponse`.
fn wrapped_response(identity: &Identity, view: &CartView, extra: &[(&str, serde_json::Value)]) -> Response {
    let mut head = Vec::with_capacity(512 + 200 * (view.lines.len() + view.saved.len()));
    head.extend_from_slice(b"{\"cart\":");
    view.write_json(&mut head);
    for (field, value) in extra {
        head.extend_from_slice(format!(",\"{field}\":").as_bytes());
        if serde_json::to_writer(&mut head, value).is_err() {
            return crate::error::ApiError::internal("a response could not be written").into_response();
        }
    }
    head.push(b'}');
    let mut res = ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], head).into_response();
    decorate(&mut res, identity, view.version);
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
    /// A cart read: stale or missing facts are looked up first (one batched query). This is the
    /// one cart request that may wait on the database outside a restore.
    Refreshed,
    /// A cart write: whatever the cache holds, refreshed in the background, so no write waits
    /// on the database.
    Cached,
}

/// The longest a cart read waits on the database for fresh annotations and promotions; past it
/// (a database that is slow or out of reach) the cached ones are served and refreshed in the
/// background, so a read never waits for the pool's whole acquire timeout.
const READ_WAIT: std::time::Duration = std::time::Duration::from_millis(300);

/// The cart resource, annotated with live prices and availability from the catalog cache. The
/// annotations are a display aid: if the catalog cannot be read they are left out, and the cart
/// is still served.
async fn view(state: &SharedState, id: &CartKey, cart: &Cart, freshness: Annotations) -> CartView {
    let owner = if id.is_user() { Owner::User } else { Owner::Guest };
    let expires_at = cart.accessed_at.plus_seconds(state.rules().expiry(id).cart_seconds);
    let skus = cart.lines.iter().chain(&cart.saved).map(|l| &l.sku);
    let facts = match freshness {
        Annotations::Cached => state.catalog.lookup_cached(&state.durable, skus),
        Annotations::Refreshed => match tokio::time::timeout(READ_WAIT, state.catalog.lookup(&state.durable, skus.clone())).await {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cart served with cached catalog annotations");
                state.catalog.lookup_cached(&state.durable, skus)
            }
            Err(_) => {
                tracing::warn!("the catalog did not answer in time; cart served with cached annotations");
                state.catalog.lookup_cached(&state.durable, skus)
            }
        },
    };
    // Promotions from their snapshot (reloaded first on a read, in the background on a write),
    // and a user's own uses only where some promotion limits them per customer.
    let wait = freshness == Annotations::Refreshed;
    let fresh = if wait { tokio::time::timeout(READ_WAIT, state.promotions.fresh(&state.durable)).await.ok() } else { None };
    let promotions = fresh.unwrap_or_else(|| state.promotions.cached(&state.durable));
    let mine = match id.user() {
        Some(user) if promotions.per_customer => {
            let fresh =
                if wait { tokio::time::timeout(READ_WAIT, state.promotions.customer(&state.durable, user, true)).await.ok() } else { None };
            Some(match fresh {
                Some(uses) => uses,
                None => state.promotions.customer(&state.durable, user, false).await,
            })
        }
        _ => None,
    };
    let usage = |p: &PromotionId| promotions.usage(p, mine.as_deref());
    let in_force = promotions.for_codes(&cart.promo_codes);
    let promos = Promos { promotions: &in_force, usage: &usage, now: now() };
    // The facts come in the order the view asks for its lines.
    let mut facts = facts.into_iter();
    CartView::new(cart, owner, expires_at, |l| state.catalog.annotate(facts.next().flatten(), l.quantity), &promos)
}

/// Applies one op made from a REST call; a rejection becomes the response's error.
async fn single(state: SharedState, headers: HeaderMap, kind: OpKind) -> ApiResult<Response> {
    single_with(state, headers, kind, Annotations::Cached).await
}

/// [`single`], with the cart view's annotations as fresh as asked.
async fn single_with(state: SharedState, headers: HeaderMap, kind: OpKind, freshness: Annotations) -> ApiResult<Response> {
    let identity = state.identify(&headers)?;
    let key = identity.cart.key();
    let (cart, outcome) = state.carts.apply_one(&key, kind, if_match(&headers), now()).await?;
    if let OpOutcome::Rejected(e) = outcome {
        return Err(e.into());
    }
    Ok(cart_response(&identity, &view(&state, &key, &cart, freshness).await))
}

pub async fn get_cart(State(state): State<SharedState>, headers: HeaderMap) -> ApiResult<Response> {
    let identity = state.identify(&headers)?;
    let key = identity.cart.key();
    let cart = state.carts.read(&key, now()).await?;
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
    Ok(cart_response(&identity, &view(&state, &key, &cart, Annotations::Refreshed).await))
}

/// An `add` that names no price takes the catalog's from the price cache (no database round
/// trip); one that names a price keeps it, as the shopper saw it.
fn with_catalog_prices<'a>(state: &SharedState, kinds: impl Iterator<Item = &'a mut OpKind>) {
    let mut unpriced: Vec<(&Sku, &mut Option<shared::Money>)> = kinds
        .filter_map(|k| match k {
            OpKind::Add { sku, price_at_add: price @ None, .. } => Some((&*sku, price)),
            _ => None,
        })
        .collect();
    if unpriced.is_empty() {
        return;
    }
    let skus: Vec<&Sku> = unpriced.iter().map(|(s, _)| *s).collect();
    let prices = state.catalog.prices_at_add(&state.durable, &skus);
    let currency = state.rules().currency;
    for ((_, slot), price) in unpriced.iter_mut().zip(prices) {
        **slot = price.filter(|p| p.currency() == currency);
    }
}

fn parsed_kinds(ops: &mut [wire::ParsedOp]) -> impl Iterator<Item = &mut OpKind> {
    ops.iter_mut().filter_map(|(_, k)| k.as_mut().ok())
}

pub async fn add_item(State(state): State<SharedState>, headers: HeaderMap, JsonBody(body): JsonBody) -> ApiResult<Response> {
    let mut kind = wire::parse_add_item(&body, &state.rules().limits)?;
    with_catalog_prices(&state, std::iter::once(&mut kind));
    single(state, headers, kind).await
}

pub async fn set_quantity(
    State(state): State<SharedState>,
    headers: HeaderMap,
    sku: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let kind = wire::parse_set_quantity(&body, path_sku(sku)?, &state.rules().limits)?;
    single(state, headers, kind).await
}

pub async fn remove_item(
    State(state): State<SharedState>,
    headers: HeaderMap,
    sku: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    single(state, headers, OpKind::Remove { sku: path_sku(sku)? }).await
}

pub async fn save_for_later(
    State(state): State<SharedState>,
    headers: HeaderMap,
    sku: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    single(state, headers, OpKind::SaveForLater { sku: path_sku(sku)? }).await
}

pub async fn move_to_cart(
    State(state): State<SharedState>,
    headers: HeaderMap,
    sku: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    single(state, headers, OpKind::MoveToCart { sku: path_sku(sku)? }).await
}

pub async fn remove_saved(
    State(state): State<SharedState>,
    headers: HeaderMap,
    sku: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    single(state, headers, OpKind::RemoveSaved { sku: path_sku(sku)? }).await
}

/// `POST /v1/cart/promo-codes {"code"}`: puts a code on the cart if a promotion has it and it
/// can be had now; one whose conditions are not met yet (a minimum, a login) is kept and applies
/// by itself once they are.
pub async fn apply_promo_code(State(state): State<SharedState>, headers: HeaderMap, JsonBody(body): JsonBody) -> ApiResult<Response> {
    let code = wire::parse_promo_code_request(&body)?;
    let snapshot = state.promotions.fresh(&state.durable).await;
    let promotion = match snapshot.by_code(&code) {
        Some(p) => Some(p.clone()),
        // Made on another instance since the snapshot: one indexed lookup settles it.
        None => {
            let found = crate::promotions::by_code(&state.durable, &code, state.rules().currency).await.map_err(ApiError::unavailable)?;
            if found.is_some() {
                state.promotions.invalidate();
            }
            found
        }
    };
    let not_found = |reason: Option<&str>| {
        let e = ApiError::new(ErrorCode::PromoCodeNotFound, format!("{code} is not a promo code that can be used now"));
        match reason {
            Some(r) => e.with_detail("reason", serde_json::json!(r)),
            None => e,
        }
    };
    let Some(p) = promotion else { return Err(not_found(None)) };
    if let Some(reason) = p.unavailable_at(now()) {
        return Err(not_found(Some(reason.as_str())));
    }
    // The shopper is about to read what the code takes off: the prices it is computed on are
    // looked up rather than taken from whatever the cache holds.
    single_with(state, headers, OpKind::ApplyPromoCode { code }, Annotations::Refreshed).await
}

/// `DELETE /v1/cart/promo-codes/{code}`: an absent code is not an error.
pub async fn remove_promo_code(
    State(state): State<SharedState>,
    headers: HeaderMap,
    code: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let Path(raw) = code.map_err(|_| ApiError::new(ErrorCode::InvalidPromoCode, "the code in the path is not valid"))?;
    let code = shared::promo::PromoCode::parse(&raw)?;
    single_with(state, headers, OpKind::RemovePromoCode { code }, Annotations::Refreshed).await
}

pub async fn push_ops(State(state): State<SharedState>, headers: HeaderMap, JsonBody(body): JsonBody) -> ApiResult<Response> {
    let identity = state.identify(&headers)?;
    let key = identity.cart.key();
    let mut parsed = wire::parse_ops_request(&body, &state.rules().limits)?;
    with_catalog_prices(&state, parsed_kinds(&mut parsed));
    let (cart, results) = state.carts.apply_parsed(&key, &parsed, if_match(&headers), now()).await?;
    // Written as `OpsResponse` serializes.
    let results = serde_json::to_value(&results).map_err(ApiError::internal)?;
    Ok(wrapped_response(&identity, &view(&state, &key, &cart, Annotations::Cached).await, &[("results", results)]))
}

/// The policy a merge request names (`"policy"`), if any.
fn requested_policy(body: &serde_json::Value) -> ApiResult<Option<MergePolicy>> {
    match body.get("policy") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(p)) => Ok(Some(MergePolicy::parse(p)?)),
        Some(_) => Err(ApiError::new(ErrorCode::InvalidRequest, "policy is one of sum, max, keep_user")),
    }
}

/// The caller's user id, or `401` for a guest.
fn user_of(identity: &Identity) -> ApiResult<&shared::UserId> {
    match &identity.cart {
        CartId::User(user) => Ok(user),
        CartId::Guest(_) => Err(ApiError::new(ErrorCode::Unauthorized, "merging needs Authorization: Bearer <user token>")),
    }
}

/// Refreshes the catalog facts of `skus` for a merge's validation; `false` when the catalog
/// could not be read in time (the merge then goes ahead unvalidated).
async fn refresh_facts<'a>(state: &SharedState, skus: impl Iterator<Item = &'a Sku> + Clone) -> bool {
    match tokio::time::timeout(READ_WAIT, state.catalog.lookup(&state.durable, skus)).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "merging without validating: the catalog could not be read");
            false
        }
        Err(_) => {
            tracing::warn!("merging without validating: the catalog did not answer in time");
            false
        }
    }
}

/// The SKUs of `cart` (lines and saved lines) the catalog marks as no longer sold.
fn discontinued(state: &SharedState, cart: &Cart) -> Vec<Sku> {
    let skus = cart.lines.iter().chain(&cart.saved).map(|l| &l.sku);
    let facts = state.catalog.lookup_cached(&state.durable, skus.clone());
    skus.zip(facts).filter(|(_, f)| f.is_some_and(|f| !f.active)).map(|(s, _)| s.clone()).collect()
}

/// The lines of `cart` asking for more than the catalog has free (SKUs it knows and sells), by
/// facts looked up now (or, if the catalog is slow, the cached ones).
async fn short_lines(state: &SharedState, cart: &Cart) -> serde_json::Value {
    let skus = cart.lines.iter().map(|l| &l.sku);
    let facts = match tokio::time::timeout(READ_WAIT, state.catalog.lookup(&state.durable, skus.clone())).await {
        Ok(Ok(f)) => f,
        _ => state.catalog.lookup_cached(&state.durable, skus),
    };
    let short: Vec<serde_json::Value> = cart
        .lines
        .iter()
        .zip(facts)
        .filter_map(|(l, f)| {
            let f = f.filter(|f| f.active && f.available < i64::from(l.quantity))?;
            Some(serde_json::json!({"sku": l.sku, "requested": l.quantity, "available": f.available}))
        })
        .collect();
    serde_json::Value::Array(short)
}

fn dropped_json(dropped: &[(Sku, u32)]) -> serde_json::Value {
    dropped.iter().map(|(sku, q)| serde_json::json!({"sku": sku, "quantity": q, "reason": "discontinued"})).collect()
}

/// Ranks a merged cart's promo codes by what each one's promotion alone takes off it, priced as
/// its view would be (for a merge of more than five codes).
fn code_ranking(state: &SharedState, promotions: &crate::promotions::Snapshot, merged: &Cart, at: shared::Timestamp) -> Vec<PromoCode> {
    let facts = state.catalog.lookup_cached(&state.durable, merged.lines.iter().map(|l| &l.sku));
    let lines: Vec<LineInput> = merged
        .lines
        .iter()
        .zip(facts)
        .map(|(l, f)| LineInput {
            sku: l.sku.clone(),
            quantity: l.quantity,
            unit_price: f.and_then(|f| f.price).or(l.price_at_add).filter(|p| p.currency() == merged.currency),
        })
        .collect();
    let in_force = promotions.for_codes(&merged.promo_codes);
    shared::promo::rank_codes(&Context {
        currency: merged.currency,
        lines: &lines,
        promotions: &in_force,
        codes: &merged.promo_codes,
        now: at,
        is_user: true,
        usage: |p: &PromotionId| promotions.usage(p, None),
    })
}

/// Merges a guest cart into the caller's user cart, exactly once (see `carts::Carts::merge`),
/// by the policy the request names or the configured one; leaves out the lines the catalog no
/// longer sells (`dropped`) and names those asking for more than is in stock (`short`).
pub async fn merge(State(state): State<SharedState>, headers: HeaderMap, JsonBody(body): JsonBody) -> ApiResult<Response> {
    let identity = state.identify(&headers)?;
    let user = user_of(&identity)?;
    let (token, mut parsed) = wire::parse_merge_request(&body, &state.rules().limits)?;
    with_catalog_prices(&state, parsed_kinds(&mut parsed));
    let policy = requested_policy(&body)?.or(state.merge_policy).ok_or_else(|| {
        ApiError::new(ErrorCode::MergePolicyRequired, "this store asks the shopper how to merge: name a policy (sum, max or keep_user)")
    })?;
    let guest = CartId::Guest(token).key();
    let at = now();
    // Both carts' SKUs are looked up before the guest cart is frozen, so the merge decides on
    // fresh facts; a line added in between is judged on what the cache holds.
    let mut skus: Vec<Sku> = Vec::new();
    for cart in [state.carts.read(&guest, at).await.ok(), state.carts.read(&identity.cart.key(), at).await.ok()].into_iter().flatten() {
        skus.extend(cart.lines.into_iter().chain(cart.saved).map(|l| l.sku));
    }
    let validated = refresh_facts(&state, skus.iter()).await;
    let promotions = state.promotions.fresh(&state.durable).await;
    let plan = MergePlan {
        policy,
        drop: |frozen: &Cart| if validated { discontinued(&state, frozen) } else { Vec::new() },
        rank: |merged: &Cart| code_ranking(&state, &promotions, merged, at),
    };
    let outcome = state.carts.merge_with(user, &guest, &parsed, at, plan).await?;
    let key = identity.cart.key();
    let extra = [
        ("merged", serde_json::json!(outcome.merged)),
        ("dropped", dropped_json(&outcome.dropped)),
        ("short", if validated { short_lines(&state, &outcome.cart).await } else { serde_json::json!([]) }),
        ("validated", serde_json::json!(validated)),
    ];
    Ok(wrapped_response(&identity, &view(&state, &key, &outcome.cart, Annotations::Cached).await, &extra))
}

/// `POST /v1/cart/merge/preview {"guest_token"}`: the user's cart as each policy would make it,
/// with what would be dropped and what is short. Nothing is written or frozen: the guest cart
/// still merges afterwards.
pub async fn merge_preview(State(state): State<SharedState>, headers: HeaderMap, JsonBody(body): JsonBody) -> ApiResult<Response> {
    let identity = state.identify(&headers)?;
    user_of(&identity)?;
    let (token, _) = wire::parse_merge_request(&body, &state.rules().limits)?;
    let guest_key = CartId::Guest(token).key();
    let key = identity.cart.key();
    let at = now();
    let guest = state.carts.read(&guest_key, at).await?;
    let mine = state.carts.read(&key, at).await?;
    let skus: Vec<Sku> = [&guest, &mine].iter().flat_map(|c| c.lines.iter().chain(&c.saved)).map(|l| l.sku.clone()).collect();
    let validated = refresh_facts(&state, skus.iter()).await;
    // What a merge would leave out: the guest's lines of SKUs no longer sold, then the user's.
    let mut dropped = Vec::new();
    let mut keep_sold = |cart: &Cart| {
        let gone = if validated { discontinued(&state, cart) } else { Vec::new() };
        let mut kept = cart.clone();
        dropped.extend(kept.take_out(&gone));
        kept
    };
    let kept = keep_sold(&guest);
    let mine = keep_sold(&mine);
    let limits = state.rules().limits;
    let mut policies = serde_json::Map::new();
    let mut short = serde_json::json!([]);
    for policy in [MergePolicy::Sum, MergePolicy::Max, MergePolicy::KeepUser] {
        let mut merged = mine.clone();
        shared::merge(&mut merged, &kept, policy, &limits, at);
        if policy == MergePolicy::Sum && validated {
            // Summing asks for the most of every line: what is short under it is all that can be.
            short = short_lines(&state, &merged).await;
        }
        let v = view(&state, &key, &merged, Annotations::Cached).await;
        let mut buf = Vec::new();
        v.write_json(&mut buf);
        policies.insert(policy.as_str().to_owned(), serde_json::from_slice(&buf).map_err(ApiError::internal)?);
    }
    let answer = serde_json::json!({
        "policies": policies,
        "default_policy": state.merge_policy.map(MergePolicy::as_str),
        "dropped": dropped_json(&dropped),
        "short": short,
        "validated": validated,
    });
    let mut res = axum::Json(answer).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
