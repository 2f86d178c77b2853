-- User carts, written behind from the hot store. Guest carts never come here.
-- Every migration here runs on PostgreSQL and on SQLite alike: portable types only, and times
-- in milliseconds since the Unix epoch from the server's clock.
CREATE TABLE user_carts (
    user_id    TEXT PRIMARY KEY,
    version    BIGINT NOT NULL CHECK (version >= 0),
    cart       TEXT NOT NULL,
    written_at BIGINT NOT NULL
);

-- The op ids each user cart has applied, so a replay after a restore is still a duplicate.
CREATE TABLE user_cart_ops (
    user_id TEXT NOT NULL,
    op_id   TEXT NOT NULL,
    PRIMARY KEY (user_id, op_id)
);
