-- Reads a cart and its applied op ids at one instant, for the write-behind to the durable store.
-- KEYS: 1 cart hash, 2 applied op ids. Returns {fields, op ids}, or {} when there is no cart.
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
return {redis.call('HGETALL', KEYS[1]), redis.call('SMEMBERS', KEYS[2])}
