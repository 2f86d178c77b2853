//! The HTTP routes of the v1 API. Handlers parse the request, call a service (`carts`,
//! `orders`, `idempotency`, `catalog`) and shape its answer; no protocol lives here.
//! By feature: the cart, its ops and the login merge in `cart`, checkout and the product lookup
//! in `checkout`, orders and the payment webhook in `orders`, the catalog admin in `admin`,
//! promotions and gift cards (admin and public) in `promotions`.

mod admin;
mod cart;
mod checkout;
mod events;
mod orders;
mod promotions;

use crate::carts::CartsError;
use crate::clock::now;
use crate::error::{ApiError, ApiResult, JsonBody};
use crate::hot::StoreError;
use crate::state::SharedState;
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodFilter;
use serde_json::json;
use shared::{ErrorCode, Sku};

/// The router under construction, with the `(method, path)` of every route as it is added, so
/// the routes the server has can be listed from the router's own construction (the OpenAPI
/// document is checked against this list).
struct Routes {
    router: Router<SharedState>,
    table: Vec<(Method, &'static str)>,
}

impl Routes {
    fn at<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, SharedState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a standard method");
        self.router = self.router.route(path, axum::routing::on(filter, handler));
        self.table.push((method, path));
        self
    }
}

fn routes() -> Routes {
    let r = Routes { router: Router::new(), table: Vec::new() };
    r.at(Method::GET, "/v1/cart", cart::get_cart)
        .at(Method::POST, "/v1/cart/items", cart::add_item)
        .at(Method::PUT, "/v1/cart/items/{sku}", cart::set_quantity)
        .at(Method::PATCH, "/v1/cart/items/{sku}", cart::set_quantity)
        .at(Method::DELETE, "/v1/cart/items/{sku}", cart::remove_item)
        .at(Method::POST, "/v1/cart/items/{sku}/save-for-later", cart::save_for_later)
        .at(Method::POST, "/v1/cart/saved/{sku}/move-to-cart", cart::move_to_cart)
        .at(Method::DELETE, "/v1/cart/saved/{sku}", cart::remove_saved)
        .at(Method::POST, "/v1/cart/promo-codes", cart::apply_promo_code)
        .at(Method::DELETE, "/v1/cart/promo-codes/{code}", cart::remove_promo_code)
        .at(Method::POST, "/v1/cart/ops", cart::push_ops)
        .at(Method::POST, "/v1/cart/merge", cart::merge)
        .at(Method::POST, "/v1/cart/merge/preview", cart::merge_preview)
        .at(Method::GET, "/v1/products", checkout::products)
        .at(Method::POST, "/v1/cart/checkout", checkout::checkout)
        .at(Method::POST, "/v1/cart/quote", checkout::quote)
        .at(Method::GET, "/v1/orders/{id}", orders::get_order)
        .at(Method::POST, "/v1/orders/{id}/payment", orders::payment)
        .at(Method::POST, "/v1/orders/{id}/extend", orders::extend)
        .at(Method::POST, "/v1/orders/{id}/cancel", orders::cancel)
        .at(Method::POST, "/v1/dev/orders/{id}/pay", orders::dev_pay)
        .at(Method::POST, "/v1/admin/products", admin::bulk_load)
        .at(Method::PUT, "/v1/admin/products/{sku}", admin::put_product)
        .at(Method::GET, "/v1/admin/products/{sku}", admin::get_product)
        .at(Method::GET, "/v1/admin/promotions", promotions::list_promotions)
        .at(Method::PUT, "/v1/admin/promotions/{id}", promotions::put_promotion)
        .at(Method::GET, "/v1/admin/promotions/{id}", promotions::get_promotion)
        .at(Method::DELETE, "/v1/admin/promotions/{id}", promotions::delete_promotion)
        .at(Method::POST, "/v1/admin/gift-cards", promotions::issue_gift_card)
        .at(Method::GET, "/v1/admin/gift-cards/{id}", promotions::get_gift_card)
        .at(Method::POST, "/v1/admin/gift-cards/{id}/disable", promotions::disable_gift_card)
        .at(Method::GET, "/v1/promotions", promotions::public_promotions)
        .at(Method::POST, "/v1/admin/webhooks", events::create_webhook)
        .at(Method::GET, "/v1/admin/webhooks", events::list_webhooks)
        .at(Method::GET, "/v1/admin/webhooks/{id}", events::get_webhook)
        .at(Method::DELETE, "/v1/admin/webhooks/{id}", events::delete_webhook)
        .at(Method::GET, "/v1/admin/webhooks/{id}/deliveries", events::list_deliveries)
        .at(Method::POST, "/v1/admin/webhooks/{id}/replay", events::replay)
        .at(Method::PUT, "/v1/admin/suppressions/{user}", events::suppress)
        .at(Method::DELETE, "/v1/admin/suppressions/{user}", events::unsuppress)
        .at(Method::GET, "/v1/me/preferences", events::get_preferences)
        .at(Method::PUT, "/v1/me/preferences", events::put_preferences)
        .at(Method::GET, "/v1/admin/analytics/funnel", events::funnel)
        .at(Method::GET, "/v1/admin/analytics/skus", events::skus)
        .at(Method::POST, "/v1/gift-cards/balance", promotions::gift_card_balance)
        .at(Method::POST, "/v1/dev/login", dev_login)
        .at(Method::GET, "/healthz", healthz)
        .at(Method::GET, "/readyz", readyz)
        .at(Method::GET, "/openapi.json", openapi)
}

/// The API's routes, with the contract's answers for a path or a method it lacks.
pub fn router() -> Router<SharedState> {
    routes().router.fallback(not_found).method_not_allowed_fallback(method_not_allowed)
}

/// Every `(method, path)` the API router serves, read off its construction.
pub fn table() -> Vec<(Method, &'static str)> {
    routes().table
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such resource")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "this method is not allowed on this resource")
}

fn store_error(e: StoreError) -> ApiError {
    match &e {
        StoreError::Unrecorded(_) => ApiError::unavailable(e),
        StoreError::Redis(r) if r.is_io_error() || r.is_timeout() || r.is_connection_dropped() || r.is_connection_refusal() => {
            ApiError::unavailable(e)
        }
        // A Redis that is starting (loading its data), busy, or failing over: try again shortly.
        StoreError::Redis(r) if matches!(r.code(), Some("LOADING" | "BUSY" | "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN" | "READONLY")) => {
            ApiError::unavailable(e)
        }
        _ => ApiError::internal(e),
    }
}

impl From<CartsError> for ApiError {
    fn from(e: CartsError) -> Self {
        match e {
            CartsError::Merged { .. } => ApiError::new(
                ErrorCode::CartMerged,
                "this guest cart was merged into a user's cart at login; send its changes as that user",
            ),
            CartsError::VersionMismatch(current) => ApiError::new(ErrorCode::VersionMismatch, format!("the cart is at version {current}"))
                .with_detail("current_version", json!(current)),
            CartsError::OutOfOrder(o) => ApiError::new(
                ErrorCode::OpOutOfOrder,
                format!(
                    "client {} sent seq {} but the cart expects {} next; resend from the oldest unacknowledged op",
                    o.client, o.got, o.expected
                ),
            )
            .with_detail("client_id", json!(o.client))
            .with_detail("expected_seq", json!(o.expected)),
            CartsError::Hot(e) => store_error(e),
            CartsError::Durable(e) => ApiError::unavailable(e),
            CartsError::NotRestored => ApiError::internal(e),
        }
    }
}

/// The address of the client as the limits found it (the peer, or the first `X-Forwarded-For` hop
/// of a trusted proxy); otherwise the unspecified address, so every client shares one allowance.
pub(crate) struct ClientAddr(pub std::net::IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let addr = parts.extensions.get::<crate::limits::ClientIp>().map(|c| c.0);
        Ok(ClientAddr(addr.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))))
    }
}

/// The query string as a map, with the contract's error (`422 invalid_request`, JSON) for one
/// that cannot be read (bad percent-encoding, not UTF-8) instead of axum's plain-text 400.
pub(crate) struct Params(pub std::collections::HashMap<String, String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::try_from_uri(&parts.uri)
            .map(|q| Params(q.0))
            .map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "the query string is not valid (bad percent-encoding or not UTF-8)"))
    }
}

fn path_sku(p: Result<Path<String>, PathRejection>) -> ApiResult<Sku> {
    let Path(raw) = p.map_err(|_| ApiError::new(ErrorCode::InvalidSku, "the SKU in the path is not valid"))?;
    Ok(Sku::parse(&raw)?)
}

/// `POST /v1/dev/login {"user": "alice"}`: a user token for the demo storefront, when
/// `CARTSYNC_DEV_LOGIN` is on (otherwise this route answers 404).
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

async fn openapi() -> impl IntoResponse {
    axum::Json(crate::openapi::document())
}

async fn readyz(State(state): State<SharedState>) -> Response {
    let hot = state.hot().ping().await.map_err(|e| e.to_string());
    let durable = state.durable.ping().await.map_err(|e| e.to_string());
    let status = if hot.is_ok() && durable.is_ok() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let show = |r: &Result<(), String>| match r {
        Ok(()) => json!("ok"),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            json!("unavailable")
        }
    };
    let body = json!({
        "status": if status == StatusCode::OK { "ok" } else { "unavailable" },
        "hot_store": show(&hot),
        "durable_store": show(&durable),
    });
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OpenAPI document describes exactly the routes the router serves: every route added
    /// to it, and nothing it lacks.
    #[test]
    fn the_openapi_document_describes_every_route_and_only_those() {
        let doc = crate::openapi::document();
        let paths = doc["paths"].as_object().expect("paths");
        let table = table();
        for (method, path) in &table {
            let op = &paths.get(*path).unwrap_or_else(|| panic!("{path} is not in the OpenAPI document"))[method.as_str().to_lowercase()];
            assert!(op.is_object(), "{method} {path} is not in the OpenAPI document");
        }
        for (path, ops) in paths {
            for method in ops.as_object().expect("an operation map").keys() {
                let served = table.iter().any(|(m, p)| p == path && m.as_str().eq_ignore_ascii_case(method));
                assert!(served, "the document describes {method} {path}, which the router does not serve");
            }
        }
        assert!(!paths.contains_key("/metrics"), "metrics are served on their own listener, not the API's");
    }
}
