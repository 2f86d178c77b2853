-- Puts a cart back from the durable store, unless it came back meanwhile.
-- KEYS: 1 meta, 2 lines, 3 saved, 4 op ids (see common.lua).
-- ARGV: 1 cart ttl ms, 2 saved ttl ms, 3 number of meta items, 4 number of line items, 5 number of
--       saved items, then the meta items, the line items, the saved items, and the op ids.
-- Returns 1 if restored, 0 if the cart was already there.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local cart_ttl, saved_ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local nm, nl, ns = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local function put(key, from, count)
  for i = from, from + count - 1, 1000 do
    redis.call('HSET', key, unpack(ARGV, i, math.min(i + 999, from + count - 1)))
  end
end
put(KEYS[1], 6, nm)
put(KEYS[2], 6 + nm, nl)
put(KEYS[3], 6 + nm + nl, ns)
for i = 6 + nm + nl + ns, #ARGV, 500 do
  local part = {}
  for j = i, math.min(i + 499, #ARGV) do part[#part + 1] = ARGV[j]; part[#part + 1] = '1' end
  redis.call('HSET', KEYS[4], unpack(part))
end
local s = load_meta('')
save_meta(s, cart_ttl, saved_ttl)
return 1
