-- Cart and order events, their webhook deliveries, abandonment recovery, and what the queue
-- workers set aside. Portable SQL for PostgreSQL and SQLite alike (see 0001). Every integer is a
-- BIGINT, read as i64 on both.

-- One row per event, CloudEvents body included. `id` is the event's own (the stream entry it
-- came from, or the order transaction that wrote it), so recording one twice changes nothing.
CREATE TABLE events (
    id         TEXT PRIMARY KEY,
    type       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    TEXT,
    sku        TEXT,
    quantity   BIGINT,
    detail     TEXT,
    amount     BIGINT,
    at         BIGINT NOT NULL,
    body       TEXT NOT NULL,
    ord        TEXT NOT NULL
);
-- The analytics read a window of a few types: this index covers every column they read, so
-- neither database visits the rows (bodies and all) to answer them.
CREATE INDEX events_by_type_time ON events (type, at, subject, sku, quantity, detail, amount);
CREATE INDEX events_by_time ON events (at);

-- The units of each paid order, for per-SKU analytics.
CREATE TABLE paid_lines (
    order_id TEXT NOT NULL,
    sku      TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    subject  TEXT NOT NULL,
    at       BIGINT NOT NULL,
    PRIMARY KEY (order_id, sku)
);
CREATE INDEX paid_lines_by_time ON paid_lines (at, sku);

CREATE TABLE webhooks (
    id         TEXT PRIMARY KEY,
    url        TEXT NOT NULL,
    events     TEXT NOT NULL,
    secret     TEXT NOT NULL,
    active     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at BIGINT NOT NULL
);

-- One row per event and endpoint: pending until delivered, or given up after the retry window.
-- `subject` and `ord` (the event's) order one cart's deliveries: its next one waits for the one
-- before.
CREATE TABLE deliveries (
    webhook_id    TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    subject       TEXT NOT NULL,
    ord           TEXT NOT NULL,
    state         TEXT NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
    next_at       BIGINT NOT NULL,
    first_at      BIGINT NOT NULL,
    last_status   BIGINT,
    last_error    TEXT,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (webhook_id, event_id)
);
CREATE INDEX deliveries_due ON deliveries (next_at) WHERE state = 'pending';
CREATE INDEX deliveries_recent ON deliveries (webhook_id, updated_at);
CREATE INDEX deliveries_by_cart ON deliveries (webhook_id, subject, ord, event_id) WHERE state = 'pending';

CREATE TABLE dead_letters (
    id         TEXT PRIMARY KEY,
    queue      TEXT NOT NULL,
    fields     TEXT NOT NULL,
    error      TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Abandonment: the last idle period a user's cart was reported abandoned for.
CREATE TABLE abandonments (
    user_id      TEXT PRIMARY KEY,
    activity_at  BIGINT NOT NULL,
    abandoned_at BIGINT NOT NULL,
    subject      TEXT NOT NULL,
    recovered_at BIGINT
);

CREATE TABLE suppressions (
    user_id    TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);

CREATE TABLE preferences (
    user_id            TEXT PRIMARY KEY,
    abandonment_emails BOOLEAN NOT NULL,
    updated_at         BIGINT NOT NULL
);

-- What the abandonment job needs of a durable user cart without reading its JSON.
ALTER TABLE user_carts ADD COLUMN last_activity BIGINT NOT NULL DEFAULT 0;
ALTER TABLE user_carts ADD COLUMN line_count BIGINT NOT NULL DEFAULT 0;
CREATE INDEX user_carts_idle ON user_carts (last_activity) WHERE line_count > 0;

-- What a user cart remembers of its ops is bounded (api-v1.md, Ops): each op id has its
-- position in the cart's window of recent ids (rows before it are deleted as the window moves),
-- and each numbering client its high-water mark, kept with the cart as JSON.
ALTER TABLE user_cart_ops ADD COLUMN n BIGINT NOT NULL DEFAULT 0;
CREATE INDEX user_cart_ops_by_position ON user_cart_ops (user_id, n);
ALTER TABLE user_carts ADD COLUMN clients TEXT NOT NULL DEFAULT '{}';

-- When a paid order's lines left its cart: a payment replayed later takes nothing twice, however
-- many ops the cart has applied since (it remembers only its most recent op ids).
ALTER TABLE orders ADD COLUMN cart_taken_at BIGINT;
