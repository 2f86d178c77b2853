-- Puts a cart back from the durable store, unless it came back meanwhile.
-- KEYS: 1 cart hash, 2 applied op ids. ARGV: 1 ttl ms, 2 number of field/value items, then the
-- items, then the applied op ids. Returns 1 if restored, 0 if the cart was already there.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local nf = tonumber(ARGV[2])
local f, ids = {}, {}
for i = 3, 2 + nf do f[#f + 1] = ARGV[i] end
for i = 3 + nf, #ARGV do ids[#ids + 1] = ARGV[i] end
chunked('HSET', KEYS[1], f, 1000)
chunked('SADD', KEYS[2], ids, 1000)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if #ids > 0 then redis.call('PEXPIRE', KEYS[2], ARGV[1]) end
return 1
