-- The catalog with its stock, orders, stock holds and idempotency keys.
-- Portable SQL for PostgreSQL and SQLite alike (see 0001).

CREATE TABLE products (
    sku          TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    price_amount BIGINT NOT NULL CHECK (price_amount >= 0),
    currency     TEXT NOT NULL,
    active       BOOLEAN NOT NULL DEFAULT TRUE,
    on_hand      BIGINT NOT NULL DEFAULT 0 CHECK (on_hand >= 0),
    reserved     BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0 AND reserved <= on_hand),
    updated_at   BIGINT NOT NULL
);

CREATE TABLE orders (
    id             TEXT PRIMARY KEY,
    owner          TEXT NOT NULL,
    user_id        TEXT,
    status         TEXT NOT NULL,
    currency       TEXT NOT NULL,
    total_amount   BIGINT NOT NULL,
    lines          TEXT NOT NULL,
    reserved_until BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    payment_ref    TEXT
);
CREATE INDEX orders_pending_by_owner ON orders (owner) WHERE status = 'pending_payment';

CREATE TABLE holds (
    order_id   TEXT NOT NULL REFERENCES orders (id),
    sku        TEXT NOT NULL REFERENCES products (sku),
    quantity   BIGINT NOT NULL CHECK (quantity > 0),
    expires_at BIGINT NOT NULL,
    state      TEXT NOT NULL,
    PRIMARY KEY (order_id, sku)
);
CREATE INDEX holds_live_by_expiry ON holds (expires_at) WHERE state = 'live';
CREATE INDEX holds_by_sku ON holds (sku) WHERE state = 'live';

CREATE TABLE idempotency_keys (
    owner        TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    state        TEXT NOT NULL,
    status       INTEGER,
    body         TEXT,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (owner, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
