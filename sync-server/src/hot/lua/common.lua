-- Shared prelude of every cart script (prepended when the server loads them).
--
-- A cart is one hash. Meta fields: v (version), n (next seq), c (currency), u (updated at, ms),
-- a (accessed at, ms), z (the freeze field: set on a guest cart that a login merged into a
-- user's cart, to that user's id; such a cart takes no more ops). Lines: "l:<sku>" in the cart,
-- "s:<sku>" in the saved list, each valued "quantity|seq|added_at_ms|price_amount|price_currency"
-- (the price parts empty when unknown).
--
-- These functions mirror shared::Cart::{apply, touch} and shared::merge exactly; a property test
-- runs random op sequences through both and demands the same carts and outcomes.

local function num(s) return tonumber(s) or 0 end
local function fmt(n) return string.format('%d', n) end

local function decode(sku, s)
  local q, seq, added, amt, cur = string.match(s, '^(%d+)|(%d+)|(%-?%d+)|(%d*)|(%u*)$')
  return {sku = sku, q = tonumber(q), seq = tonumber(seq), added = added, amt = amt, cur = cur}
end

local function encode(l)
  return fmt(l.q) .. '|' .. fmt(l.seq) .. '|' .. l.added .. '|' .. l.amt .. '|' .. l.cur
end

local function by_seq(x, y) return x.seq < y.seq end

-- Builds a model from a flat field/value array starting at index `from`, up to `to`.
local function from_flat(raw, from, to, currency)
  local m = {v = 0, n = 0, u = 0, a = 0, c = currency, lines = {}, saved = {}, orig = {}}
  for i = from, to, 2 do
    local f, val = raw[i], raw[i + 1]
    m.orig[f] = val
    local p = string.sub(f, 1, 2)
    if p == 'l:' then m.lines[#m.lines + 1] = decode(string.sub(f, 3), val)
    elseif p == 's:' then m.saved[#m.saved + 1] = decode(string.sub(f, 3), val)
    elseif f == 'v' then m.v = num(val)
    elseif f == 'n' then m.n = num(val)
    elseif f == 'u' then m.u = num(val)
    elseif f == 'a' then m.a = num(val)
    elseif f == 'c' then m.c = val
    elseif f == 'z' then m.z = val
    end
  end
  table.sort(m.lines, by_seq)
  table.sort(m.saved, by_seq)
  return m
end

local function load(key, currency)
  local raw = redis.call('HGETALL', key)
  return from_flat(raw, 1, #raw, currency)
end

local function fields(m)
  local f = {v = fmt(m.v), n = fmt(m.n), c = m.c, u = fmt(m.u), a = fmt(m.a), z = m.z}
  for _, l in ipairs(m.lines) do f['l:' .. l.sku] = encode(l) end
  for _, l in ipairs(m.saved) do f['s:' .. l.sku] = encode(l) end
  return f
end

local function flat(f)
  local out = {}
  for k, v in pairs(f) do out[#out + 1] = k; out[#out + 1] = v end
  return out
end

-- Calls `cmd key ...args` in chunks that stay far below Lua's argument limit.
local function chunked(cmd, key, args, step)
  for i = 1, #args, step do
    local part = {}
    for j = i, math.min(i + step - 1, #args) do part[#part + 1] = args[j] end
    redis.call(cmd, key, unpack(part))
  end
end

-- Writes only the fields that differ from what was loaded.
local function save(key, m)
  local new = fields(m)
  local set, del = {}, {}
  for k, v in pairs(new) do
    if m.orig[k] ~= v then set[#set + 1] = k; set[#set + 1] = v end
  end
  for k, _ in pairs(m.orig) do
    if new[k] == nil then del[#del + 1] = k end
  end
  chunked('HDEL', key, del, 1000)
  chunked('HSET', key, set, 1000)
  return new
end

local function expire(m, cart_ttl, saved_ttl, ...)
  local ttl = cart_ttl
  if #m.saved > 0 and saved_ttl > ttl then ttl = saved_ttl end
  for _, k in ipairs({...}) do redis.call('PEXPIRE', k, ttl) end
end

local function changed(m, now)
  m.v = m.v + 1
  m.u = now
end

local function touch(m, now, cart_ttl, saved_ttl)
  local dropped = false
  if #m.lines > 0 and m.a + cart_ttl < now then m.lines = {}; dropped = true end
  if #m.saved > 0 and m.a + saved_ttl < now then m.saved = {}; dropped = true end
  if dropped then changed(m, now) end
  m.a = now
end

local function find(list, sku)
  for i, l in ipairs(list) do
    if l.sku == sku then return i end
  end
  return nil
end

local function room(list, maxl, name)
  if #list >= maxl then
    return 'cart_full', 'the ' .. name .. ' already holds the maximum of ' .. fmt(maxl) .. ' lines'
  end
  return nil
end

local function move(m, from, to, i, to_name, maxq, maxl)
  local line = from[i]
  local j = find(to, line.sku)
  if j then
    to[j].q = math.min(to[j].q + line.q, maxq)
    table.remove(from, i)
    return true
  end
  local code, msg = room(to, maxl, to_name)
  if code then return nil, code, msg end
  table.remove(from, i)
  line.seq = m.n
  m.n = m.n + 1
  to[#to + 1] = line
  return true
end

-- Returns changed (boolean), or nil, code, message when the op is rejected.
local function apply(m, op, maxq, maxl, now)
  local t, sku = op.type, op.sku
  if t == 'add' then
    if op.cur ~= '' and op.cur ~= m.c then
      return nil, 'currency_mismatch', 'this cart is priced in ' .. m.c .. ', not ' .. op.cur
    end
    local i = find(m.lines, sku)
    if i then
      local l = m.lines[i]
      local q = math.min(l.q + op.q, maxq)
      local ch = q ~= l.q
      l.q = q
      if l.cur == '' and op.cur ~= '' then l.amt = op.amt; l.cur = op.cur; ch = true end
      return ch
    end
    local code, msg = room(m.lines, maxl, 'cart')
    if code then return nil, code, msg end
    m.lines[#m.lines + 1] = {sku = sku, q = op.q, seq = m.n, added = fmt(now), amt = op.amt, cur = op.cur}
    m.n = m.n + 1
    return true
  elseif t == 'set_quantity' then
    local i = find(m.lines, sku)
    if not i then return nil, 'line_not_found', sku .. ' is not in the cart' end
    local ch = m.lines[i].q ~= op.q
    m.lines[i].q = op.q
    return ch
  elseif t == 'remove' or t == 'remove_saved' then
    local list = (t == 'remove') and m.lines or m.saved
    local i = find(list, sku)
    if i then table.remove(list, i); return true end
    return false
  elseif t == 'save_for_later' then
    local i = find(m.lines, sku)
    if not i then return nil, 'line_not_found', sku .. ' is not in the cart' end
    return move(m, m.lines, m.saved, i, 'saved list', maxq, maxl)
  elseif t == 'move_to_cart' then
    local i = find(m.saved, sku)
    if not i then return nil, 'line_not_found', sku .. ' is not in the saved list' end
    return move(m, m.saved, m.lines, i, 'cart', maxq, maxl)
  elseif t == 'clear' then
    local ch = #m.lines > 0
    m.lines = {}
    return ch
  elseif t == 'deduct' then
    local i = find(m.lines, sku)
    if not i then return false end
    local q = m.lines[i].q - op.q
    if q > 0 then m.lines[i].q = q else table.remove(m.lines, i) end
    return true
  end
  return nil, 'invalid_op', 'unknown op type'
end

local function merge_into(m, g, policy, maxq, maxl)
  local ch = false
  for pass = 1, 2 do
    local glist = (pass == 1) and g.lines or g.saved
    for _, gl in ipairs(glist) do
      local list = (pass == 1) and m.lines or m.saved
      local j = find(list, gl.sku)
      if j then
        local u = list[j]
        local q = u.q
        if policy == 'sum' then q = math.min(u.q + gl.q, maxq)
        elseif policy == 'max' then q = math.min(math.max(u.q, gl.q), maxq)
        end
        if q ~= u.q then ch = true end
        u.q = q
      elseif #list < maxl then
        local amt, cur = gl.amt, gl.cur
        if cur ~= m.c then amt, cur = '', '' end
        list[#list + 1] = {sku = gl.sku, q = math.min(gl.q, maxq), seq = m.n, added = gl.added, amt = amt, cur = cur}
        m.n = m.n + 1
        ch = true
      end
    end
  end
  return ch
end
