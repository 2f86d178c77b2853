-- The op-id hash (KEYS[3], see common.lua), as shared::Applied keeps it: prepended to the
-- scripts that record ops (apply.lua, which stands alone, and merge.lua).

local function fmt(n) return string.format('%d', n) end

local function chunked(cmd, key, items, step)
  for i = 1, #items, step do redis.call(cmd, key, unpack(items, i, math.min(i + step - 1, #items))) end
end

local RECENT_OPS, MAX_CLIENTS = 1000, 64

-- An op's id argument: "id", or "id#client#seq" for a client's numbered op.
local function parse_id(raw)
  local id, cl, sq = string.match(raw, '^([^#]*)#([^#]+)#(%d+)$')
  if id then return id, cl, tonumber(sq) end
  return raw, nil, nil
end

-- A client's high-water seq, or false when the cart does not know the client.
local function client_seq(cl)
  local m = redis.call('HGET', KEYS[3], '#c' .. cl)
  if not m then return false end
  return tonumber(string.match(m, '^(%d+)'))
end

-- Adds op ids (each new to the cart) at the next positions, forgetting the oldest past
-- RECENT_OPS: O(1) per id.
local function push_ids(ids)
  if #ids == 0 then return end
  local p = redis.call('HMGET', KEYS[3], '#t', '#h')
  local t, h = tonumber(p[1]) or 0, tonumber(p[2]) or 0
  local w = {}
  for _, id in ipairs(ids) do
    w[#w + 1] = id; w[#w + 1] = fmt(t); w[#w + 1] = '#q' .. fmt(t); w[#w + 1] = id
    t = t + 1
  end
  chunked('HSET', KEYS[3], w, 1000)
  local gone = {}
  while t - h > RECENT_OPS do
    local old = redis.call('HGET', KEYS[3], '#q' .. fmt(h))
    if old then gone[#gone + 1] = old end
    gone[#gone + 1] = '#q' .. fmt(h)
    h = h + 1
  end
  if #gone > 0 then chunked('HDEL', KEYS[3], gone, 1000) end
  redis.call('HSET', KEYS[3], '#t', fmt(t), '#h', fmt(h))
end

-- Raises clients' marks ({client, seq} pairs, in op order) to at least seq, sent at `now`. A
-- new client past MAX_CLIENTS makes the one that sent least recently (the first by name among
-- equals) forgotten; that scan is O(hash) and happens only then.
local function set_marks(marks, now)
  if #marks == 0 then return end
  local k = tonumber(redis.call('HGET', KEYS[3], '#k')) or 0
  for _, mk in ipairs(marks) do
    local f, seq = '#c' .. mk[1], mk[2]
    local have = redis.call('HGET', KEYS[3], f)
    if have then
      local hs = tonumber(string.match(have, '^(%d+)'))
      if hs > seq then seq = hs end
    elseif k >= MAX_CLIENTS then
      local all, victim, vat = redis.call('HGETALL', KEYS[3]), nil, nil
      for i = 1, #all, 2 do
        if string.sub(all[i], 1, 2) == '#c' then
          local a = tonumber(string.match(all[i + 1], '|(%-?%d+)$'))
          if victim == nil or a < vat or (a == vat and all[i] < victim) then victim, vat = all[i], a end
        end
      end
      if victim then redis.call('HDEL', KEYS[3], victim) end
    else
      k = k + 1
    end
    redis.call('HSET', KEYS[3], f, fmt(seq) .. '|' .. now)
  end
  redis.call('HSET', KEYS[3], '#k', fmt(k))
end
