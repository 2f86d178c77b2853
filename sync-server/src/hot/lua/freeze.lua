-- First half of a login merge, on the guest cart's slot: shared::Cart::freeze. Marks the guest
-- cart merged into the user (the freeze field z: it takes no more ops, they belong in the user's
-- cart now), copies its lines into a snapshot that only the merge reads, under a new generation
-- number, and empties it; its version goes on growing, so a client holding an older version never
-- sees it go back. While a snapshot is unfinished (a crash between the two halves, or a
-- concurrent merge) every call returns that same snapshot; the second half is idempotent through
-- its op id. O(lines): freezes are rare.
-- KEYS: 1 meta, 2 lines, 3 saved, 4 op ids (see common.lua), 5 snapshot, 6 generation counter.
-- ARGV: 1 now ms, 2 cart ttl ms, 3 saved ttl ms, 4 snapshot ttl ms, 5 currency of a new cart,
--       6 the user's id.
-- Returns {generation, snapshot fields, op ids}; generation 0 when there is nothing to merge. The
-- snapshot holds v, n, c, u and the lines as "l:<sku>" / "s:<sku>" fields.
local now, cart_ttl, saved_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local unfinished = redis.call('HGET', KEYS[5], 'g')
if unfinished then return {tonumber(unfinished), redis.call('HGETALL', KEYS[5]), redis.call('HKEYS', KEYS[4])} end
local s = load_meta(ARGV[5])
notice_expired(s, now)
local gen, f = 0, {}
if s.nl > 0 or s.ns > 0 then
  f = {'v', fmt(s.v), 'n', fmt(s.n), 'c', s.c, 'u', s.u}
  for _, pair in ipairs({{KEYS[2], 'l:'}, {KEYS[3], 's:'}}) do
    local items = redis.call('HGETALL', pair[1])
    for i = 1, #items, 2 do
      f[#f + 1] = pair[2] .. items[i]
      f[#f + 1] = items[i + 1]
    end
  end
  gen = redis.call('INCR', KEYS[6])
  redis.call('PEXPIRE', KEYS[6], ARGV[4])
  redis.call('DEL', KEYS[5], KEYS[2], KEYS[3])
  redis.call('HSET', KEYS[5], 'g', gen)
  for i = 1, #f, 1000 do redis.call('HSET', KEYS[5], unpack(f, i, math.min(i + 999, #f))) end
  redis.call('PEXPIRE', KEYS[5], ARGV[4])
  s.nl, s.ns = 0, 0
  s.v = s.v + 1
  s.u = now
end
s.z = s.z or ARGV[6]
save_meta(s, cart_ttl, saved_ttl)
return {gen, f, redis.call('HKEYS', KEYS[4])}
