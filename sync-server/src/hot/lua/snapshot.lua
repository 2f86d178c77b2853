-- Reads a cart and its applied op ids at one instant, for the write-behind to the durable store.
-- KEYS: 1 meta, 2 lines, 3 saved, 4 op ids (see common.lua).
-- Returns {meta, lines, saved, op ids} (each a flat field/value list, the op ids a list), or {}
-- when there is no cart.
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]), redis.call('HKEYS', KEYS[4])}
