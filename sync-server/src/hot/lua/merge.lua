-- Second half of a login merge, on the user cart's slot: shared::merge of a frozen guest cart
-- into the user's, at most once per merge op id. O(guest lines): merges are rare.
-- KEYS: 1 main, 2 saved, 3 op ids of the user's cart (see common.lua), 4 the bucket's event
--       stream, 5 its write-behind stream.
-- ARGV: 1 now ms, 2 max quantity, 3 max lines, 4 cart ttl ms, 5 saved ttl ms, 6 currency,
--       7 merge op id, 8 policy, 9 the user cart's event subject, 10 the user, 11 the guest
--       cart's subject, 12 number of guest line items, the items ("r" and the code
--       ranking, first if any; "p" and the guest's codes; "l:<sku>" or "s:<sku>" and its value,
--       in the guest cart's order), then what the guest cart remembers of its ops (its op ids
--       oldest first, then "#client|seq" per numbering client), which the user cart takes over:
--       an op applied to the guest cart stays applied once it is sent again for the user.
-- Returns {"restore"} | {"verify", version, its generation} (a user cart of an older generation: see verify.lua) |
-- {"duplicate", version} | {"applied", version}.
local now, maxq, maxl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local cart_ttl, saved_ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local s, exists = load_meta(ARGV[6])
if not exists then return {'restore'} end
local g = redis.call('HGET', KEYS[1], '#g')
if g ~= GEN then return {'verify', fmt(s.v), g or ''} end
notice_expired(s, now, cart_ttl)
local status = 'duplicate'
if not (s.o and redis.call('HEXISTS', KEYS[3], ARGV[7]) == 1) then
  local policy, nf = ARGV[8], tonumber(ARGV[12])
  local changed = false
  local rank = ''
  local guest_lines, guest_items = 0, 0
  for i = 13, 12 + nf, 2 do
    if string.sub(ARGV[i], 1, 2) == 'l:' then guest_lines = guest_lines + 1 end
    if ARGV[i] ~= 'r' then guest_items = guest_items + 1 end
  end
  for i = 13, 12 + nf, 2 do
    if ARGV[i] == 'r' then
      rank = ARGV[i + 1]
    elseif ARGV[i] == 'p' then
      -- shared::merge_codes: both carts' codes, each once, the user's first; past five, the
      -- first in the ranking, ties and unranked codes in the union's order.
      local union, have = {}, {}
      for c in string.gmatch(s.p, '[^,]+') do union[#union + 1] = c; have[c] = true end
      for c in string.gmatch(ARGV[i + 1], '[^,]+') do
        if not have[c] then union[#union + 1] = c; have[c] = true end
      end
      if #union > 5 then
        local place, n = {}, 0
        for c in string.gmatch(rank, '[^,]+') do
          n = n + 1
          if place[c] == nil then place[c] = n end
        end
        local order = {}
        for k = 1, #union do order[k] = k end
        table.sort(order, function(a, b)
          local pa, pb = place[union[a]] or (n + 1), place[union[b]] or (n + 1)
          if pa ~= pb then return pa < pb end
          return a < b
        end)
        local keep = {}
        for k = 1, 5 do keep[order[k]] = true end
        local kept = {}
        for k = 1, #union do if keep[k] then kept[#kept + 1] = union[k] end end
        union = kept
      end
      local codes = table.concat(union, ',')
      if codes ~= s.p then s.p = codes; changed = true end
    else
    local saved = string.sub(ARGV[i], 1, 2) == 's:'
    local sku, g = string.sub(ARGV[i], 3), decode(ARGV[i + 1])
    local raw
    if saved then raw = redis.call('HGET', KEYS[2], sku) else raw = get_line(s, sku) end
    local count = saved and s.s or s.l
    local value
    if raw then
      local u = decode(raw)
      local q = u.q
      if policy == 'sum' then q = math.min(u.q + g.q, maxq)
      elseif policy == 'max' then q = math.min(math.max(u.q, g.q), maxq)
      end
      if q ~= u.q then u.q = q; value = encode(u) end
    elseif count < maxl then
      if g.cur ~= s.c then g.amt, g.cur = '', '' end
      g.q = math.min(g.q, maxq)
      g.seq = fmt(s.n)
      s.n = s.n + 1
      if saved then s.s = s.s + 1 else s.l = s.l + 1 end
      value = encode(g)
    end
    if value then
      changed = true
      if saved then redis.call('HSET', KEYS[2], sku, value) else put_line(s, sku, value) end
    end
    end
  end
  -- shared::Applied::absorb, then the merge's own op id: the guest's op ids the user cart lacks,
  -- its clients' marks ("#client|seq"), then the merge op.
  local ids, marks = {}, {}
  for i = 13 + nf, #ARGV do
    local a = ARGV[i]
    if string.byte(a) == 35 then
      local cl, sq = string.match(a, '^#([^|]+)|(%d+)$')
      marks[#marks + 1] = {cl, tonumber(sq)}
    elseif not (s.o and redis.call('HEXISTS', KEYS[3], a) == 1) then
      ids[#ids + 1] = a
    end
  end
  push_ids(ids)
  set_marks(marks, now)
  push_ids({ARGV[7]})
  s.o = true
  if changed then s.v = s.v + 1; s.u = now end
  status = 'applied'
  -- A login with an empty guest cart merges nothing: no event.
  if guest_items > 0 then
    redis.call('XADD', KEYS[4], '*', 't', 'cart.merged', 'j', ARGV[9], 'u', ARGV[10], 'v', s.v, 's', '', 'q', guest_lines, 'x', ARGV[11], 'm', now)
  end
  if ARGV[10] ~= '' then redis.call('XADD', KEYS[5], '*', 'u', ARGV[10]) end
end
save(s, now, cart_ttl, saved_ttl)
return {status, s.v}
