//! The OpenAPI 3.1 document of the v1 API (`GET /openapi.json`), written out by hand from the
//! contract. A test (in `routes`) checks it against the routes the router is built with: every
//! one is described here, and nothing else is. Metrics are served on a listener of their own and
//! are not part of the API.

use serde_json::{Value, json};
use shared::ErrorCode;

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn body(schema: Value) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema } } })
}

fn ok(schema: Value, description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn errors(codes: &[ErrorCode]) -> Value {
    let mut out = serde_json::Map::new();
    for c in codes {
        let status = c.http_status().to_string();
        let entry =
            out.entry(status).or_insert_with(|| json!({ "description": "", "content": { "application/json": { "schema": r("Error") } } }));
        let d = entry["description"].as_str().unwrap_or("").to_owned();
        entry["description"] = json!(if d.is_empty() { format!("`{c}`") } else { format!("{d}, `{c}`") });
    }
    Value::Object(out)
}

fn responses(success: (&str, Value), codes: &[ErrorCode]) -> Value {
    let mut all = errors(codes);
    all[success.0] = success.1;
    all
}

/// `responses` for an operation with a JSON body, which may also be unreadable or too large.
fn with_body(success: (&str, Value), codes: &[ErrorCode]) -> Value {
    let mut all: Vec<ErrorCode> = codes.to_vec();
    for c in [ErrorCode::InvalidJson, ErrorCode::PayloadTooLarge] {
        if !all.contains(&c) {
            all.push(c);
        }
    }
    responses(success, &all)
}

fn sku_param() -> Value {
    json!({ "name": "sku", "in": "path", "required": true, "schema": r("Sku") })
}

pub fn document() -> Value {
    use ErrorCode::*;
    let ident = [InvalidCartToken, Unauthorized, Unavailable];
    let cart_write = [
        InvalidJson,
        InvalidRequest,
        InvalidQuantity,
        InvalidSku,
        InvalidMoney,
        CurrencyMismatch,
        CartFull,
        VersionMismatch,
        PayloadTooLarge,
        CartMerged,
        InvalidCartToken,
        Unauthorized,
        Unavailable,
    ];
    let cart_op = |summary: &str, extra: &[ErrorCode]| {
        let mut codes = vec![InvalidSku, VersionMismatch, CartFull, CartMerged, InvalidCartToken, Unauthorized, Unavailable];
        codes.extend_from_slice(extra);
        json!({ "summary": summary, "parameters": [sku_param()], "responses": responses(("200", ok(r("Cart"), "the cart")), &codes) })
    };
    let all_codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let mut get_cart = responses(("200", ok(r("Cart"), "the cart; `ETag: \"<version>\"`")), &ident);
    get_cart["304"] = json!({ "description": "not modified since the `If-None-Match` version" });
    json!({
        "openapi": "3.1.0",
        "info": { "title": "cartsync API", "version": "1.0.0", "description": "The cart, merge, checkout and order API of cartsync. Every error is `{\"error\": {\"code\", \"message\", ...details}}`." },
        "security": [{}, { "guestToken": [] }, { "userToken": [] }],
        "paths": {
            "/v1/cart": { "get": {
                "summary": "Read the cart (guest or user per identity). A guest without a token gets one in `X-Cart-Token`.",
                "parameters": [{ "name": "If-None-Match", "in": "header", "schema": { "type": "string" } }],
                "responses": get_cart
            }},
            "/v1/cart/items": { "post": {
                "summary": "Add a quantity of a SKU (creating the line if absent).",
                "parameters": [{ "name": "If-Match", "in": "header", "schema": { "type": "string" } }],
                "requestBody": body(json!({ "type": "object", "required": ["sku", "quantity"], "properties": {
                    "sku": r("Sku"), "quantity": r("Quantity"), "price_at_add": { "anyOf": [r("Money"), { "type": "null" }] } } })),
                "responses": with_body(("200", ok(r("Cart"), "the cart")), &cart_write)
            }},
            "/v1/cart/items/{sku}": {
                "put": {
                    "summary": "Set the quantity of a line.",
                    "parameters": [sku_param()],
                    "requestBody": body(json!({ "type": "object", "required": ["quantity"], "properties": { "quantity": r("Quantity") } })),
                    "responses": with_body(("200", ok(r("Cart"), "the cart")), &[InvalidJson, InvalidQuantity, InvalidSku, LineNotFound, VersionMismatch, CartMerged, InvalidCartToken, Unauthorized])
                },
                "delete": cart_op("Remove a line; an absent line is not an error.", &[])
            },
            "/v1/cart/items/{sku}/save-for-later": { "post": cart_op("Move a line to the saved list.", &[LineNotFound]) },
            "/v1/cart/saved/{sku}/move-to-cart": { "post": cart_op("Move a saved line back to the cart.", &[LineNotFound]) },
            "/v1/cart/saved/{sku}": { "delete": cart_op("Remove a saved line.", &[]) },
            "/v1/cart/ops": { "post": {
                "summary": "Apply a batch of ops in order, each op id at most once per cart.",
                "requestBody": body(json!({ "type": "object", "required": ["ops"], "properties": { "ops": { "type": "array", "maxItems": 500, "items": r("Op") } } })),
                "responses": with_body(("200", ok(json!({ "type": "object", "required": ["cart", "results"], "properties": {
                    "cart": r("Cart"), "results": { "type": "array", "items": r("OpResult") } } }), "the cart and each op's outcome")),
                    &[InvalidJson, InvalidRequest, InvalidOp, TooManyOps, VersionMismatch, PayloadTooLarge, CartMerged, InvalidCartToken, Unauthorized])
            }},
            "/v1/cart/merge": { "post": {
                "summary": "Merge a guest cart into the caller's user cart, exactly once. Bearer required.",
                "security": [{ "userToken": [] }],
                "requestBody": body(json!({ "type": "object", "required": ["guest_token"], "properties": {
                    "guest_token": { "type": "string", "pattern": "^[A-Za-z0-9_-]{22,64}$" }, "ops": { "type": "array", "items": r("Op") } } })),
                "responses": with_body(("200", ok(json!({ "type": "object", "required": ["cart", "merged"], "properties": {
                    "cart": r("Cart"), "merged": { "type": "boolean" } } }), "the user's cart")), &[InvalidJson, InvalidCartToken, InvalidOp, Unauthorized])
            }},
            "/v1/products": { "get": {
                "summary": "Prices and free stock of the named SKUs in one lookup (without `skus`: the first products on sale).",
                "parameters": [{ "name": "skus", "in": "query", "schema": { "type": "string", "pattern": "^[A-Za-z0-9._:,-]*$" }, "description": "comma-separated SKUs, at most 100" }],
                "responses": responses(("200", ok(json!({ "type": "object", "properties": { "products": { "type": "array", "items": r("Product") } } }), "the products the catalog knows")), &[InvalidSku, InvalidRequest])
            }},
            "/v1/cart/checkout": { "post": {
                "summary": "Price every line live, reserve stock all or nothing for the hold time, and create an order.",
                "parameters": [{ "name": "Idempotency-Key", "in": "header", "required": true, "schema": { "type": "string", "pattern": "^[ -~]{1,255}$" } }],
                "requestBody": { "required": false, "content": { "application/json": { "schema": { "type": "object", "properties": { "expected_total": r("Money") } } } } },
                "responses": with_body(("201", ok(json!({ "type": "object", "properties": { "order": r("Order") } }), "the order")),
                    &[InvalidIdempotencyKey, InvalidJson, InvalidMoney, CartEmpty, IdempotencyKeyReused, RequestInProgress, PriceChanged, OutOfStock, Unauthorized])
            }},
            "/v1/orders/{id}": { "get": {
                "summary": "An order, for its owner only.",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": responses(("200", ok(r("Order"), "the order")), &[NotFound, Unauthorized])
            }},
            "/v1/orders/{id}/payment": { "post": {
                "summary": "The payment provider's webhook. The body names the order and the amount; `Cartsync-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\">` signs it with CARTSYNC_WEBHOOK_SECRET, and `t` must be within 300 seconds of the server's clock.",
                "security": [],
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } },
                               { "name": "Cartsync-Signature", "in": "header", "required": true, "schema": { "type": "string", "pattern": "^t=[0-9]+(,[a-z0-9]+=[0-9a-f]+)+$" } }],
                "requestBody": body(json!({ "type": "object", "required": ["order_id", "status", "payment_ref"], "properties": {
                    "order_id": { "type": "string", "description": "must be the order of the path" },
                    "status": { "enum": ["succeeded", "failed"] }, "payment_ref": { "type": "string", "minLength": 1, "maxLength": 255 },
                    "amount": { "allOf": [r("Money")], "description": "required for a success: the order's amount due" } } })),
                "responses": with_body(("200", ok(r("Order"), "the order after the transition (a replay answers the same)")),
                    &[InvalidSignature, InvalidRequest, InvalidMoney, NotFound, ReservationExpired, OrderNotPending, AmountMismatch, Unavailable])
            }},
            "/v1/admin/products": { "post": {
                "summary": "Load products all or nothing.",
                "security": [{ "adminToken": [] }],
                "requestBody": body(json!({ "type": "array", "items": r("ProductInput") })),
                "responses": with_body(("200", ok(json!({ "type": "object", "properties": { "loaded": { "type": "integer" } } }), "loaded")), &[Unauthorized, InvalidRequest, StockBelowReserved])
            }},
            "/v1/admin/products/{sku}": {
                "put": { "summary": "Create (name and price required) or change a product.", "security": [{ "adminToken": [] }], "parameters": [sku_param()],
                         "requestBody": body(r("ProductInput")),
                         "responses": with_body(("200", ok(r("AdminProduct"), "the product")), &[Unauthorized, InvalidRequest, InvalidMoney, CurrencyMismatch, StockBelowReserved]) },
                "get": { "summary": "A product with its stock.", "security": [{ "adminToken": [] }], "parameters": [sku_param()],
                         "responses": responses(("200", ok(r("AdminProduct"), "the product")), &[Unauthorized, UnknownProduct]) }
            },
            "/v1/dev/login": { "post": { "summary": "Development only (CARTSYNC_DEV_LOGIN): a user token.",
                "requestBody": body(json!({ "type": "object", "properties": { "user": { "type": "string" } } })),
                "responses": with_body(("200", ok(json!({ "type": "object", "properties": { "token": { "type": "string" } } }), "a token")), &[NotFound, InvalidRequest]) } },
            "/healthz": { "get": { "summary": "Liveness.", "responses": { "200": { "description": "alive" } } } },
            "/readyz": { "get": { "summary": "Readiness: both stores reachable.", "responses": { "200": { "description": "ready" }, "503": { "description": "a store is unreachable" } } } },
            "/openapi.json": { "get": { "summary": "This document.", "responses": { "200": { "description": "OpenAPI 3.1" } } } }
        },
        "components": {
            "securitySchemes": {
                "guestToken": { "type": "apiKey", "in": "header", "name": "X-Cart-Token" },
                "userToken": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" },
                "adminToken": { "type": "http", "scheme": "bearer" }
            },
            "schemas": {
                "Sku": { "type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$" },
                "Quantity": { "type": "integer", "minimum": 1, "maximum": 99, "description": "per-line limit: CARTSYNC_MAX_LINE_QUANTITY" },
                "Money": { "type": "object", "required": ["amount", "currency"], "properties": {
                    "amount": { "type": "integer", "minimum": 0, "description": "minor units" }, "currency": { "type": "string", "pattern": "^[A-Z]{3}$" } } },
                "Timestamp": { "type": "string", "format": "date-time" },
                "Line": { "type": "object", "required": ["sku", "quantity", "added_at"], "properties": {
                    "sku": r("Sku"), "quantity": { "type": "integer" }, "price_at_add": r("Money"), "added_at": r("Timestamp"),
                    "current_price": r("Money"), "price_changed": { "type": "boolean" },
                    "availability": { "enum": ["in_stock", "low_stock", "out_of_stock", "unknown"] } } },
                "Cart": { "type": "object", "required": ["owner", "version", "currency", "lines", "saved", "item_count", "subtotal", "updated_at", "expires_at"], "properties": {
                    "owner": { "enum": ["guest", "user"] }, "version": { "type": "integer" }, "currency": { "type": "string" },
                    "lines": { "type": "array", "items": r("Line") }, "saved": { "type": "array", "items": r("Line") },
                    "item_count": { "type": "integer" }, "subtotal": r("Money"), "updated_at": r("Timestamp"), "expires_at": r("Timestamp") } },
                "Op": { "type": "object", "required": ["op_id"], "description": "An op with a valid op_id but a bad type or field is answered `rejected` in its result; the others still apply.", "properties": {
                    "op_id": { "type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$" },
                    "type": { "enum": ["add", "set_quantity", "remove", "save_for_later", "move_to_cart", "remove_saved", "clear"] },
                    "sku": r("Sku"), "quantity": r("Quantity"), "price_at_add": r("Money"), "at": r("Timestamp") } },
                "OpResult": { "type": "object", "required": ["op_id", "status"], "properties": {
                    "op_id": { "type": "string" }, "status": { "enum": ["applied", "duplicate", "rejected"] }, "error": r("ErrorBody") } },
                "Product": { "type": "object", "properties": { "sku": r("Sku"), "name": { "type": "string" }, "price": r("Money"),
                    "available": { "type": "integer" }, "availability": { "type": "string" } } },
                "ProductInput": { "type": "object", "properties": { "sku": r("Sku"), "name": { "type": "string" }, "price": r("Money"),
                    "stock": { "type": "integer", "minimum": 0 }, "active": { "type": "boolean" } } },
                "AdminProduct": { "type": "object", "properties": { "sku": r("Sku"), "name": { "type": "string" }, "price": r("Money"), "active": { "type": "boolean" },
                    "stock": { "type": "integer" }, "reserved": { "type": "integer" }, "available": { "type": "integer" } } },
                "Order": { "type": "object", "required": ["id", "status", "lines", "total", "reserved_until", "created_at"], "properties": {
                    "id": { "type": "string" }, "status": { "enum": ["pending_payment", "paid", "cancelled", "expired"] },
                    "lines": { "type": "array", "items": { "type": "object", "properties": { "sku": r("Sku"), "quantity": { "type": "integer" },
                        "unit_price": r("Money"), "price_at_add": r("Money"), "line_total": r("Money") } } },
                    "total": r("Money"), "reserved_until": r("Timestamp"), "created_at": r("Timestamp"), "payment_ref": { "type": "string" } } },
                "ErrorBody": { "type": "object", "required": ["code", "message"], "properties": { "code": { "enum": all_codes }, "message": { "type": "string" } },
                    "additionalProperties": true },
                "Error": { "type": "object", "required": ["error"], "properties": { "error": r("ErrorBody") } }
            }
        }
    })
}
