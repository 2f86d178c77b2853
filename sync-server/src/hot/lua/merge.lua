-- Second half of a login merge, on the user cart's slot: folds a frozen guest cart in, at most
-- once per merge op id.
-- KEYS: 1 user cart, 2 user op ids.
-- ARGV: 1 now ms, 2 max quantity, 3 max lines, 4 cart ttl ms, 5 saved ttl ms, 6 currency,
--       7 merge op id, 8 policy, 9 number of field/value items of the guest cart, the items,
--       then the guest cart's applied op ids, which the user cart takes over: an op applied to
--       the guest cart stays applied once it is sent again for the user.
-- Returns {"restore"} | {"duplicate", fields} | {"applied", fields}.
local now, maxq, maxl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cart_ttl, saved_ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('EXISTS', KEYS[1]) == 0 then return {'restore'} end
local m = load(KEYS[1], ARGV[6])
touch(m, now, cart_ttl, saved_ttl)
local status = 'duplicate'
if redis.call('SISMEMBER', KEYS[2], ARGV[7]) == 0 then
  local nf = tonumber(ARGV[9])
  local g = from_flat(ARGV, 10, 9 + nf, ARGV[6])
  local ids = {}
  for i = 10 + nf, #ARGV do ids[#ids + 1] = ARGV[i] end
  chunked('SADD', KEYS[2], ids, 1000)
  if merge_into(m, g, ARGV[8], maxq, maxl) then changed(m, now) end
  redis.call('SADD', KEYS[2], ARGV[7])
  status = 'applied'
end
save(KEYS[1], m)
expire(m, cart_ttl, saved_ttl, KEYS[1], KEYS[2])
return {status, flat(fields(m))}
