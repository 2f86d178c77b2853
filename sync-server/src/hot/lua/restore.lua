-- Puts a cart back from the durable store, unless it came back meanwhile.
-- KEYS: 1 main, 2 saved, 3 op ids (see common.lua).
-- ARGV: 1 now ms, 2 cart ttl ms, 3 saved ttl ms, 4 number of main items (meta and lines),
--       5 number of saved items, then the main items, the saved items, and the op-id hash's
--       field/value pairs (see common.lua).
-- Returns 1 if restored, 0 if the cart was already there.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local nm, ns = tonumber(ARGV[4]), tonumber(ARGV[5])
local main, saved, ids = {}, {}, {}
for i = 6, 5 + nm do main[#main + 1] = ARGV[i] end
for i = 6 + nm, 5 + nm + ns do saved[#saved + 1] = ARGV[i] end
for i = 6 + nm + ns, #ARGV do ids[#ids + 1] = ARGV[i] end
chunked('HSET', KEYS[1], main, 1000)
redis.call('HSET', KEYS[1], '#i', ARGV[1], '#g', GEN)
chunked('HSET', KEYS[2], saved, 1000)
chunked('HSET', KEYS[3], ids, 1000)
local s = load_meta('')
s.o = true
s.o0 = false
save(s, ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
return 1
