//! Checkout, orders, the payment webhook and the storefront's product lookup.

use super::run_ops;
use crate::app::{SharedState, now};
use crate::error::{ApiError, ApiResult};
use crate::identity::identify;
use crate::orders::{CheckoutResult, IdempotencyStart, PaymentResult};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shared::wire::{CheckoutResponse, ErrorBody, ErrorEnvelope, ProductsResponse, parse_checkout_request};
use shared::{ErrorCode, Op, OpId, OpKind, Sku, parse_idempotency_key};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Most SKUs one product lookup may name.
const MAX_SKUS_PER_LOOKUP: usize = 100;

/// `GET /v1/products?skus=A,B`: prices and free stock, in one query; unknown SKUs are left out.
pub async fn products(State(state): State<SharedState>, Query(q): Query<HashMap<String, String>>) -> ApiResult<Response> {
    let Some(raw) = q.get("skus") else {
        // Without a list: the catalog's first products on sale, for a storefront's grid.
        let found = state.durable.list_products(MAX_SKUS_PER_LOOKUP).await.map_err(ApiError::unavailable)?;
        let products = found.iter().map(|p| p.view(state.catalog.low_stock_threshold)).collect();
        return Ok(axum::Json(ProductsResponse { products }).into_response());
    };
    let mut skus: Vec<Sku> = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let sku = Sku::parse(part)?;
        if !skus.contains(&sku) {
            skus.push(sku);
        }
    }
    if skus.len() > MAX_SKUS_PER_LOOKUP {
        return Err(ApiError::new(ErrorCode::InvalidRequest, format!("at most {MAX_SKUS_PER_LOOKUP} SKUs per lookup")));
    }
    let found = state.durable.products(&skus).await.map_err(ApiError::unavailable)?;
    let products =
        skus.iter().filter_map(|s| found.iter().find(|p| &p.sku == s)).map(|p| p.view(state.catalog.low_stock_threshold)).collect();
    Ok(axum::Json(ProductsResponse { products }).into_response())
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut res = (status, body).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn error_json(e: &ApiError) -> String {
    let body =
        ErrorEnvelope { error: ErrorBody { code: e.code.as_str().to_owned(), message: e.message.clone(), details: e.details.clone() } };
    serde_json::to_string(&body).unwrap_or_default()
}

/// `POST /v1/cart/checkout`. The whole answer, error or not, is kept under the
/// `Idempotency-Key` and replayed for the same key and body; only failures on our side (5xx)
/// give the key back, so a retry runs afresh.
pub async fn checkout(State(state): State<SharedState>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let identity = identify(&headers, &state.auth)?;
    let key = parse_idempotency_key(headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or(""))?.to_owned();
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("the body is not valid JSON: {e}")))?
    };
    let expected = parse_checkout_request(&body)?;
    let owner = identity.cart.key();
    // serde_json keeps object keys sorted, so equal bodies hash equally whatever their key order.
    let request_hash = hex::encode(Sha256::digest(body.to_string().as_bytes()));

    let waited = Instant::now();
    loop {
        match state.durable.idempotency_start(&owner.tag, &key, &request_hash, now(), 60_000).await.map_err(ApiError::unavailable)? {
            IdempotencyStart::Fresh => break,
            IdempotencyStart::Replay(status, body) => {
                return Ok(json_response(StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body));
            }
            IdempotencyStart::Reused => {
                return Err(ApiError::new(ErrorCode::IdempotencyKeyReused, "this Idempotency-Key was used with another request body"));
            }
            IdempotencyStart::InProgress => {
                if waited.elapsed() > Duration::from_millis(state.idempotency_wait_ms) {
                    return Err(ApiError::new(ErrorCode::RequestInProgress, "a checkout with this Idempotency-Key is still running"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    let outcome = run_checkout(&state, &owner, expected).await;
    crate::metrics::event(
        "cartsync_checkouts_total",
        match &outcome {
            Ok(_) => "created",
            Err(e) => e.code.as_str(),
        },
    );
    let (status, text) = match &outcome {
        Ok((status, value)) => (*status, value.to_string()),
        Err(e) => (StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), error_json(e)),
    };
    if status.is_server_error() {
        if let Err(e) = state.durable.idempotency_abandon(&owner.tag, &key).await {
            tracing::warn!(error = %e, "could not give back an idempotency key");
        }
        return Err(outcome.err().unwrap_or_else(|| ApiError::internal("checkout failed")));
    }
    if let Err(e) = state.durable.idempotency_finish(&owner.tag, &key, status.as_u16(), &text).await {
        tracing::warn!(error = %e, "could not record a checkout answer under its idempotency key");
    }
    Ok(json_response(status, text))
}

async fn run_checkout(
    state: &SharedState,
    owner: &crate::identity::CartKey,
    expected: Option<shared::Money>,
) -> ApiResult<(StatusCode, Value)> {
    let (cart, _) = run_ops(state, owner, &[], None).await?;
    if cart.lines.is_empty() {
        return Err(ApiError::new(ErrorCode::CartEmpty, "the cart is empty"));
    }
    let result = state.durable.checkout(owner, &cart, expected, state.hold_ms, now()).await.map_err(ApiError::unavailable)?;
    let skus: Vec<Sku> = cart.lines.iter().map(|l| l.sku.clone()).collect();
    state.catalog.forget(&skus);
    match result {
        CheckoutResult::Created(order) => {
            tracing::info!(order = %order.view.id, total = order.view.total.amount(), "order created");
            let body = serde_json::to_value(CheckoutResponse { order: order.view }).map_err(ApiError::internal)?;
            Ok((StatusCode::CREATED, body))
        }
        CheckoutResult::PriceChanged { changes, total } => {
            Err(ApiError::new(ErrorCode::PriceChanged, "prices changed since the cart was priced; review the new total")
                .with_detail("changes", Value::Array(changes))
                .with_detail("total", json!(total)))
        }
        CheckoutResult::OutOfStock(items) => {
            Err(ApiError::new(ErrorCode::OutOfStock, "some items cannot be reserved in the quantity asked")
                .with_detail("items", Value::Array(items)))
        }
    }
}

/// `GET /v1/orders/{id}`: the owner's cart identity only; anyone else is told there is no such order.
pub async fn get_order(State(state): State<SharedState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Response> {
    let identity = identify(&headers, &state.auth)?;
    let order = state.durable.order(&id).await.map_err(ApiError::unavailable)?;
    match order {
        Some(o) if o.owner == identity.cart.key().tag => Ok(axum::Json(o.view).into_response()),
        _ => Err(ApiError::new(ErrorCode::NotFound, "no such order")),
    }
}

/// `POST /v1/orders/{id}/payment`: the payment provider's webhook, signed with
/// `X-Signature: sha256=<hex HMAC-SHA256 of the body>`.
pub async fn payment(State(state): State<SharedState>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> ApiResult<Response> {
    let unauthorized = || ApiError::new(ErrorCode::Unauthorized, "the webhook signature is missing or wrong");
    let secret = state.webhook_secret.as_ref().ok_or_else(unauthorized)?;
    let sig =
        headers.get("x-signature").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().strip_prefix("sha256=")).ok_or_else(unauthorized)?;
    let sig = hex::decode(sig).map_err(|_| unauthorized())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).map_err(ApiError::internal)?;
    mac.update(&body);
    mac.verify_slice(&sig).map_err(|_| unauthorized())?;

    let v: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("the body is not valid JSON: {e}")))?;
    let succeeded = match v.get("status").and_then(Value::as_str) {
        Some("succeeded") => true,
        Some("failed") => false,
        _ => return Err(ApiError::new(ErrorCode::InvalidRequest, "status is \"succeeded\" or \"failed\"")),
    };
    let payment_ref = match v.get("payment_ref").and_then(Value::as_str) {
        Some(r) if !r.is_empty() && r.len() <= 255 => r.to_owned(),
        _ => return Err(ApiError::new(ErrorCode::InvalidRequest, "payment_ref is 1 to 255 characters")),
    };
    match state.durable.record_payment(&id, succeeded, &payment_ref, now()).await.map_err(ApiError::unavailable)? {
        PaymentResult::NotFound => Err(ApiError::new(ErrorCode::NotFound, "no such order")),
        PaymentResult::Expired(order) => {
            state.catalog.forget(&order.skus());
            Err(ApiError::new(ErrorCode::ReservationExpired, "the stock hold of this order expired before the payment arrived")
                .with_detail("order", json!(order.view)))
        }
        PaymentResult::NotPending(order) => Err(ApiError::new(ErrorCode::OrderNotPending, format!("the order is {}", order.view.status))
            .with_detail("order", json!(order.view))),
        PaymentResult::Done { order, newly_paid } => {
            state.catalog.forget(&order.skus());
            if newly_paid {
                tracing::info!(order = %order.view.id, "order paid");
                // The cart is cleared once, by an op id of its own, so a retried webhook or a
                // crash between the two steps cannot clear it twice.
                let op = Op { id: OpId::parse(&format!("paid:{}", order.view.id)).map_err(ApiError::internal)?, kind: OpKind::Clear };
                if let Err(e) = run_ops(&state, &order.cart_key(), &[op], None).await {
                    tracing::warn!(order = %order.view.id, error = ?e, "paid, but the cart could not be cleared");
                }
            }
            Ok(axum::Json(order.view).into_response())
        }
    }
}
