//! Promotions and gift cards: the admin API, the public promotion lookup the browser cart
//! evaluates with, and the gift card balance lookup.

use super::ClientAddr;
use super::admin::require_admin;
use crate::clock::now;
use crate::error::{ApiError, ApiResult, JsonBody};
use crate::gift_cards;
use crate::promotions::{self, PutError};
use crate::state::SharedState;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use shared::promo::{MAX_PROMO_CODES, PromoCode, PromotionId};
use shared::promo_json::parse_promotion;
use shared::{ErrorCode, Money, Timestamp};

fn path_id(p: Result<Path<String>, PathRejection>) -> ApiResult<PromotionId> {
    let Path(raw) = p.map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "the promotion id in the path is not valid"))?;
    Ok(PromotionId::parse(&raw)?)
}

/// Cart views on this instance see an admin's change at once.
async fn reload_after_change(state: &SharedState) {
    if let Err(e) = state.promotions.reload(&state.durable).await {
        tracing::warn!(error = %e, "could not reload promotions after a change");
        state.promotions.invalidate();
    }
}

fn no_promotion(id: &PromotionId) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("there is no promotion {}", id.as_str()))
}

/// `PUT /v1/admin/promotions/{id}`: creates (201) or replaces (200) a promotion.
pub async fn put_promotion(
    State(state): State<SharedState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let id = path_id(id)?;
    let currency = state.rules().currency;
    let promotion = parse_promotion(id, &body, currency)?;
    let (stored, created) = promotions::put(&state.durable, &promotion, currency, now()).await.map_err(|e| match e {
        PutError::CodeTaken { code, owner } => {
            ApiError::new(ErrorCode::InvalidPromoCode, format!("the code {code} already belongs to {owner}"))
                .with_detail("promo_code", json!(code))
        }
        PutError::Db(e) => ApiError::unavailable(e),
    })?;
    reload_after_change(&state).await;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(stored.admin_json())).into_response())
}

pub async fn get_promotion(
    State(state): State<SharedState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let id = path_id(id)?;
    match promotions::get(&state.durable, &id, state.rules().currency).await.map_err(ApiError::unavailable)? {
        Some(p) => Ok(axum::Json(p.admin_json()).into_response()),
        None => Err(no_promotion(&id)),
    }
}

pub async fn list_promotions(State(state): State<SharedState>, headers: HeaderMap) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let all = promotions::list(&state.durable, state.rules().currency).await.map_err(ApiError::unavailable)?;
    Ok(axum::Json(json!({ "promotions": all.iter().map(|p| p.admin_json()).collect::<Vec<_>>() })).into_response())
}

/// `DELETE /v1/admin/promotions/{id}`: deactivates; the promotion and its history stay.
pub async fn delete_promotion(
    State(state): State<SharedState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let id = path_id(id)?;
    let done = promotions::deactivate(&state.durable, &id, state.rules().currency, now()).await.map_err(ApiError::unavailable)?;
    let Some(p) = done else { return Err(no_promotion(&id)) };
    reload_after_change(&state).await;
    Ok(axum::Json(p.admin_json()).into_response())
}

/// `GET /v1/promotions?codes=A,B`: the definitions the browser cart evaluates with, offline too:
/// every automatic promotion in force and those of the codes named (at most five; unknown codes
/// are left out). Usage counts are not shown, only whether a promotion is used up.
pub async fn public_promotions(State(state): State<SharedState>, super::Params(q): super::Params) -> ApiResult<Response> {
    let mut codes: Vec<PromoCode> = Vec::new();
    if let Some(raw) = q.get("codes") {
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let code = PromoCode::parse(part)?;
            if !codes.contains(&code) {
                codes.push(code);
            }
        }
    }
    if codes.len() > MAX_PROMO_CODES {
        return Err(ApiError::new(ErrorCode::TooManyPromoCodes, format!("at most {MAX_PROMO_CODES} codes per lookup")));
    }
    let snapshot = state.promotions.fresh(&state.durable).await;
    let mut res = axum::Json(snapshot.public_json(&codes)).into_response();
    res.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    Ok(res)
}

fn card_id(p: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    let Path(raw) = p.map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "the gift card id in the path is not valid"))?;
    if raw.is_empty() || raw.len() > 64 || !raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(ApiError::new(ErrorCode::GiftCardNotFound, "there is no such gift card"));
    }
    Ok(raw)
}

/// `POST /v1/admin/gift-cards {"balance": Money, "expires_at"?}`: issues a card; the answer is
/// the only place its code is ever shown.
pub async fn issue_gift_card(State(state): State<SharedState>, headers: HeaderMap, JsonBody(body): JsonBody) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let obj =
        body.as_object().ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, "a gift card is {\"balance\": Money, \"expires_at\"?}"))?;
    let balance = Money::from_json(obj.get("balance").unwrap_or(&Value::Null))?;
    if balance.currency() != state.rules().currency {
        return Err(ApiError::new(ErrorCode::CurrencyMismatch, format!("gift cards are in {}", state.rules().currency)));
    }
    if balance.amount() <= 0 {
        return Err(ApiError::new(ErrorCode::InvalidMoney, "balance is more than zero"));
    }
    let expires_at = match obj.get("expires_at") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_str()
                .and_then(Timestamp::parse_rfc3339)
                .ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, "expires_at is an RFC 3339 time"))?,
        ),
    };
    let (card, code) = gift_cards::issue(&state.durable, balance, expires_at, now()).await.map_err(ApiError::unavailable)?;
    tracing::info!(gift_card = %card.id, last4 = %card.last4, "gift card issued");
    let body = json!({
        "id": card.id, "code": shared::gift_card::display(&code), "last4": card.last4,
        "balance": card.balance, "expires_at": card.expires_at,
    });
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

pub async fn get_gift_card(
    State(state): State<SharedState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let card = gift_cards::get(&state.durable, &card_id(id)?).await.map_err(ApiError::unavailable)?;
    admin_card(card)
}

pub async fn disable_gift_card(
    State(state): State<SharedState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let card = gift_cards::disable(&state.durable, &card_id(id)?).await.map_err(ApiError::unavailable)?;
    if let Some(c) = &card {
        tracing::info!(gift_card = %c.id, "gift card disabled");
    }
    admin_card(card)
}

/// The admin's view of a card, or `404 gift_card_not_found`.
fn admin_card(card: Option<gift_cards::GiftCard>) -> ApiResult<Response> {
    match card {
        Some(c) => Ok(axum::Json(c.admin_json()).into_response()),
        None => Err(ApiError::new(ErrorCode::GiftCardNotFound, "there is no such gift card")),
    }
}

/// `POST /v1/gift-cards/balance {"code"}`: the balance of a usable card. Unknown, disabled and
/// expired cards all answer `404 gift_card_not_found`; each such answer counts against the
/// client's allowance of failed lookups, and a client past it is refused before any lookup.
pub async fn gift_card_balance(
    State(state): State<SharedState>,
    ClientAddr(client): ClientAddr,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    if let Some(wait) = state.guesses.refused(client) {
        return Err(ApiError::rate_limited(wait, "too many unknown gift card codes from this client; try again later"));
    }
    let typed = body.get("code").and_then(Value::as_str).ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, "code is required"))?;
    let not_found = || ApiError::new(ErrorCode::GiftCardNotFound, "no usable gift card has this code");
    let card = match shared::gift_card::normalize(typed) {
        Some(code) => gift_cards::by_code(&state.durable, &code).await.map_err(ApiError::unavailable)?,
        None => None,
    };
    let now = now();
    match card.filter(|c| !c.disabled && c.expires_at.is_none_or(|e| now <= e)) {
        Some(c) => {
            let available = Money::new(c.free(), c.balance.currency()).unwrap_or(c.balance);
            let mut res = axum::Json(json!({"balance": available, "expires_at": c.expires_at, "last4": c.last4})).into_response();
            res.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
            Ok(res)
        }
        None => match state.guesses.failed(client) {
            Some(wait) => Err(ApiError::rate_limited(wait, "too many unknown gift card codes from this client; try again later")),
            None => Err(not_found()),
        },
    }
}
