-- Settles a user cart written under an older generation of the data (its '#g' is not GEN: Redis
-- restarted, failed over or was restored since, and may have come back older than the durable
-- store). The caller compared it with the durable copy: "stamp" marks it current (the durable
-- store has nothing newer), "drop" deletes it, to be restored from the durable store.
-- KEYS: 1 main, 2 saved, 3 op ids (see common.lua).
-- ARGV: 1 the version the caller found it at, 2 "stamp" or "drop".
-- Returns "gone", "settled" (already current), "newer" (checked in a newer generation), "changed" (not at that version any more: the
-- caller looks again), "stamped" or "dropped".
local m = redis.call('HMGET', KEYS[1], '#v', '#g')
if not m[1] then return 'gone' end
if m[2] == GEN then return 'settled' end
-- Checked already by an instance on a newer generation: never stamped back (the caller adopts it).
if (tonumber(m[2]) or 0) > tonumber(GEN) then return 'newer' end
if m[1] ~= ARGV[1] then return 'changed' end
if ARGV[2] == 'stamp' then
  redis.call('HSET', KEYS[1], '#g', GEN)
  return 'stamped'
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return 'dropped'
