-- First half of a login merge, on the guest cart's slot: shared::Cart::freeze. Marks the guest
-- cart merged into the user (the freeze field z: it takes no more ops, they belong in the user's
-- cart now), copies its lines into a snapshot that only the merge reads, under a new generation
-- number, and empties it; its version goes on growing, so a client holding an older version never
-- sees it go back. While a snapshot is unfinished (a crash between the two halves, or a
-- concurrent merge) every call returns that same snapshot; the second half is idempotent through
-- its op id.
-- KEYS: 1 guest cart, 2 guest op ids, 3 snapshot, 4 generation counter.
-- ARGV: 1 now ms, 2 cart ttl ms, 3 saved ttl ms, 4 snapshot ttl ms, 5 currency of a new cart,
--       6 the user's id.
-- Returns {generation, fields, op ids}; generation 0 when there is nothing to merge.
local now, cart_ttl, saved_ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local unfinished = redis.call('HGET', KEYS[3], 'g')
if unfinished then return {tonumber(unfinished), redis.call('HGETALL', KEYS[3]), redis.call('SMEMBERS', KEYS[2])} end
local m = load(KEYS[1], ARGV[5])
touch(m, now, cart_ttl, saved_ttl)
local gen, f = 0, {}
if #m.lines > 0 or #m.saved > 0 then
  m.z = nil
  f = flat(fields(m))
  gen = redis.call('INCR', KEYS[4])
  redis.call('PEXPIRE', KEYS[4], ARGV[4])
  redis.call('DEL', KEYS[3])
  chunked('HSET', KEYS[3], f, 1000)
  redis.call('HSET', KEYS[3], 'g', gen)
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
  m.lines = {}
  m.saved = {}
  changed(m, now)
end
m.z = m.orig.z or ARGV[6]
save(KEYS[1], m)
expire(m, cart_ttl, saved_ttl, KEYS[1])
return {gen, f, redis.call('SMEMBERS', KEYS[2])}
