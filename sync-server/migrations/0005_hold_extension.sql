-- When the shopper extended the order's hold (once per order); NULL: not extended.
ALTER TABLE orders ADD COLUMN hold_extended_at BIGINT;
