-- First half of a login merge, on the guest cart's slot: shared::Cart::freeze. Marks the guest
-- cart merged into the user (the freeze field #z: it takes no more ops, they belong in the user's
-- cart now), copies its lines into a snapshot that only the merge reads, under a new generation
-- number, and empties it; its version goes on growing, so a client holding an older version never
-- sees it go back. While a snapshot is unfinished (a crash between the two halves, or a
-- concurrent merge) every call returns that same snapshot; the second half is idempotent through
-- its op id. O(lines): freezes are rare.
-- KEYS: 1 main, 2 saved, 3 op ids (see common.lua), 4 snapshot, 5 generation counter.
-- ARGV: 1 now ms, 2 cart ttl ms, 3 saved ttl ms, 4 snapshot ttl ms, 5 currency of a new cart,
--       6 the user's id.
-- Returns {generation, snapshot fields, the op-id hash's fields and values}; generation 0 when there is nothing to merge. The
-- snapshot holds v, n, c, u, o (the user it is for) and the lines as "l:<sku>" / "s:<sku>" fields.
-- A guest cart belongs to the first user who logs in with it: for any other user the answer is
-- {-1, that user}, whether their merge finished or died half-way, so no two users ever both get
-- its lines.
local now, cart_ttl, saved_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local unfinished = redis.call('HMGET', KEYS[4], 'g', 'o')
if unfinished[1] then
  if unfinished[2] and unfinished[2] ~= ARGV[6] then return {-1, unfinished[2], {}} end
  return {tonumber(unfinished[1]), redis.call('HGETALL', KEYS[4]), redis.call('HGETALL', KEYS[3])}
end
local s = load_meta(ARGV[5])
if s.z and s.z ~= ARGV[6] then return {-1, s.z, {}} end
notice_expired(s, now, cart_ttl)
if #s.del > 0 then chunked('HDEL', KEYS[1], s.del, 1000); s.del = {} end
local gen, f = 0, {}
if s.l > 0 or s.s > 0 or s.p ~= '' then
  f = {'v', fmt(s.v), 'n', fmt(s.n), 'c', s.c, 'u', s.u}
  if s.p ~= '' then f[#f + 1] = 'p'; f[#f + 1] = s.p end
  local lines, saved = line_items(), redis.call('HGETALL', KEYS[2])
  for i = 1, #lines, 2 do f[#f + 1] = 'l:' .. lines[i]; f[#f + 1] = lines[i + 1] end
  for i = 1, #saved, 2 do f[#f + 1] = 's:' .. saved[i]; f[#f + 1] = saved[i + 1] end
  gen = redis.call('INCR', KEYS[5])
  redis.call('PEXPIRE', KEYS[5], ARGV[4])
  redis.call('DEL', KEYS[4], KEYS[2])
  redis.call('HSET', KEYS[4], 'g', gen, 'o', ARGV[6])
  chunked('HSET', KEYS[4], f, 1000)
  redis.call('PEXPIRE', KEYS[4], ARGV[4])
  drop_lines(s)
  s.s = 0
  s.p = ''
  s.v = s.v + 1
  s.u = now
end
s.z = s.z or ARGV[6]
save(s, now, cart_ttl, saved_ttl)
return {gen, f, redis.call('HGETALL', KEYS[3])}
