-- Applies a batch of ops to one cart, exactly once per op id: shared::CartState::apply_op for
-- each, touching only the fields each op changes.
-- KEYS: 1 main, 2 saved, 3 op ids (see common.lua).
-- ARGV: 1 now ms, 2 max quantity, 3 max lines, 4 cart ttl ms, 5 saved ttl ms, 6 currency of a new
--       cart, 7 "1" if the cart must already exist (user carts: else it is restored first),
--       8 expected version or "", then 5 per op: id ("" for none: recorded nowhere), type, sku,
--       quantity, price ("amount|CUR" or "").
-- Returns {"restore"} | {"merged", user} | {"mismatch", version} | {"ok", results, version}; a
-- result is "a" (applied), "d" (duplicate) or "r|code|message". A guest cart that was merged into
-- a user's cart takes no more ops ("merged", with the user): they belong in the user's cart now.
local now, maxq, maxl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local cart_ttl, saved_ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local s, exists = load_meta(ARGV[6])
if not exists and ARGV[7] == '1' then return {'restore'} end
notice_expired(s, now, cart_ttl)
if s.z and #ARGV > 8 then return {'merged', s.z} end
if ARGV[8] ~= '' and tonumber(ARGV[8]) ~= s.v then return {'mismatch', s.v} end

local function full(count, name)
  if count >= maxl then return 'cart_full', 'the ' .. name .. ' already holds the maximum of ' .. fmt(maxl) .. ' lines' end
  return nil
end

-- Saves a line for later: summed (clamped) into the same SKU there, or appended with a fresh
-- sequence number if there is room.
local function save_for_later(sku)
  local raw = get_line(s, sku)
  if not raw then return nil, 'line_not_found', sku .. ' is not in the cart' end
  local l = decode(raw)
  local there = redis.call('HGET', KEYS[2], sku)
  if there then
    local t = decode(there)
    t.q = math.min(t.q + l.q, maxq)
    redis.call('HSET', KEYS[2], sku, encode(t))
  else
    local code, msg = full(s.s, 'saved list')
    if code then return nil, code, msg end
    l.seq = fmt(s.n)
    s.n = s.n + 1
    redis.call('HSET', KEYS[2], sku, encode(l))
    s.s = s.s + 1
  end
  del_line(s, sku)
  s.l = s.l - 1
  return true
end

-- Moves a saved line back into the cart, the same way.
local function move_to_cart(sku)
  local raw = redis.call('HGET', KEYS[2], sku)
  if not raw then return nil, 'line_not_found', sku .. ' is not in the saved list' end
  local l = decode(raw)
  local there = get_line(s, sku)
  if there then
    local t = decode(there)
    t.q = math.min(t.q + l.q, maxq)
    put_line(s, sku, encode(t))
  else
    local code, msg = full(s.l, 'cart')
    if code then return nil, code, msg end
    l.seq = fmt(s.n)
    s.n = s.n + 1
    put_line(s, sku, encode(l))
    s.l = s.l + 1
  end
  redis.call('HDEL', KEYS[2], sku)
  s.s = s.s - 1
  return true
end

-- Returns changed (boolean), or nil, code, message when the op is rejected.
local function apply(t, sku, q, amt, cur)
  if t == 'add' then
    if cur ~= '' and cur ~= s.c then
      return nil, 'currency_mismatch', 'this cart is priced in ' .. s.c .. ', not ' .. cur
    end
    local raw = get_line(s, sku)
    if raw then
      local l = decode(raw)
      local nq = math.min(l.q + q, maxq)
      local ch = nq ~= l.q
      l.q = nq
      if l.cur == '' and cur ~= '' then l.amt = amt; l.cur = cur; ch = true end
      if ch then put_line(s, sku, encode(l)) end
      return ch
    end
    local code, msg = full(s.l, 'cart')
    if code then return nil, code, msg end
    put_line(s, sku, fmt(q) .. '|' .. fmt(s.n) .. '|' .. now .. '|' .. amt .. '|' .. cur)
    s.n = s.n + 1
    s.l = s.l + 1
    return true
  elseif t == 'set_quantity' then
    local raw = get_line(s, sku)
    if not raw then return nil, 'line_not_found', sku .. ' is not in the cart' end
    local l = decode(raw)
    if l.q == q then return false end
    l.q = q
    put_line(s, sku, encode(l))
    return true
  elseif t == 'remove' then
    if not get_line(s, sku) then return false end
    del_line(s, sku)
    s.l = s.l - 1
    return true
  elseif t == 'remove_saved' then
    if redis.call('HDEL', KEYS[2], sku) == 1 then s.s = s.s - 1; return true end
    return false
  elseif t == 'save_for_later' then
    return save_for_later(sku)
  elseif t == 'move_to_cart' then
    return move_to_cart(sku)
  elseif t == 'clear' then
    if s.l == 0 then return false end
    drop_lines(s)
    return true
  elseif t == 'deduct' then
    local raw = get_line(s, sku)
    if not raw then return false end
    local l = decode(raw)
    l.q = l.q - q
    if l.q > 0 then
      put_line(s, sku, encode(l))
    else
      del_line(s, sku)
      s.l = s.l - 1
    end
    return true
  end
  return nil, 'invalid_op', 'unknown op type'
end

local results, seen, applied = {}, {}, 0
for i = 9, #ARGV, 5 do
  local id = ARGV[i]
  if id ~= '' and (seen[id] or (s.o and redis.call('HEXISTS', KEYS[3], id) == 1)) then
    results[#results + 1] = 'd'
  else
    local amt, cur = string.match(ARGV[i + 4], '^(%d*)|?(%u*)$')
    local ch, code, msg = apply(ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]) or 0, amt or '', cur or '')
    if code then
      results[#results + 1] = 'r|' .. code .. '|' .. msg
    else
      if ch then s.v = s.v + 1; s.u = now end
      if id ~= '' then
        seen[id] = true
        redis.call('HSET', KEYS[3], id, '1')
        s.o = true
      end
      applied = applied + 1
      results[#results + 1] = 'a'
    end
  end
end

if exists or applied > 0 then save(s, now, cart_ttl, saved_ttl) end
return {'ok', results, s.v}
