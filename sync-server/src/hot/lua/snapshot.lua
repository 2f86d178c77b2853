-- Reads a cart and its applied op ids at one instant, for the write-behind to the durable store.
-- KEYS: 1 main, 2 saved, 3 op ids (see common.lua).
-- Returns {main, saved, op ids} (the hashes as flat field/value lists), or {}
-- when there is no cart.
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3])}
