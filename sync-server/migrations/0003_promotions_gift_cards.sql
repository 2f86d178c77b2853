-- Promotions with their redemptions, gift cards with their holds, and what an order took off.
-- Portable SQL for PostgreSQL and SQLite alike (see 0001).
--
-- A redemption or a gift card hold lives like a stock hold: 'live' while its order is pending,
-- then 'consumed' (paid) or 'released' (failed, expired, replaced), in the same transaction as
-- the order's stock holds (orders::holds::end_holds). The counters on promotions and gift cards
-- always equal the sums of their rows, so a checkout decides a limit from one locked row.

CREATE TABLE promotions (
    id          TEXT PRIMARY KEY,
    code        TEXT UNIQUE,
    definition  TEXT NOT NULL,
    active      BOOLEAN NOT NULL,
    redeemed    BIGINT NOT NULL DEFAULT 0 CHECK (redeemed >= 0),
    pending     BIGINT NOT NULL DEFAULT 0 CHECK (pending >= 0),
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE redemptions (
    order_id     TEXT NOT NULL REFERENCES orders (id),
    promotion_id TEXT NOT NULL REFERENCES promotions (id),
    user_id      TEXT,
    amount       BIGINT NOT NULL CHECK (amount >= 0),
    state        TEXT NOT NULL,
    PRIMARY KEY (order_id, promotion_id)
);
CREATE INDEX redemptions_by_customer ON redemptions (promotion_id, user_id);

CREATE TABLE gift_cards (
    id          TEXT PRIMARY KEY,
    code_hash   TEXT NOT NULL UNIQUE,
    last4       TEXT NOT NULL,
    currency    TEXT NOT NULL,
    initial     BIGINT NOT NULL CHECK (initial >= 0),
    balance     BIGINT NOT NULL CHECK (balance >= 0),
    held        BIGINT NOT NULL DEFAULT 0 CHECK (held >= 0 AND held <= balance),
    expires_at  BIGINT,
    disabled    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE gift_card_holds (
    order_id     TEXT NOT NULL REFERENCES orders (id),
    gift_card_id TEXT NOT NULL REFERENCES gift_cards (id),
    amount       BIGINT NOT NULL CHECK (amount > 0),
    state        TEXT NOT NULL,
    PRIMARY KEY (order_id, gift_card_id)
);

-- The order's money beyond its lines: subtotal, discounts, gift cards and amount due (JSON).
ALTER TABLE orders ADD COLUMN totals TEXT;
