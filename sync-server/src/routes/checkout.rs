//! Checkout and the storefront's product lookup.

use super::ClientAddr;
use crate::clock::now;
use crate::error::{ApiError, ApiResult};
use crate::gift_cards::Unusable;
use crate::idempotency::{Begin, IdempotencyError, Saved};
use crate::orders::checkout::{CheckoutError, Request};
use crate::state::SharedState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shared::wire::{CheckoutResponse, ProductsResponse, parse_checkout_request};
use shared::{ErrorCode, Sku, parse_idempotency_key};
use std::collections::BTreeSet;

/// Most SKUs one product lookup may name.
const MAX_SKUS_PER_LOOKUP: usize = 100;

/// `GET /v1/products?skus=A,B`: prices and free stock, in one query; unknown and discontinued
/// SKUs are left out.
pub async fn products(State(state): State<SharedState>, super::Params(q): super::Params) -> ApiResult<Response> {
    let Some(raw) = q.get("skus") else {
        // Without a list: the catalog's first products on sale, for a storefront's grid.
        let found = state.durable.list_products(MAX_SKUS_PER_LOOKUP).await.map_err(ApiError::unavailable)?;
        let products = found.iter().map(|p| p.view(state.catalog.low_stock_threshold)).collect();
        return Ok(axum::Json(ProductsResponse { products }).into_response());
    };
    let mut seen = BTreeSet::new();
    let mut skus: Vec<Sku> = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if seen.len() >= MAX_SKUS_PER_LOOKUP && !seen.contains(part) {
            return Err(ApiError::new(ErrorCode::InvalidRequest, format!("at most {MAX_SKUS_PER_LOOKUP} SKUs per lookup")));
        }
        let sku = Sku::parse(part)?;
        if seen.insert(part) {
            skus.push(sku);
        }
    }
    let found = state.durable.products(&skus).await.map_err(ApiError::unavailable)?;
    // A discontinued product is not shown (its cart lines show it as `discontinued`).
    let products = skus
        .iter()
        .filter_map(|s| found.iter().find(|p| &p.sku == s && p.active))
        .map(|p| p.view(state.catalog.low_stock_threshold))
        .collect();
    Ok(axum::Json(ProductsResponse { products }).into_response())
}

fn saved_response(saved: Saved) -> Response {
    let status = StatusCode::from_u16(saved.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut res = (status, saved.body).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

impl From<CheckoutError> for ApiError {
    fn from(e: CheckoutError) -> Self {
        match e {
            CheckoutError::CartEmpty => ApiError::new(ErrorCode::CartEmpty, "the cart is empty"),
            CheckoutError::PriceChanged { changes, total } => {
                ApiError::new(ErrorCode::PriceChanged, "prices changed since the cart was priced; review the new total")
                    .with_detail("changes", json!(changes))
                    .with_detail("total", json!(total))
            }
            CheckoutError::OutOfStock(items) => ApiError::new(ErrorCode::OutOfStock, "some items cannot be reserved in the quantity asked")
                .with_detail("items", json!(items)),
            CheckoutError::PromotionUnavailable(codes) => {
                ApiError::new(ErrorCode::PromotionUnavailable, "a promo code on the cart cannot be used now; remove it and check out again")
                    .with_detail("promotions", json!(codes))
            }
            CheckoutError::GiftCardUnavailable(cards) => {
                ApiError::new(ErrorCode::GiftCardUnavailable, "a gift card cannot be used").with_detail("gift_cards", json!(cards))
            }
            CheckoutError::TotalTooLarge(subtotal) => ApiError::new(
                ErrorCode::TotalTooLarge,
                format!("the order would cost more than {} minor units; split it into smaller orders", shared::Money::MAX_AMOUNT),
            )
            .with_detail("subtotal", json!(subtotal)),
            CheckoutError::QuoteInvalid(refusal) => {
                ApiError::new(ErrorCode::QuoteInvalid, refusal.message()).with_detail("reason", json!(refusal.as_str()))
            }
            CheckoutError::Cart(e) => e.into(),
            CheckoutError::Db(e) => ApiError::unavailable(e),
        }
    }
}

/// `POST /v1/cart/checkout`. The whole answer, error or not, is kept under the
/// `Idempotency-Key` and replayed for the same key and body; only failures on our side (5xx)
/// give the key back, so a retry runs afresh.
pub async fn checkout(
    State(state): State<SharedState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let identity = state.identify(&headers)?;
    let key = parse_idempotency_key(headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or(""))?.to_owned();
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("the body is not valid JSON: {e}")))?
    };
    let request = parse_checkout_request(&body)?;
    if !request.gift_cards.is_empty()
        && let Some(wait) = state.guesses.refused(client)
    {
        return Err(ApiError::rate_limited(wait, "too many unknown gift card codes from this client; try again later"));
    }
    if identity.issued_token {
        // A guest with no token has no cart yet: nothing to order, and no key worth keeping.
        return Err(ApiError::new(ErrorCode::CartEmpty, "the cart is empty"));
    }
    let owner = identity.cart.key();
    // An empty cart with a key never seen has nothing to order and nothing to replay: answered
    // without storing anything, so invented tokens and keys cannot fill the key table.
    let cart = state.carts.read(&owner, now()).await?;
    if cart.lines.is_empty() && !state.idempotency.known(&owner.tag, &key).await.map_err(ApiError::unavailable)? {
        crate::metrics::event("cartsync_checkouts_total", ErrorCode::CartEmpty.as_str());
        return Err(ApiError::new(ErrorCode::CartEmpty, "the cart is empty"));
    }
    // serde_json keeps object keys sorted, so equal bodies hash equally whatever their key order.
    let request_hash = hex::encode(Sha256::digest(body.to_string().as_bytes()));

    let claim = match state.idempotency.begin(&owner.tag, &key, &request_hash, now).await {
        Ok(Begin::Replay(saved)) => return Ok(saved_response(saved)),
        Ok(Begin::Run(claim)) => claim,
        Err(IdempotencyError::Reused) => {
            return Err(ApiError::new(ErrorCode::IdempotencyKeyReused, "this Idempotency-Key was used with another request body"));
        }
        Err(IdempotencyError::InProgress) => {
            return Err(ApiError::new(ErrorCode::RequestInProgress, "a checkout with this Idempotency-Key is still running"));
        }
        Err(IdempotencyError::Store(e)) => return Err(ApiError::unavailable(e)),
    };

    let quote = match body.get("quote") {
        None | Some(Value::Null) => None,
        Some(Value::String(q)) => Some(q.clone()),
        Some(_) => return Err(ApiError::new(ErrorCode::InvalidRequest, "quote is the string POST /v1/cart/quote answered")),
    };
    let asked = Request { expected: request.expected_total, gift_cards: request.gift_cards, quote };
    let mut forget = false;
    let saved = match state.checkout().place(&owner, &asked, now()).await {
        Ok(order) => {
            tracing::info!(order = %order.view.id, total = order.view.total.amount(), "order created");
            crate::metrics::event("cartsync_checkouts_total", "created");
            let body = serde_json::to_string(&CheckoutResponse { order: order.view }).map_err(ApiError::internal)?;
            Saved { status: StatusCode::CREATED.as_u16(), body }
        }
        Err(e) => {
            // Emptied since the check above: nothing to keep for this key either.
            forget = matches!(e, CheckoutError::CartEmpty);
            if let CheckoutError::GiftCardUnavailable(cards) = &e {
                // An unknown code counts as a guess: enumerating codes through checkout is slowed
                // down like the balance lookup.
                for _ in cards.iter().filter(|c| c.reason == Unusable::Unknown.as_str()) {
                    state.guesses.failed(client);
                }
            }
            let e = ApiError::from(e);
            crate::metrics::event("cartsync_checkouts_total", e.code.as_str());
            Saved { status: e.status().as_u16(), body: serde_json::to_string(&e.envelope()).unwrap_or_default() }
        }
    };
    claim.finish(&saved, forget).await;
    Ok(saved_response(saved))
}

/// `POST /v1/cart/quote`: the cart's live prices and discounts now, signed, valid for
/// `CARTSYNC_PRICE_LOCK_SECONDS`: a checkout with the quote within that time charges the quoted
/// unit prices for the quoted lines. Nothing is held.
pub async fn quote(State(state): State<SharedState>, headers: HeaderMap) -> ApiResult<Response> {
    let identity = state.identify(&headers)?;
    if identity.issued_token {
        return Err(ApiError::new(ErrorCode::CartEmpty, "the cart is empty"));
    }
    let owner = identity.cart.key();
    let at = now();
    let quoted = state.checkout().quote(&owner, at).await?;
    let priced = &quoted.priced;
    let q = crate::quotes::Quote {
        owner: owner.tag.clone(),
        currency: quoted.currency,
        lines: priced.lines.iter().map(|l| (l.sku.clone(), l.quantity, l.unit_price)).collect(),
        issued_at: at,
        expires_at: shared::Timestamp::from_millis(at.millis().saturating_add(state.price_lock_ms)),
    };
    let token = crate::quotes::sign(&state.quote_secret, &q);
    let lines: Vec<Value> = priced
        .lines
        .iter()
        .map(|l| json!({"sku": l.sku, "quantity": l.quantity, "unit_price": l.unit_price, "discount": l.discount, "line_total": l.line_total}))
        .collect();
    let discounts: Vec<shared::wire::DiscountView> = priced.discounts.iter().map(shared::wire::DiscountView::from).collect();
    let body = json!({
        "quote": token,
        "expires_at": q.expires_at,
        "lines": lines,
        "subtotal": priced.subtotal,
        "discounts": discounts,
        "discount_total": priced.discount_total,
        "total": priced.total,
    });
    let mut res = (StatusCode::CREATED, axum::Json(body)).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
