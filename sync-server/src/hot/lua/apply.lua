-- Applies a batch of ops to one cart, exactly once per op id, in one round trip.
-- KEYS: 1 cart hash, 2 applied op ids (set).
-- ARGV: 1 now ms, 2 max quantity, 3 max lines, 4 cart ttl ms, 5 saved ttl ms, 6 currency of a new
--       cart, 7 "1" if the cart must already exist (user carts: else it is restored first),
--       8 expected version or "", then 5 per op: id, type, sku, quantity, price ("amount|CUR" or "").
-- Returns {"restore"} | {"merged", user} | {"mismatch", version} | {"ok", results, fields}; a
-- result is "a" (applied), "d" (duplicate) or "r|code|message". A guest cart that was merged into
-- a user's cart takes no more ops ("merged", with the user): they belong in the user's cart now.
local now, maxq, maxl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cart_ttl, saved_ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local exists = redis.call('EXISTS', KEYS[1]) == 1
if not exists and ARGV[7] == '1' then return {'restore'} end

local m = load(KEYS[1], ARGV[6])
touch(m, now, cart_ttl, saved_ttl)
if m.z and #ARGV > 8 then return {'merged', m.z} end
if ARGV[8] ~= '' and tonumber(ARGV[8]) ~= m.v then return {'mismatch', m.v} end

local results, applied, seen = {}, {}, {}
for i = 9, #ARGV, 5 do
  local id = ARGV[i]
  if seen[id] or redis.call('SISMEMBER', KEYS[2], id) == 1 then
    results[#results + 1] = 'd'
  else
    local amt, cur = string.match(ARGV[i + 4], '^(%d*)|?(%u*)$')
    local op = {type = ARGV[i + 1], sku = ARGV[i + 2], q = tonumber(ARGV[i + 3]) or 0, amt = amt or '', cur = cur or ''}
    local ch, code, msg = apply(m, op, maxq, maxl, now)
    if code then
      results[#results + 1] = 'r|' .. code .. '|' .. msg
    else
      if ch then changed(m, now) end
      seen[id] = true
      applied[#applied + 1] = id
      results[#results + 1] = 'a'
    end
  end
end

if exists or #applied > 0 then
  save(KEYS[1], m)
  chunked('SADD', KEYS[2], applied, 1000)
  if redis.call('EXISTS', KEYS[2]) == 1 then
    expire(m, cart_ttl, saved_ttl, KEYS[1], KEYS[2])
  else
    expire(m, cart_ttl, saved_ttl, KEYS[1])
  end
end
return {'ok', results, flat(fields(m))}
