//! Webhook endpoints, suppressions, shopper preferences and analytics (`events.md`).

use super::admin::require_admin;
use crate::clock::now;
use crate::durable::{DurableError, on_db};
use crate::error::{ApiError, ApiResult, JsonBody};
use crate::events::{analytics, webhooks};
use crate::identity::CartId;
use crate::state::SharedState;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use shared::{ErrorCode, Timestamp, UserId};
use std::collections::HashMap;

fn path_text(p: Result<Path<String>, PathRejection>, what: &str) -> ApiResult<String> {
    let Path(raw) = p.map_err(|_| ApiError::new(ErrorCode::InvalidRequest, format!("the {what} in the path is not valid")))?;
    if raw.is_empty() || raw.len() > 255 {
        return Err(ApiError::new(ErrorCode::InvalidRequest, format!("the {what} in the path is not valid")));
    }
    Ok(raw)
}

fn no_webhook() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "there is no such webhook endpoint")
}

/// `POST /v1/admin/webhooks {"url", "events", "secret"?}` → `201` with the id and the secret
/// (generated when absent; shown only here).
pub async fn create_webhook(State(state): State<SharedState>, headers: HeaderMap, JsonBody(body): JsonBody) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let (url, events, secret) = webhooks::parse(&body).map_err(|m| ApiError::new(ErrorCode::InvalidRequest, m))?;
    let hook = webhooks::create(&state.durable, url, events, secret, now()).await.map_err(ApiError::unavailable)?;
    Ok((StatusCode::CREATED, axum::Json(hook.json(true))).into_response())
}

pub async fn list_webhooks(State(state): State<SharedState>, headers: HeaderMap) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let all = webhooks::list(&state.durable).await.map_err(ApiError::unavailable)?;
    Ok(axum::Json(json!({"webhooks": all.iter().map(|h| h.json(false)).collect::<Vec<_>>()})).into_response())
}

pub async fn get_webhook(
    State(state): State<SharedState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let id = path_text(id, "webhook id")?;
    let hook = webhooks::get(&state.durable, &id).await.map_err(ApiError::unavailable)?.ok_or_else(no_webhook)?;
    Ok(axum::Json(hook.json(false)).into_response())
}

/// Removes an endpoint; its pending deliveries are dropped. `204`.
pub async fn delete_webhook(
    State(state): State<SharedState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let id = path_text(id, "webhook id")?;
    if webhooks::delete(&state.durable, &id).await.map_err(ApiError::unavailable)? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(no_webhook())
    }
}

/// `GET /v1/admin/webhooks/{id}/deliveries?limit=`: recent attempts, newest first.
pub async fn list_deliveries(
    State(state): State<SharedState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    super::Params(q): super::Params,
) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let id = path_text(id, "webhook id")?;
    webhooks::get(&state.durable, &id).await.map_err(ApiError::unavailable)?.ok_or_else(no_webhook)?;
    let limit = limit_of(&q, 100, 1000)?;
    let list = webhooks::deliveries(&state.durable, &id, limit as i64).await.map_err(ApiError::unavailable)?;
    Ok(axum::Json(json!({"deliveries": list})).into_response())
}

/// `POST /v1/admin/webhooks/{id}/replay {"from", "to"}`: sends the endpoint's events of that time
/// range again. `202` with how many were queued.
pub async fn replay(
    State(state): State<SharedState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let id = path_text(id, "webhook id")?;
    let hook = webhooks::get(&state.durable, &id).await.map_err(ApiError::unavailable)?.ok_or_else(no_webhook)?;
    let time = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .and_then(Timestamp::parse_rfc3339)
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, format!("{k} is an RFC 3339 time")))
    };
    let (from, to) = (time("from")?, time("to")?);
    if to < from {
        return Err(ApiError::new(ErrorCode::InvalidRequest, "to is before from"));
    }
    let n = webhooks::replay(&state.durable, &hook, from, to, now()).await.map_err(ApiError::unavailable)?;
    Ok((StatusCode::ACCEPTED, axum::Json(json!({"queued": n}))).into_response())
}

fn user_of(p: Result<Path<String>, PathRejection>) -> ApiResult<UserId> {
    let raw = path_text(p, "user")?;
    UserId::parse(&raw).map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "the user in the path is not valid"))
}

async fn set_suppressed(state: &SharedState, user: &UserId, on: bool) -> Result<(), DurableError> {
    let now = now().millis();
    on_db!(&state.durable, pool => {
        if on {
            sqlx::query("INSERT INTO suppressions (user_id, created_at) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING")
                .bind(user.as_str()).bind(now).execute(pool).await?;
        } else {
            sqlx::query("DELETE FROM suppressions WHERE user_id = $1").bind(user.as_str()).execute(pool).await?;
        }
    });
    Ok(())
}

/// `PUT /v1/admin/suppressions/{user}`: no `cart.abandoned` for this user.
pub async fn suppress(
    State(state): State<SharedState>,
    headers: HeaderMap,
    user: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    suppression(&state, &headers, user, true).await
}

/// `DELETE /v1/admin/suppressions/{user}`.
pub async fn unsuppress(
    State(state): State<SharedState>,
    headers: HeaderMap,
    user: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    suppression(&state, &headers, user, false).await
}

async fn suppression(state: &SharedState, headers: &HeaderMap, user: Result<Path<String>, PathRejection>, on: bool) -> ApiResult<Response> {
    require_admin(state, headers)?;
    let user = user_of(user)?;
    set_suppressed(state, &user, on).await.map_err(ApiError::unavailable)?;
    Ok(axum::Json(json!({"user": user.as_str(), "suppressed": on})).into_response())
}

fn me(state: &SharedState, headers: &HeaderMap) -> ApiResult<UserId> {
    match state.identify(headers)?.cart {
        CartId::User(u) => Ok(u),
        CartId::Guest(_) => Err(ApiError::new(ErrorCode::Unauthorized, "preferences need Authorization: Bearer <user token>")),
    }
}

async fn preferences_of(state: &SharedState, user: &UserId) -> Result<bool, DurableError> {
    let row: Option<(bool,)> = on_db!(&state.durable, pool => sqlx::query_as("SELECT abandonment_emails FROM preferences WHERE user_id = $1")
        .bind(user.as_str()).fetch_optional(pool).await?);
    Ok(row.is_none_or(|r| r.0))
}

/// `GET /v1/me/preferences`.
pub async fn get_preferences(State(state): State<SharedState>, headers: HeaderMap) -> ApiResult<Response> {
    let user = me(&state, &headers)?;
    let on = preferences_of(&state, &user).await.map_err(ApiError::unavailable)?;
    Ok(axum::Json(json!({"abandonment_emails": on})).into_response())
}

/// `PUT /v1/me/preferences {"abandonment_emails": bool}` (the user's own, Bearer).
pub async fn put_preferences(State(state): State<SharedState>, headers: HeaderMap, JsonBody(body): JsonBody) -> ApiResult<Response> {
    let user = me(&state, &headers)?;
    let on = match body.as_object().and_then(|o| o.get("abandonment_emails")) {
        Some(Value::Bool(b)) => *b,
        _ => return Err(ApiError::new(ErrorCode::InvalidRequest, "send {\"abandonment_emails\": true | false}")),
    };
    let now = now().millis();
    on_db!(&state.durable, pool => {
        sqlx::query("INSERT INTO preferences (user_id, abandonment_emails, updated_at) VALUES ($1, $2, $3)
                     ON CONFLICT (user_id) DO UPDATE SET abandonment_emails = EXCLUDED.abandonment_emails, updated_at = EXCLUDED.updated_at")
            .bind(user.as_str()).bind(on).bind(now).execute(pool).await.map_err(|e| ApiError::unavailable(DurableError::from(e)))?;
    });
    Ok(axum::Json(json!({"abandonment_emails": on})).into_response())
}

fn limit_of(q: &HashMap<String, String>, default: usize, max: usize) -> ApiResult<usize> {
    match q.get("limit") {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, format!("limit is a whole number from 1 to {max}"))),
    }
}

/// `?from&to` (RFC 3339; default: the last 30 days up to now).
fn window(q: &HashMap<String, String>) -> ApiResult<(Timestamp, Timestamp)> {
    let at = |k: &str, default: Timestamp| match q.get(k) {
        None => Ok(default),
        Some(v) => Timestamp::parse_rfc3339(v).ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, format!("{k} is an RFC 3339 time"))),
    };
    let now = now();
    let to = at("to", now)?;
    let from = at("from", Timestamp::from_millis(to.millis() - 30 * 86_400_000))?;
    if to < from {
        return Err(ApiError::new(ErrorCode::InvalidRequest, "to is before from"));
    }
    Ok((from, to))
}

pub async fn funnel(State(state): State<SharedState>, headers: HeaderMap, super::Params(q): super::Params) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let (from, to) = window(&q)?;
    let v = analytics::funnel(&state.durable, from, to, state.rules().currency).await.map_err(ApiError::unavailable)?;
    Ok(axum::Json(v).into_response())
}

pub async fn skus(State(state): State<SharedState>, headers: HeaderMap, super::Params(q): super::Params) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let (from, to) = window(&q)?;
    let limit = limit_of(&q, 100, 10_000)?;
    let v = analytics::skus(&state.durable, from, to, limit).await.map_err(ApiError::unavailable)?;
    Ok(axum::Json(v).into_response())
}
