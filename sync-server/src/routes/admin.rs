//! Catalog administration, behind `Authorization: Bearer <CARTSYNC_ADMIN_TOKEN>`.

use super::path_sku;
use crate::catalog::{ProductChange, UpsertError, parse_product_list};
use crate::clock::now;
use crate::durable::DurableError;
use crate::error::{ApiError, ApiResult, JsonBody};
use crate::state::SharedState;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};
use shared::ErrorCode;

/// Compares digests rather than the tokens, so the comparison takes the same time whatever the
/// guess; with no token configured, everything is refused.
pub(crate) fn require_admin(state: &SharedState, headers: &HeaderMap) -> ApiResult<()> {
    let refused = || ApiError::new(ErrorCode::Unauthorized, "admin endpoints need Authorization: Bearer <admin token>");
    let expected = state.admin_token.as_ref().ok_or_else(refused)?;
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(refused)?;
    if Sha256::digest(given.trim().as_bytes()) == Sha256::digest(expected.expose().as_bytes()) { Ok(()) } else { Err(refused()) }
}

pub async fn get_product(
    State(state): State<SharedState>,
    headers: HeaderMap,
    sku: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let sku = path_sku(sku)?;
    match state.durable.product(&sku).await.map_err(ApiError::unavailable)? {
        Some(p) => Ok(axum::Json(p.admin_json()).into_response()),
        None => Err(ApiError::new(ErrorCode::UnknownProduct, format!("{sku} is not in the catalog"))),
    }
}

/// Creates a product (name and price required) or changes any of its fields.
pub async fn put_product(
    State(state): State<SharedState>,
    headers: HeaderMap,
    sku: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let sku = path_sku(sku)?;
    let change = ProductChange::parse(&body, state.rules().currency)?;
    let product = state.durable.upsert_product(&sku, change, now()).await.map_err(|e| match e {
        UpsertError::Invalid(e) => e.into(),
        UpsertError::Db(e) => ApiError::unavailable(e),
    })?;
    reload_facts(&state, std::slice::from_ref(&sku)).await;
    Ok(axum::Json(product.admin_json()).into_response())
}

/// Loads a JSON array of products, all or nothing: every row is checked first, and any bad row
/// is named (by index) with nothing loaded.
pub async fn bulk_load(State(state): State<SharedState>, headers: HeaderMap, JsonBody(body): JsonBody) -> ApiResult<Response> {
    require_admin(&state, &headers)?;
    let items = body.as_array().ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, "send a JSON array of products"))?;
    let rows = parse_product_list(items, state.rules().currency, |i| format!("item {i}")).map_err(|errors| {
        ApiError::new(ErrorCode::InvalidRequest, format!("{} invalid products; nothing was loaded", errors.len()))
            .with_detail("errors", json!(errors))
    })?;
    let n = state.durable.import_products(&rows, now(), |_| {}).await.map_err(|e| match e {
        e @ DurableError::StockBelowReserved { .. } => ApiError::new(ErrorCode::StockBelowReserved, e.to_string()),
        other => ApiError::unavailable(other),
    })?;
    let skus: Vec<_> = rows.into_iter().map(|r| r.sku).collect();
    reload_facts(&state, &skus).await;
    Ok(axum::Json(json!({ "loaded": n })).into_response())
}

/// This instance's catalog cache takes a change at once (a later `add` stores the new price);
/// if the database cannot be read back, the SKUs are forgotten and looked up on next use.
async fn reload_facts(state: &SharedState, skus: &[shared::Sku]) {
    if let Err(e) = state.catalog.reload(&state.durable, skus).await {
        tracing::warn!(error = %e, "could not reload changed products into the catalog cache");
        state.catalog.forget(skus);
    }
}
