//! Orders and the payment provider's webhook.

use crate::clock::now;
use crate::error::{ApiError, ApiResult};
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
