-- Second half of a login merge, on the user cart's slot: shared::merge of a frozen guest cart
-- into the user's, at most once per merge op id. O(guest lines): merges are rare.
-- KEYS: 1 meta, 2 lines, 3 saved, 4 op ids of the user's cart (see common.lua).
-- ARGV: 1 now ms, 2 max quantity, 3 max lines, 4 cart ttl ms, 5 saved ttl ms, 6 currency,
--       7 merge op id, 8 policy, 9 number of guest line items, the items ("l:<sku>" or
--       "s:<sku>" and its value, in the guest cart's order), then the guest cart's applied op ids,
--       which the user cart takes over: an op applied to the guest cart stays applied once it is
--       sent again for the user.
-- Returns {"restore"} | {"duplicate", version} | {"applied", version}.
local now, maxq, maxl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local cart_ttl, saved_ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local s, exists = load_meta(ARGV[6])
if not exists then return {'restore'} end
notice_expired(s, now)
local status = 'duplicate'
if redis.call('HEXISTS', KEYS[4], ARGV[7]) == 0 then
  local policy, nf = ARGV[8], tonumber(ARGV[9])
  local changed = false
  for i = 10, 9 + nf, 2 do
    local list, count = KEYS[2], 'nl'
    if string.sub(ARGV[i], 1, 2) == 's:' then list, count = KEYS[3], 'ns' end
    local sku, g = string.sub(ARGV[i], 3), decode(ARGV[i + 1])
    local raw = redis.call('HGET', list, sku)
    if raw then
      local u = decode(raw)
      local q = u.q
      if policy == 'sum' then q = math.min(u.q + g.q, maxq)
      elseif policy == 'max' then q = math.min(math.max(u.q, g.q), maxq)
      end
      if q ~= u.q then
        u.q = q
        redis.call('HSET', list, sku, encode(u))
        changed = true
      end
    elseif s[count] < maxl then
      if g.cur ~= s.c then g.amt, g.cur = '', '' end
      g.q = math.min(g.q, maxq)
      g.seq = fmt(s.n)
      s.n = s.n + 1
      s[count] = s[count] + 1
      redis.call('HSET', list, sku, encode(g))
      changed = true
    end
  end
  for i = 10 + nf, #ARGV do redis.call('HSET', KEYS[4], ARGV[i], '1') end
  redis.call('HSET', KEYS[4], ARGV[7], '1')
  if changed then s.v = s.v + 1; s.u = now end
  status = 'applied'
end
save_meta(s, cart_ttl, saved_ttl)
return {status, s.v}
