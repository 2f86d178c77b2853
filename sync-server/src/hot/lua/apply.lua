-- Applies a batch of ops to one cart, exactly once per op id: shared::CartState::apply_op for
-- each, touching only the fields each op changes. This is the hot path, so it is written for
-- Redis's Lua: one HMGET reads the meta and every line the ops name, one HSET writes them back,
-- state lives in locals rather than tables, and nothing loops over the cart's lines except a
-- clear or an expiry. An add costs HMGET, HSET and PEXPIRE.
-- KEYS: 1 main, 2 saved, 3 op ids (see common.lua), 4 the bucket's event stream, 5 the bucket's
--       write-behind stream.
-- ARGV: 1 now ms, 2 max quantity, 3 max lines, 4 cart ttl ms, 5 saved ttl ms, 6 currency of a new
--       cart, 7 "1" if the cart must already exist (user carts: else it is restored first),
--       8 expected version or "", 9 the cart's event subject, 10 its user ("" for a guest cart),
--       then 5 per op: id ("" for none: recorded nowhere; "id#client#seq" for a client's
--       numbered op), type, sku, quantity (for a promo-code op: the code), price ("amount|CUR"
--       or "").
-- Every applied op adds its event to the event stream (shared::events::op_event says what each
-- carries), in this same atomic step, and an applied op on a user cart adds the user to the
-- write-behind stream: nothing acknowledged can miss either.
-- Returns {"restore"} | {"verify", version, the cart's generation} | {"merged", user} | {"mismatch", version} |
-- {"out_of_order", client, expected seq, seq} |
-- {"ok", results, version, version before, incarnation}; a result is "a" (applied), "d"
-- (duplicate) or "r|code|message". The version before is the cart's when the script began (-1
-- when an expiry changed it first) and the incarnation names this life of the cart (its #i): a
-- server holding that exact cart may apply the applied ops itself rather than read it back. A guest cart that was merged into
-- a user's cart takes no more ops ("merged", with the user): they belong in the user's cart now.
local main, now, maxq, maxl = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local cart_ttl, saved_ttl = tonumber(ARGV[4]), tonumber(ARGV[5])

-- The meta fields and every line an op names, in one call (the last access, needed only with a
-- saved list, is read then). Tables are made at their size where it is known: growing one costs
-- a rehash.
local want, at, nw = {'#v', '#s', '#z', '#l', '#n', '#c', '#o', '#i', '#x', '#p', '#g'}, {}, 11
for i = 11, #ARGV, 5 do
  local sku = ARGV[i + 2]
  if sku ~= '' and not at[sku] then nw = nw + 1; want[nw] = sku; at[sku] = nw end
end
local m = redis.call('HMGET', main, unpack(want, 1, nw))
local fresh = not m[1]
-- A cart no op ever changed (new, or a user's restored empty) comes into being with this call.
local created = (tonumber(m[1]) or 0) == 0
if fresh and ARGV[7] == '1' then return {'restore'} end
-- A user cart written under an older generation of the data may be older than the durable copy
-- (Redis restarted or was restored): the caller settles it first (verify.lua).
if ARGV[7] == '1' and m[11] ~= GEN then return {'verify', m[1], m[11] or ''} end
local v, ss, z, l, n = tonumber(m[1]) or 0, tonumber(m[2]) or 0, m[3], tonumber(m[4]) or 0, tonumber(m[5]) or 0
local c, o, inc = m[6] or ARGV[6], m[7] == '1', m[8] or now
local before = v
local u = '0'
local v0, n0, l0, ss0, o0 = v, n, l, ss, o
-- The promo codes on the cart, comma-separated (no code holds a comma), at most five.
local codes, codes_changed = m[10] or '', false

-- Lines as this call leaves them: sku -> value, or false once deleted.
local lines, cleared, gone = {}, false, nil
local function line(sku)
  local d = lines[sku]
  if d ~= nil then return d end
  if cleared then return false end
  local i = at[sku]
  if i then return m[i] end
  return redis.call('HGET', main, sku)
end

-- Drops every line (clear, and lines a saved list kept past their expiry): O(lines), rare.
local function drop_all()
  local all = redis.call('HGETALL', main)
  gone = gone or {}
  for i = 1, #all, 2 do
    if string.byte(all[i]) ~= 35 then gone[#gone + 1] = all[i] end
  end
  lines, cleared, l = {}, true, 0
end

-- Only while a saved list keeps the cart alive can lines outlive their expiry, and a saved list
-- Redis expired is noticed by its count: either going is one change, as in shared::Cart::touch.
if ss > 0 then
  local dropped = false
  if l > 0 and (tonumber(redis.call('HGET', main, '#a')) or 0) + cart_ttl < tonumber(now) then drop_all(); dropped = true end
  if redis.call('EXISTS', KEYS[2]) == 0 then ss = 0; dropped = true end
  if dropped then v = v + 1; u = now; before = -1 end
end
if z and #ARGV > 10 then return {'merged', z} end
-- A client's ops follow on from its mark (shared::Applied::check_order): one that skips ahead
-- refuses the whole call. A client the cart does not know starts at its first op.
local marks = {}
for i = 11, #ARGV, 5 do
  local _, cl, sq = parse_id(ARGV[i])
  if cl then
    if marks[cl] == nil then marks[cl] = o and client_seq(cl) or false end
    local hw = marks[cl]
    if hw == false or sq == hw + 1 then marks[cl] = sq
    elseif sq > hw + 1 then return {'out_of_order', cl, fmt(hw + 1), fmt(sq)} end
  end
end
if ARGV[8] ~= '' and tonumber(ARGV[8]) ~= v then return {'mismatch', v} end

local function full(name)
  return 'cart_full', 'the ' .. name .. ' already holds the maximum of ' .. maxl .. ' lines'
end

-- "quantity|rest": the quantity and the rest of a line's value.
local function split(raw)
  local bar = string.find(raw, '|', 1, true)
  return tonumber(string.sub(raw, 1, bar - 1)), string.sub(raw, bar)
end

local results, seen, applied = {}, nil, 0
-- Each client's mark as the ops go (nil: not known), the op ids and marks to record.
local cur, new_ids, new_marks = {}, {}, {}
for cl in pairs(marks) do cur[cl] = o and client_seq(cl) or nil end
-- The events of the applied ops: type, sku, quantity, extra, each after its op's version.
local evs, ne = {}, 0
for i = 11, #ARGV, 5 do
  local id, cl, sq = parse_id(ARGV[i])
  local t, sku, q, price = ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]) or 0, ARGV[i + 4]
  local ch, code, msg = false, nil, nil
  local et, eq, ex = nil, 0, ''
  local dup
  if cl then dup = cur[cl] ~= nil and sq <= cur[cl]
  else dup = id ~= '' and ((seen and seen[id]) or (o and redis.call('HEXISTS', KEYS[3], id) == 1)) end
  if dup then
    results[#results + 1] = 'd'
  else
    if t == 'add' then
      local amt, cur = '', ''
      if price ~= '' then amt, cur = string.match(price, '^(%d+)|(%u+)$') end
      if cur ~= '' and cur ~= c then
        code, msg = 'currency_mismatch', 'this cart is priced in ' .. c .. ', not ' .. cur
      else
        local raw = line(sku)
        et, eq = 'cart.item_added', q
        if raw then
          local have, rest = split(raw)
          local nq = math.min(have + q, maxq)
          if cur ~= '' and string.sub(rest, -2) == '||' then
            rest = string.sub(rest, 1, -2) .. amt .. '|' .. cur
            ch = true
          end
          if nq ~= have then ch = true end
          if ch then lines[sku] = nq .. rest end
          ex = nq
        elseif l >= maxl then
          code, msg = full('cart')
        else
          lines[sku] = q .. '|' .. n .. '|' .. now .. '|' .. price
          if price == '' then lines[sku] = lines[sku] .. '|' end
          n, l, ch = n + 1, l + 1, true
          ex = q
        end
      end
    elseif t == 'set_quantity' then
      local raw = line(sku)
      if not raw then
        code, msg = 'line_not_found', sku .. ' is not in the cart'
      else
        local have, rest = split(raw)
        if have ~= q then lines[sku] = q .. rest; ch = true end
        et, eq, ex = 'cart.quantity_changed', q, have
      end
    elseif t == 'remove' then
      local raw = line(sku)
      et = 'cart.item_removed'
      if raw then eq = split(raw); lines[sku] = false; l = l - 1; ch = true end
    elseif t == 'deduct' then
      local raw = line(sku)
      et, ex = 'cart.item_removed', 'ordered'
      if raw then
        local have, rest = split(raw)
        if have > q then lines[sku] = (have - q) .. rest; eq = q else lines[sku] = false; l = l - 1; eq = have end
        ch = true
      end
    elseif t == 'clear' then
      et, eq = 'cart.cleared', l
      if l > 0 then drop_all(); ch = true end
    elseif t == 'apply_promo_code' or t == 'remove_promo_code' then
      -- The code travels in the quantity's place.
      local pc = ARGV[i + 3]
      local list, found = {}, false
      for c in string.gmatch(codes, '[^,]+') do
        if c == pc then found = true end
        if not (c == pc and t == 'remove_promo_code') then list[#list + 1] = c end
      end
      if t == 'apply_promo_code' and not found then
        if #list >= 5 then
          code, msg = 'too_many_promo_codes', 'a cart holds at most 5 promo codes'
        else
          list[#list + 1] = pc
          ch = true
        end
      elseif t == 'remove_promo_code' and found then
        ch = true
      end
      if ch then codes, codes_changed = table.concat(list, ','), true end
      ex = pc
      if t == 'apply_promo_code' then et = 'cart.promo_code_applied' else et = 'cart.promo_code_removed' end
    elseif t == 'remove_saved' then
      local there = ss > 0 and redis.call('HGET', KEYS[2], sku)
      et = 'cart.saved_item_removed'
      if there then eq = split(there); redis.call('HDEL', KEYS[2], sku); ss = ss - 1; ch = true end
    elseif t == 'save_for_later' then
      local raw = line(sku)
      if not raw then
        code, msg = 'line_not_found', sku .. ' is not in the cart'
      else
        local there = redis.call('HGET', KEYS[2], sku)
        et, eq = 'cart.saved_for_later', split(raw)
        if there then
          local have, rest = split(there)
          redis.call('HSET', KEYS[2], sku, math.min(have + split(raw), maxq) .. rest)
        elseif ss >= maxl then
          code, msg = full('saved list')
        else
          local q1, rest = split(raw)
          local added = string.match(rest, '^|%d+(|.*)$')
          redis.call('HSET', KEYS[2], sku, q1 .. '|' .. n .. added)
          n, ss = n + 1, ss + 1
        end
        if not code then lines[sku] = false; l = l - 1; ch = true end
      end
    elseif t == 'move_to_cart' then
      local raw = redis.call('HGET', KEYS[2], sku)
      if not raw then
        code, msg = 'line_not_found', sku .. ' is not in the saved list'
      else
        et, eq = 'cart.moved_to_cart', split(raw)
        local there = line(sku)
        if there then
          local have, rest = split(there)
          lines[sku] = math.min(have + split(raw), maxq) .. rest
        elseif l >= maxl then
          code, msg = full('cart')
        else
          local q1, rest = split(raw)
          lines[sku] = q1 .. '|' .. n .. string.match(rest, '^|%d+(|.*)$')
          n, l = n + 1, l + 1
        end
        if not code then redis.call('HDEL', KEYS[2], sku); ss = ss - 1; ch = true end
      end
    else
      code, msg = 'invalid_op', 'unknown op type'
    end
    -- A client's op is settled whatever its outcome; an op id is kept only when applied.
    if cl then
      if cur[cl] == nil or sq > cur[cl] then cur[cl] = sq end
      new_marks[#new_marks + 1] = {cl, sq}
    end
    if code then
      results[#results + 1] = 'r|' .. code .. '|' .. msg
    else
      if ch then v = v + 1; u = now end
      if not cl and id ~= '' then
        seen = seen or {}
        seen[id] = true
        new_ids[#new_ids + 1] = id
      end
      applied = applied + 1
      results[#results + 1] = 'a'
      ne = ne + 1
      evs[ne] = {et, sku, eq, ex, v}
    end
  end
end

if fresh and applied == 0 then return {'ok', results, v, -1, ''} end
if #new_ids > 0 or #new_marks > 0 then
  push_ids(new_ids)
  set_marks(new_marks, now)
  o = true
end
-- One write of the main hash: the changed lines and meta fields.
local w, k, del = {false, false, false, false, false, false, false, false, false, false, false, false}, 0, gone or {}
for sku, value in pairs(lines) do
  if value then w[k + 1], w[k + 2], k = sku, value, k + 2 else del[#del + 1] = sku end
end
if fresh or v ~= v0 then w[k + 1], w[k + 2], w[k + 3], w[k + 4], k = '#v', v, '#u', u, k + 4 end
if fresh or n ~= n0 then w[k + 1], w[k + 2], k = '#n', n, k + 2 end
if fresh or l ~= l0 then w[k + 1], w[k + 2], k = '#l', l, k + 2 end
if fresh or ss ~= ss0 then w[k + 1], w[k + 2], k = '#s', ss, k + 2 end
if fresh then w[k + 1], w[k + 2], w[k + 3], w[k + 4], k = '#c', c, '#i', inc, k + 4 end
if o and not o0 then w[k + 1], w[k + 2], k = '#o', '1', k + 2 end
if codes_changed then w[k + 1], w[k + 2], k = '#p', codes, k + 2 end
if ss > 0 then w[k + 1], w[k + 2], k = '#a', now, k + 2 end
-- A cart past a few dozen lines goes over to a hash table, where a field is found without a scan
-- (Redis keeps a small hash as a list it scans; a value longer than 64 bytes ends that).
if l > 24 and not m[9] then w[k + 1], w[k + 2], k = '#x', string.rep('-', 80), k + 2 end
for i = 1, #del, 1000 do redis.call('HDEL', main, unpack(del, i, math.min(i + 999, #del))) end
for i = 1, k, 1000 do redis.call('HSET', main, unpack(w, i, math.min(i + 999, k))) end
local long = cart_ttl
if ss > 0 and saved_ttl > long then long = saved_ttl end
redis.call('PEXPIRE', main, long)
if o then redis.call('PEXPIRE', KEYS[3], long) end
if ss > 0 then redis.call('PEXPIRE', KEYS[2], saved_ttl) end
if applied > 0 then
  local subject, user = ARGV[9], ARGV[10]
  if created then
    redis.call('XADD', KEYS[4], '*', 't', 'cart.created', 'j', subject, 'u', user, 'v', 0, 's', '', 'q', 0, 'x', '', 'm', now)
  end
  for k = 1, ne do
    local e = evs[k]
    local esku = e[2]
    if e[1] == 'cart.cleared' or e[1] == 'cart.promo_code_applied' or e[1] == 'cart.promo_code_removed' then esku = '' end
    redis.call('XADD', KEYS[4], '*', 't', e[1], 'j', subject, 'u', user, 'v', e[5], 's', esku, 'q', e[3], 'x', e[4], 'm', now)
  end
  if user ~= '' then redis.call('XADD', KEYS[5], '*', 'u', user) end
end
return {'ok', results, v, before, inc}
