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
    let mut doc = json!({
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
                    &[InvalidJson, InvalidRequest, InvalidOp, TooManyOps, VersionMismatch, PayloadTooLarge, CartMerged, OpOutOfOrder, InvalidCartToken, Unauthorized])
            }},
            "/v1/cart/merge": { "post": {
                "summary": "Merge a guest cart into the caller's user cart, exactly once. Bearer required.",
                "security": [{ "userToken": [] }],
                "requestBody": body(json!({ "type": "object", "required": ["guest_token"], "properties": {
                    "guest_token": { "type": "string", "pattern": "^[A-Za-z0-9_-]{22,64}$" }, "ops": { "type": "array", "items": r("Op") } } })),
                "responses": with_body(("200", ok(json!({ "type": "object", "required": ["cart", "merged"], "properties": {
                    "cart": r("Cart"), "merged": { "type": "boolean" } } }), "the user's cart")), &[InvalidJson, InvalidCartToken, InvalidOp, OpOutOfOrder, Unauthorized])
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
                    "client_id": { "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$", "description": "With `seq`: the op is known by this client's high-water `seq` (an op at or below it is a `duplicate`; one that skips ahead is `409 op_out_of_order`). Without: by its `op_id` among the cart's 1,000 most recent." },
                    "seq": { "type": "integer", "minimum": 1, "description": "The op's number in its client's sequence (1, 2, 3, …); comes with `client_id`." },
                    "type": { "enum": ["add", "set_quantity", "remove", "save_for_later", "move_to_cart", "remove_saved", "clear", "apply_promo_code", "remove_promo_code"] },
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
    });
    promotions(&mut doc);
    events(&mut doc);
    shopper(&mut doc);
    doc
}

/// Adds `codes` to the error answers of an operation, joining descriptions of a shared status.
fn add_errors(op: &mut Value, codes: &[ErrorCode]) {
    let more = errors(codes);
    let (Some(r), Some(new)) = (op["responses"].as_object_mut(), more.as_object()) else { return };
    for (status, v) in new {
        match r.get_mut(status) {
            Some(existing) => {
                let d = format!("{}, {}", existing["description"].as_str().unwrap_or(""), v["description"].as_str().unwrap_or(""));
                existing["description"] = json!(d);
            }
            None => {
                r.insert(status.clone(), v.clone());
            }
        }
    }
}

/// What the shopper sees when prices, stock and logins change (`shopper.md`).
fn shopper(doc: &mut Value) {
    use ErrorCode::*;
    let id = json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } });
    let owner_only = |summary: &str, extra: &[ErrorCode]| {
        let mut codes = vec![NotFound, OrderNotPending, ReservationExpired, Unauthorized, Unavailable];
        codes.extend_from_slice(extra);
        json!({ "summary": summary, "parameters": [id.clone()], "responses": responses(("200", ok(r("Order"), "the order")), &codes) })
    };
    let dropped = json!({ "type": "array", "items": { "type": "object", "properties": {
        "sku": r("Sku"), "quantity": { "type": "integer" }, "reason": { "enum": ["discontinued"] } } } });
    let short = json!({ "type": "array", "items": { "type": "object", "properties": {
        "sku": r("Sku"), "requested": { "type": "integer" }, "available": { "type": "integer" } } } });
    let policy = json!({ "enum": ["sum", "max", "keep_user"] });
    let paths = json!({
        "/v1/cart/merge/preview": { "post": {
            "summary": "The user's cart as each merge policy would make it, what would be dropped and what is short. Changes nothing and freezes nothing: the guest cart still merges afterwards.",
            "security": [{ "userToken": [] }],
            "requestBody": body(json!({ "type": "object", "required": ["guest_token"], "properties": { "guest_token": { "type": "string" } } })),
            "responses": with_body(("200", ok(json!({ "type": "object", "properties": {
                "policies": { "type": "object", "properties": { "sum": r("Cart"), "max": r("Cart"), "keep_user": r("Cart") } },
                "default_policy": { "anyOf": [policy.clone(), { "type": "null" }], "description": "null with CARTSYNC_MERGE_POLICY=prompt" },
                "dropped": dropped.clone(), "short": short.clone(), "validated": { "type": "boolean" } } }), "the preview")),
                &[InvalidCartToken, Unauthorized, Unavailable])
        }},
        "/v1/cart/quote": { "post": {
            "summary": "The cart's live prices and discounts now, signed by the server and valid for CARTSYNC_PRICE_LOCK_SECONDS (default 900). A checkout with the quote charges the quoted unit prices for the quoted lines; lines added later are priced live.",
            "responses": responses(("201", ok(json!({ "type": "object", "properties": {
                "quote": { "type": "string", "description": "opaque, signed (HMAC-SHA256)" }, "expires_at": r("Timestamp"),
                "lines": { "type": "array", "items": { "type": "object", "properties": { "sku": r("Sku"), "quantity": { "type": "integer" },
                    "unit_price": r("Money"), "discount": r("Money"), "line_total": r("Money") } } },
                "subtotal": r("Money"), "discounts": { "type": "array", "items": r("Discount") }, "discount_total": r("Money"), "total": r("Money") } }), "the quote")),
                &[CartEmpty, OutOfStock, InvalidCartToken, Unauthorized, Unavailable])
        }},
        "/v1/orders/{id}/extend": { "post": owner_only("Extend a pending order's hold once, by CARTSYNC_HOLD_EXTEND_SECONDS (default 300). Owner only.", &[HoldNotExtendable]) },
        "/v1/orders/{id}/cancel": { "post": owner_only("Cancel a pending order: its stock, promotion uses and gift card amounts are released at once. Owner only; a repeat answers the cancelled order.", &[]) },
        "/v1/dev/orders/{id}/pay": { "post": {
            "summary": "Development only (CARTSYNC_DEV_LOGIN): pays (or fails) the caller's own order as the payment provider would, through the signed webhook, for its amount due.",
            "parameters": [id],
            "requestBody": body(json!({ "type": "object", "required": ["status"], "properties": { "status": { "enum": ["succeeded", "failed"] } } })),
            "responses": with_body(("200", ok(r("Order"), "the order after the payment")), &[NotFound, InvalidRequest, ReservationExpired, OrderNotPending, Unavailable])
        }}
    });
    if let (Some(p), Some(new)) = (doc["paths"].as_object_mut(), paths.as_object()) {
        p.extend(new.clone());
    }
    let put = doc["paths"]["/v1/cart/items/{sku}"]["put"].clone();
    doc["paths"]["/v1/cart/items/{sku}"]["patch"] = put;
    doc["paths"]["/v1/cart/items/{sku}"]["patch"]["summary"] = json!("Set the quantity of a line (as PUT does; seed 001's spelling).");

    let merge = &mut doc["paths"]["/v1/cart/merge"]["post"];
    merge["summary"] = json!(
        "Merge a guest cart into the caller's user cart, exactly once. Bearer required. Lines whose product is discontinued are left out (`dropped`); lines asking for more than is in stock are kept and named (`short`). With a catalog that cannot be read, the merge goes ahead unvalidated (`validated: false`)."
    );
    merge["requestBody"]["content"]["application/json"]["schema"]["properties"]["policy"] =
        json!({ "allOf": [policy], "description": "overrides CARTSYNC_MERGE_POLICY for this merge; required when it is `prompt`" });
    let answer = &mut merge["responses"]["200"]["content"]["application/json"]["schema"]["properties"];
    answer["dropped"] = dropped;
    answer["short"] = short;
    answer["validated"] = json!({ "type": "boolean" });
    add_errors(merge, &[MergePolicyRequired, InvalidRequest]);

    let checkout = &mut doc["paths"]["/v1/cart/checkout"]["post"];
    checkout["requestBody"]["content"]["application/json"]["schema"]["properties"]["quote"] =
        json!({ "type": "string", "description": "a quote from POST /v1/cart/quote: its lines are charged at the quoted prices" });
    add_errors(checkout, &[QuoteInvalid]);

    let line = &mut doc["components"]["schemas"]["Line"]["properties"];
    line["availability"] = json!({ "enum": ["in_stock", "low_stock", "out_of_stock", "unknown", "discontinued"] });
    line["reason"] = json!({ "enum": ["out_of_stock", "discontinued"], "description": "unavailable lines only" });
    doc["components"]["schemas"]["Cart"]["properties"]["unavailable"] = json!({ "type": "array", "items": r("Line"),
        "description": "cart lines out of stock or discontinued (by the cached catalog figures): left out of item_count, subtotal, discounts and total; back in `lines` by themselves when stock returns" });
}

/// Events, webhooks, abandonment and analytics (`events.md`).
fn events(doc: &mut Value) {
    use ErrorCode::*;
    let admin = json!([{ "adminToken": [] }]);
    let id = json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } });
    let user = json!({ "name": "user", "in": "path", "required": true, "schema": { "type": "string" } });
    let window = json!([
        { "name": "from", "in": "query", "schema": r("Timestamp"), "description": "default: 30 days before `to`" },
        { "name": "to", "in": "query", "schema": r("Timestamp"), "description": "default: now" }
    ]);
    let mut sku_params = window.as_array().cloned().unwrap_or_default();
    sku_params.push(json!({ "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 10000 } }));
    let hook = json!({ "type": "object", "properties": { "id": { "type": "string" }, "url": { "type": "string" },
        "events": { "type": "array", "items": { "type": "string" } }, "active": { "type": "boolean" }, "created_at": r("Timestamp"),
        "secret": { "type": "string", "description": "only in the answer to its creation" } } });
    let paths = json!({
        "/v1/admin/webhooks": {
            "post": { "summary": "Add a webhook endpoint. Each event it wants is POSTed as CloudEvents 1.0 JSON, signed with `Cartsync-Signature: t=…,v1=<hex HMAC-SHA256 of \"<t>.<body>\">` with its secret (generated when absent, shown only here), at least once, retried with exponential backoff and jitter for CARTSYNC_WEBHOOK_RETRY_HOURS.",
                      "security": admin,
                      "requestBody": body(json!({ "type": "object", "required": ["url", "events"], "properties": {
                          "url": { "type": "string", "format": "uri" }, "events": { "type": "array", "items": { "type": "string" }, "description": "types (`order.paid`), families (`order.*`) or `*`" },
                          "secret": { "type": "string", "minLength": 16, "maxLength": 256 } } })),
                      "responses": with_body(("201", ok(hook.clone(), "the endpoint, with its secret")), &[Unauthorized, InvalidRequest]) },
            "get": { "summary": "The endpoints (without secrets).", "security": admin,
                     "responses": responses(("200", ok(json!({ "type": "object", "properties": { "webhooks": { "type": "array", "items": hook.clone() } } }), "the endpoints")), &[Unauthorized]) }
        },
        "/v1/admin/webhooks/{id}": {
            "get": { "summary": "One endpoint.", "security": admin, "parameters": [id.clone()],
                     "responses": responses(("200", ok(hook.clone(), "the endpoint")), &[Unauthorized, NotFound]) },
            "delete": { "summary": "Remove an endpoint; its pending deliveries are dropped.", "security": admin, "parameters": [id.clone()],
                        "responses": responses(("204", json!({ "description": "removed" })), &[Unauthorized, NotFound]) }
        },
        "/v1/admin/webhooks/{id}/deliveries": { "get": {
            "summary": "Recent delivery attempts, newest first: event, status (`pending`, `delivered`, `failed`, `dropped`), attempts, response code, next attempt.",
            "security": admin, "parameters": [id.clone(), { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000 } }],
            "responses": responses(("200", ok(json!({ "type": "object", "properties": { "deliveries": { "type": "array", "items": { "type": "object" } } } }), "the attempts")), &[Unauthorized, NotFound, InvalidRequest])
        }},
        "/v1/admin/webhooks/{id}/replay": { "post": {
            "summary": "Send the endpoint's events of a time range again.", "security": admin, "parameters": [id.clone()],
            "requestBody": body(json!({ "type": "object", "required": ["from", "to"], "properties": { "from": r("Timestamp"), "to": r("Timestamp") } })),
            "responses": with_body(("202", ok(json!({ "type": "object", "properties": { "queued": { "type": "integer" } } }), "queued")), &[Unauthorized, NotFound, InvalidRequest])
        }},
        "/v1/admin/suppressions/{user}": {
            "put": { "summary": "No `cart.abandoned` for this user.", "security": admin, "parameters": [user.clone()],
                     "responses": responses(("200", ok(json!({ "type": "object" }), "suppressed")), &[Unauthorized, InvalidRequest]) },
            "delete": { "summary": "Lift a suppression.", "security": admin, "parameters": [user.clone()],
                        "responses": responses(("200", ok(json!({ "type": "object" }), "not suppressed")), &[Unauthorized, InvalidRequest]) }
        },
        "/v1/me/preferences": {
            "get": { "summary": "The user's own preferences (Bearer).", "security": [{ "userToken": [] }],
                     "responses": responses(("200", ok(json!({ "type": "object", "properties": { "abandonment_emails": { "type": "boolean" } } }), "the preferences")), &[Unauthorized]) },
            "put": { "summary": "Set the user's own preferences: `abandonment_emails: false` stops `cart.abandoned` for them.", "security": [{ "userToken": [] }],
                     "requestBody": body(json!({ "type": "object", "required": ["abandonment_emails"], "properties": { "abandonment_emails": { "type": "boolean" } } })),
                     "responses": with_body(("200", ok(json!({ "type": "object", "properties": { "abandonment_emails": { "type": "boolean" } } }), "the preferences")), &[Unauthorized, InvalidRequest]) }
        },
        "/v1/admin/analytics/funnel": { "get": {
            "summary": "The funnel over a window, from the events: carts created, carts with items, checkouts started, orders paid, carts abandoned and recovered, conversion rate (orders paid / carts with items) and revenue.",
            "security": admin, "parameters": window,
            "responses": responses(("200", ok(json!({ "type": "object", "properties": {
                "carts_created": { "type": "integer" }, "carts_with_items": { "type": "integer" }, "checkouts_started": { "type": "integer" },
                "orders_paid": { "type": "integer" }, "carts_abandoned": { "type": "integer" }, "carts_recovered": { "type": "integer" },
                "conversion_rate": { "type": "number" }, "revenue": r("Money") } }), "the funnel")), &[Unauthorized, InvalidRequest])
        }},
        "/v1/admin/analytics/skus": { "get": {
            "summary": "Per SKU over a window: units added, units removed by shoppers, units in paid orders, carts that held it; most added first.",
            "security": admin, "parameters": sku_params,
            "responses": responses(("200", ok(json!({ "type": "object", "properties": { "skus": { "type": "array", "items": { "type": "object", "properties": {
                "sku": r("Sku"), "units_added": { "type": "integer" }, "units_removed": { "type": "integer" }, "units_ordered": { "type": "integer" }, "carts": { "type": "integer" } } } } } }), "the SKUs")), &[Unauthorized, InvalidRequest])
        }}
    });
    if let (Some(p), Some(new)) = (doc["paths"].as_object_mut(), paths.as_object()) {
        p.extend(new.clone());
    }
}

/// Promotions, promo codes and gift cards (`promotions.md`): their paths and schemas.
fn promotions(doc: &mut Value) {
    use ErrorCode::*;
    let admin = json!([{ "adminToken": [] }]);
    let id_param =
        json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$" } });
    let card_param = json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } });
    let cart_codes = [InvalidCartToken, Unauthorized, VersionMismatch, CartMerged, Unavailable];
    let mut apply_codes = vec![InvalidPromoCode, PromoCodeNotFound, TooManyPromoCodes];
    apply_codes.extend_from_slice(&cart_codes);
    let mut remove_codes = vec![InvalidPromoCode];
    remove_codes.extend_from_slice(&cart_codes);
    let paths = json!({
        "/v1/cart/promo-codes": { "post": {
            "summary": "Put a promo code on the cart. A code whose conditions are not met yet (a minimum, a login, a better promotion) is kept and applies by itself once they are.",
            "requestBody": body(json!({ "type": "object", "required": ["code"], "properties": { "code": r("PromoCode") } })),
            "responses": with_body(("200", ok(r("Cart"), "the cart")), &apply_codes)
        }},
        "/v1/cart/promo-codes/{code}": { "delete": {
            "summary": "Take a promo code off the cart; an absent code is not an error.",
            "parameters": [{ "name": "code", "in": "path", "required": true, "schema": r("PromoCode") }],
            "responses": responses(("200", ok(r("Cart"), "the cart")), &remove_codes)
        }},
        "/v1/promotions": { "get": {
            "summary": "The definitions the browser cart evaluates discounts with: every automatic promotion and those of the codes named. `exhausted`: every use is taken.",
            "parameters": [{ "name": "codes", "in": "query", "schema": { "type": "string" }, "description": "comma-separated codes, at most 5" }],
            "responses": responses(("200", ok(json!({ "type": "object", "properties": { "promotions": { "type": "array", "items": r("Promotion") } } }), "the promotions")), &[InvalidPromoCode, TooManyPromoCodes])
        }},
        "/v1/gift-cards/balance": { "post": {
            "summary": "The free balance of a usable gift card. Failed lookups count against the client's allowance; past it, 429 with Retry-After.",
            "security": [],
            "requestBody": body(json!({ "type": "object", "required": ["code"], "properties": { "code": { "type": "string" } } })),
            "responses": with_body(("200", ok(json!({ "type": "object", "properties": { "balance": r("Money"), "expires_at": r("Timestamp"), "last4": { "type": "string" } } }), "the balance")), &[InvalidRequest, GiftCardNotFound, RateLimited])
        }},
        "/v1/admin/promotions": { "get": {
            "summary": "Every promotion, by id, with its use counts.", "security": admin,
            "responses": responses(("200", ok(json!({ "type": "object", "properties": { "promotions": { "type": "array", "items": r("AdminPromotion") } } }), "the promotions")), &[Unauthorized])
        }},
        "/v1/admin/promotions/{id}": {
            "put": { "summary": "Create (201) or replace (200) a promotion; its use counts stay.", "security": admin, "parameters": [id_param],
                     "requestBody": body(r("Promotion")),
                     "responses": with_body(("200", ok(r("AdminPromotion"), "the promotion")), &[Unauthorized, InvalidRequest, InvalidMoney, InvalidSku, InvalidPromoCode, CurrencyMismatch]) },
            "get": { "summary": "A promotion with `redemptions` (paid orders) and `pending_redemptions`.", "security": admin, "parameters": [id_param],
                     "responses": responses(("200", ok(r("AdminPromotion"), "the promotion")), &[Unauthorized, InvalidRequest, NotFound]) },
            "delete": { "summary": "Deactivate a promotion; its history stays.", "security": admin, "parameters": [id_param],
                        "responses": responses(("200", ok(r("AdminPromotion"), "the promotion, inactive")), &[Unauthorized, InvalidRequest, NotFound]) }
        },
        "/v1/admin/gift-cards": { "post": {
            "summary": "Issue a gift card. The answer is the only place its code is ever shown; only a hash is stored.", "security": admin,
            "requestBody": body(json!({ "type": "object", "required": ["balance"], "properties": { "balance": r("Money"), "expires_at": r("Timestamp") } })),
            "responses": with_body(("201", ok(json!({ "type": "object", "properties": { "id": { "type": "string" }, "code": { "type": "string" }, "last4": { "type": "string" }, "balance": r("Money"), "expires_at": r("Timestamp") } }), "the card and its code")), &[Unauthorized, InvalidRequest, InvalidMoney, CurrencyMismatch])
        }},
        "/v1/admin/gift-cards/{id}": { "get": {
            "summary": "A gift card's balance, held amount and last four symbols (never its code).", "security": admin, "parameters": [card_param],
            "responses": responses(("200", ok(r("AdminGiftCard"), "the card")), &[Unauthorized, GiftCardNotFound])
        }},
        "/v1/admin/gift-cards/{id}/disable": { "post": {
            "summary": "Disable a gift card for good.", "security": admin, "parameters": [card_param],
            "responses": responses(("200", ok(r("AdminGiftCard"), "the card")), &[Unauthorized, GiftCardNotFound])
        }}
    });
    let schemas = json!({
        "PromoCode": { "type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$", "description": "case-insensitive; stored and shown upper-case" },
        "Promotion": { "type": "object", "required": ["action"], "properties": {
            "code": r("PromoCode"), "description": { "type": "string" }, "active": { "type": "boolean" },
            "starts_at": r("Timestamp"), "ends_at": r("Timestamp"), "min_subtotal": r("Money"), "max_discount": r("Money"),
            "combinable": { "type": "boolean" }, "usage_limit": { "type": "integer", "minimum": 1 }, "usage_limit_per_customer": { "type": "integer", "minimum": 1 },
            "action": { "type": "object", "required": ["type"], "properties": {
                "type": { "enum": ["percent_off_order", "amount_off_order", "percent_off_items", "amount_off_items", "buy_x_get_y", "bundle"] },
                "percent": { "type": "integer", "minimum": 1, "maximum": 100 }, "amount": r("Money"), "skus": { "type": "array", "items": r("Sku") },
                "buy": { "type": "integer", "minimum": 1 }, "get": { "type": "integer", "minimum": 1 }, "price": r("Money"),
                "items": { "type": "array", "items": { "type": "object", "properties": { "sku": r("Sku"), "quantity": { "type": "integer", "minimum": 1 } } } } } } } },
        "AdminPromotion": { "allOf": [r("Promotion"), { "type": "object", "properties": { "id": { "type": "string" },
            "redemptions": { "type": "integer" }, "pending_redemptions": { "type": "integer" } } }] },
        "AdminGiftCard": { "type": "object", "properties": { "id": { "type": "string" }, "last4": { "type": "string" }, "initial_balance": r("Money"),
            "balance": r("Money"), "held": r("Money"), "available": r("Money"), "expires_at": r("Timestamp"), "disabled": { "type": "boolean" } } },
        "Discount": { "type": "object", "required": ["promotion", "description", "amount"], "properties": {
            "promotion": { "type": "string" }, "code": r("PromoCode"), "description": { "type": "string" }, "amount": r("Money") } },
        "PromoCodeState": { "type": "object", "required": ["code", "applied"], "properties": {
            "code": r("PromoCode"), "applied": { "type": "boolean" },
            "reason": { "enum": ["not_best", "min_subtotal_not_met", "not_started", "expired", "inactive", "usage_limit_reached", "login_required"] },
            "missing": r("Money") } }
    });
    if let (Some(p), Some(new)) = (doc["paths"].as_object_mut(), paths.as_object()) {
        p.extend(new.clone());
    }
    if let (Some(s), Some(new)) = (doc["components"]["schemas"].as_object_mut(), schemas.as_object()) {
        s.extend(new.clone());
    }
    // The cart, its lines and orders gain their discounts; checkout takes gift cards.
    let cart = &mut doc["components"]["schemas"]["Cart"]["properties"];
    cart["discount_total"] = r("Money");
    cart["total"] = r("Money");
    cart["promo_codes"] = json!({ "type": "array", "items": r("PromoCodeState") });
    cart["discounts"] = json!({ "type": "array", "items": r("Discount") });
    let line = &mut doc["components"]["schemas"]["Line"]["properties"];
    line["discount"] = r("Money");
    line["line_total"] = r("Money");
    let order = &mut doc["components"]["schemas"]["Order"]["properties"];
    order["lines"]["items"]["properties"]["discount"] = r("Money");
    for k in ["subtotal", "discount_total", "amount_due"] {
        order[k] = r("Money");
    }
    order["discounts"] = json!({ "type": "array", "items": r("Discount") });
    order["gift_cards"] =
        json!({ "type": "array", "items": { "type": "object", "properties": { "last4": { "type": "string" }, "amount": r("Money") } } });
    let op_types = &mut doc["components"]["schemas"]["Op"]["properties"];
    op_types["type"] = json!({ "enum": ["add", "set_quantity", "remove", "save_for_later", "move_to_cart", "remove_saved", "clear", "apply_promo_code", "remove_promo_code"] });
    op_types["code"] = r("PromoCode");
    let checkout = &mut doc["paths"]["/v1/cart/checkout"]["post"];
    checkout["requestBody"]["content"]["application/json"]["schema"]["properties"]["gift_cards"] =
        json!({ "type": "array", "maxItems": 5, "items": { "type": "string" }, "description": "gift card codes, used in this order" });
    checkout["summary"] = json!(
        "Price every line live with the cart's promotions, hold stock, promotion uses and gift card amounts all or nothing for the hold time, and create an order (paid at once when gift cards cover it)."
    );
    add_errors(checkout, &[PromotionUnavailable, GiftCardUnavailable, RateLimited, InvalidRequest]);
}
