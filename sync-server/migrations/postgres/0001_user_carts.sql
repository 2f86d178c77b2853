-- User carts, written behind from the hot store. Guest carts never come here.
CREATE TABLE user_carts (
    user_id    TEXT PRIMARY KEY,
    version    BIGINT NOT NULL CHECK (version >= 0),
    cart       JSONB NOT NULL,
    written_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The op ids each user cart has applied, so a replay after a restore is still a duplicate.
CREATE TABLE user_cart_ops (
    user_id TEXT NOT NULL,
    op_id   TEXT NOT NULL,
    PRIMARY KEY (user_id, op_id)
);
