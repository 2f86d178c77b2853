//! Orders and the payment provider's webhook.

use crate::clock::now;
use crate::error::{ApiError, ApiResult};
use crate::orders::control::{self, ControlError};
use crate::orders::payment::PaymentError;
use crate::signature::{self, SignatureError};
use crate::state::SharedState;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use shared::ErrorCode;
use shared::wire::parse_payment_notice;

fn no_such_order() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such order")
}

/// `GET /v1/orders/{id}`: the owner's cart identity only; anyone else is told there is no such order.
pub async fn get_order(
    State(state): State<SharedState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let identity = state.identify(&headers)?;
    let Ok(Path(id)) = id else { return Err(no_such_order()) };
    match crate::orders::find(&state.durable, &id).await.map_err(ApiError::unavailable)? {
        Some(o) if o.owner == identity.cart.key().tag => Ok(axum::Json(o.view).into_response()),
        _ => Err(no_such_order()),
    }
}

impl From<PaymentError> for ApiError {
    fn from(e: PaymentError) -> Self {
        match e {
            PaymentError::NotFound => no_such_order(),
            PaymentError::Expired(order) => {
                ApiError::new(ErrorCode::ReservationExpired, "the stock hold of this order expired before the payment arrived")
                    .with_detail("order", json!(order.view))
            }
            PaymentError::NotPending(order) => ApiError::new(ErrorCode::OrderNotPending, format!("the order is {}", order.view.status))
                .with_detail("order", json!(order.view)),
            PaymentError::AmountMismatch { order, paid } => {
                ApiError::new(ErrorCode::AmountMismatch, "the amount paid is not the order's amount due; nothing was changed")
                    .with_detail("amount_due", json!(order.amount_due()))
                    .with_detail("amount", json!(paid))
            }
            PaymentError::Cart(e) => ApiError::from(e),
            PaymentError::Db(e) => ApiError::unavailable(e),
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::NotFound => no_such_order(),
            ControlError::NotPending(order) => ApiError::new(ErrorCode::OrderNotPending, format!("the order is {}", order.view.status))
                .with_detail("order", json!(order.view)),
            ControlError::Expired(order) => ApiError::new(ErrorCode::ReservationExpired, "the stock hold of this order has run out")
                .with_detail("order", json!(order.view)),
            ControlError::AlreadyExtended(order) => {
                ApiError::new(ErrorCode::HoldNotExtendable, "this order's hold was extended once already")
                    .with_detail("order", json!(order.view))
            }
            ControlError::Db(e) => ApiError::unavailable(e),
        }
    }
}

/// The order id of the path and the caller's cart tag (orders are their cart owner's alone).
fn order_and_owner(state: &SharedState, headers: &HeaderMap, id: Result<Path<String>, PathRejection>) -> ApiResult<(String, String)> {
    let identity = state.identify(headers)?;
    let Ok(Path(id)) = id else { return Err(no_such_order()) };
    Ok((id, identity.cart.key().tag))
}

/// Views of carts and products see at once what a change to an order's holds moved.
fn holds_moved(state: &SharedState, order: &crate::orders::Order) {
    state.catalog.forget(&order.skus());
    if !order.view.discounts.is_empty() {
        state.promotions.invalidate();
    }
}

/// `POST /v1/orders/{id}/extend`: the owner extends a pending order's hold, once, by
/// `CARTSYNC_HOLD_EXTEND_SECONDS`.
pub async fn extend(State(state): State<SharedState>, headers: HeaderMap, id: Result<Path<String>, PathRejection>) -> ApiResult<Response> {
    let (id, owner) = order_and_owner(&state, &headers, id)?;
    let order = control::extend(&state.durable, &id, &owner, state.hold_extend_ms, now()).await?;
    Ok(axum::Json(order.view).into_response())
}

/// `POST /v1/orders/{id}/cancel`: the owner cancels a pending order; its stock, promotion uses
/// and gift card amounts are released at once.
pub async fn cancel(State(state): State<SharedState>, headers: HeaderMap, id: Result<Path<String>, PathRejection>) -> ApiResult<Response> {
    let (id, owner) = order_and_owner(&state, &headers, id)?;
    let order = control::cancel(&state.durable, &id, &owner, now()).await?;
    holds_moved(&state, &order);
    if let Some(user) = &order.user
        && !order.view.discounts.is_empty()
    {
        state.promotions.refresh_customer(&state.durable, user).await;
    }
    Ok(axum::Json(order.view).into_response())
}

/// `POST /v1/dev/orders/{id}/pay {"status": "succeeded" | "failed"}` (development only, with
/// `CARTSYNC_DEV_LOGIN`): the payment provider's part for the demo shop. Writes the notice a
/// provider would for the order's amount due, signs it with the webhook secret, and hands it to
/// the webhook's own path (signature check included), so the secret never reaches the page.
pub async fn dev_pay(
    State(state): State<SharedState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    crate::error::JsonBody(body): crate::error::JsonBody,
) -> ApiResult<Response> {
    if state.dev_login_secret.is_none() {
        return Err(ApiError::new(ErrorCode::NotFound, "no such resource"));
    }
    let secret = state
        .webhook_secret
        .as_ref()
        .ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "no CARTSYNC_WEBHOOK_SECRET: the payment webhook takes no notices"))?;
    let status = match body.get("status").and_then(Value::as_str) {
        Some(s @ ("succeeded" | "failed")) => s,
        _ => return Err(ApiError::new(ErrorCode::InvalidRequest, "status is \"succeeded\" or \"failed\"")),
    };
    let (id, owner) = order_and_owner(&state, &headers, id)?;
    let order = match crate::orders::find(&state.durable, &id).await.map_err(ApiError::unavailable)? {
        Some(o) if o.owner == owner => o,
        _ => return Err(no_such_order()),
    };
    let notice = json!({
        "order_id": id,
        "status": status,
        "payment_ref": format!("dev_{}", uuid::Uuid::new_v4().simple()),
        "amount": order.amount_due(),
    });
    let bytes = serde_json::to_vec(&notice).map_err(ApiError::internal)?;
    let t = now().millis().div_euclid(1000);
    let header = signature::sign(secret.expose().as_bytes(), t, &bytes);
    let mut signed = HeaderMap::new();
    signed.insert(signature::HEADER, header.parse().map_err(ApiError::internal)?);
    payment(State(state), signed, Ok(Path(id)), Bytes::from(bytes)).await
}

/// `POST /v1/orders/{id}/payment`: the payment provider's webhook. The body names its order and
/// amount and is signed with the time (`Cartsync-Signature`), so it can neither be replayed
/// after five minutes nor sent about another order.
pub async fn payment(
    State(state): State<SharedState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> ApiResult<Response> {
    let refused = |e: SignatureError| ApiError::new(ErrorCode::InvalidSignature, e.to_string());
    let secret = state
        .webhook_secret
        .as_ref()
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidSignature, "this server accepts no payment webhooks"))?;
    let header = headers.get(signature::HEADER).map(|v| v.to_str().unwrap_or(""));
    signature::verify(secret.expose().as_bytes(), header, &body, now().millis().div_euclid(1000)).map_err(refused)?;

    let v: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("the body is not valid JSON: {e}")))?;
    let notice = parse_payment_notice(&v)?;
    let Ok(Path(id)) = id else { return Err(no_such_order()) };
    if notice.order_id != id {
        return Err(ApiError::new(ErrorCode::InvalidRequest, "the body's order_id is not the order of the path"));
    }
    let order = state.payments().receive(&notice, now()).await?;
    Ok(axum::Json(order.view).into_response())
}
