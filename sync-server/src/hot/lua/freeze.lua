-- First half of a login merge, on the guest cart's slot: moves the guest cart into a snapshot
-- that only the merge reads, under a new generation number. A retry (or a concurrent merge) that
-- finds no cart but an unfinished snapshot gets that snapshot again, so a crash between the two
-- halves loses nothing; the second half is idempotent through its op id.
-- KEYS: 1 guest cart, 2 guest op ids, 3 snapshot, 4 generation counter.
-- ARGV: 1 now ms, 2 cart ttl ms, 3 saved ttl ms, 4 snapshot ttl ms.
-- Returns {0} (nothing to merge) or {generation, fields}.
local now = tonumber(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then
  local m = load(KEYS[1], 'XXX')
  touch(m, now, tonumber(ARGV[2]), tonumber(ARGV[3]))
  local gen = redis.call('INCR', KEYS[4])
  redis.call('PEXPIRE', KEYS[4], ARGV[4])
  local f = flat(fields(m))
  redis.call('DEL', KEYS[3])
  chunked('HSET', KEYS[3], f, 1000)
  redis.call('HSET', KEYS[3], 'g', gen)
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
  -- The op ids stay: an op of the merged cart that is sent again remains a duplicate.
  redis.call('DEL', KEYS[1])
  return {gen, f}
end
local gen = redis.call('HGET', KEYS[3], 'g')
if gen then
  redis.call('HDEL', KEYS[3], 'g')
  local f = redis.call('HGETALL', KEYS[3])
  redis.call('HSET', KEYS[3], 'g', gen)
  return {tonumber(gen), f}
end
return {0}
