-- User carts, written behind from the hot store. Guest carts never come here.
CREATE TABLE user_carts (
    user_id    TEXT PRIMARY KEY,
    version    INTEGER NOT NULL CHECK (version >= 0),
    cart       TEXT NOT NULL,
    written_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- The op ids each user cart has applied, so a replay after a restore is still a duplicate.
CREATE TABLE user_cart_ops (
    user_id TEXT NOT NULL,
    op_id   TEXT NOT NULL,
    PRIMARY KEY (user_id, op_id)
) WITHOUT ROWID;
