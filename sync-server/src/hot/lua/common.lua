-- Shared prelude of every cart script (prepended when the server loads them).
--
-- A cart is up to three keys with one hash tag (KEYS[1..3] of every script):
--   main  (hash)  one field per cart line, named by its SKU and valued
--                 "quantity|seq|added_at_ms|price_amount|price_currency" (the price parts empty
--                 when unknown), and the meta fields, named with a '#', which no SKU holds:
--                 #v version, #n next line sequence number, #c currency, #u updated at (ms),
--                 #a accessed at (ms), #l and #s the numbers of lines and saved lines, #o "1" once
--                 the op-id key exists, #i the incarnation (when this life of the cart began:
--                 created or restored), #x, a long filler put in once a cart passes 24 lines, which
--                 makes Redis keep the hash as a hash table (a field found without a scan) rather
--                 than as a small list it scans, whatever hash-max-listpack-* say, and #z, the
--                 freeze field: set on a guest cart that a login merged into a user's cart, to
--                 that user's id (such a cart takes no more ops), #p, the promo codes on the
--                 cart, comma-separated, at most five, and #g, on a user cart, the generation of
--                 the data it was last restored or checked against the durable store in (see
--                 verify.lua);
--   saved (hash)  the save-for-later list, one field per SKU, valued as the lines are;
--   ops   (hash)  what the cart remembers of the ops it applied, bounded as shared::Applied:
--                 each recent op id valued by its position, "#q<n>" the id at position n, "#t"
--                 the next position and "#h" the oldest kept (at most 1,000 ids), "#c<client>"
--                 a numbering client's mark "seq|last ms", "#k" the number of clients (at
--                 most 64). Neither op ids nor client ids hold a '#'.
-- Expiry is Redis's own: every access renews the TTLs (main and ops: the cart's expiry, or the
-- saved list's while that is longer and the list is not empty; saved: the saved list's). Only
-- while a saved list keeps a cart alive past its lines' expiry are the lines expired by the data
-- (#a), and a saved list that Redis expired is noticed by its count (#s); their going counts as a
-- change, as in shared::Cart::touch.
--
-- Every op touches only the fields it changes, and the main hash is written once per call;
-- nothing loops over a cart's lines except `clear`, an expiry, a merge and a freeze, which are
-- rare. The scripts return what the server needs; the server reads the cart itself (HGETALL,
-- pipelined after the script) and renders it with `shared`. A property test holds them to
-- shared::Cart::{apply, touch, freeze} and shared::merge.

local function fmt(n) return string.format('%d', n) end

-- Calls `cmd key ...items` in chunks that stay far below Lua's argument limit.
local function chunked(cmd, key, items, step)
  for i = 1, #items, step do redis.call(cmd, key, unpack(items, i, math.min(i + step - 1, #items))) end
end

local function decode(s)
  local q, seq, added, amt, cur = string.match(s, '^(%d+)|(%d+)|(%-?%d+)|(%d*)|(%u*)$')
  return {q = tonumber(q), seq = seq, added = added, amt = amt, cur = cur}
end

local function encode(l)
  return fmt(l.q) .. '|' .. l.seq .. '|' .. l.added .. '|' .. l.amt .. '|' .. l.cur
end

-- Reads a cart's meta fields. Returns the state and whether the cart existed.
local function load_meta(currency)
  local m = redis.call('HMGET', KEYS[1], '#v', '#n', '#l', '#s', '#z', '#c', '#a', '#u', '#o', '#p')
  local s = {v = tonumber(m[1]) or 0, n = tonumber(m[2]) or 0, l = tonumber(m[3]) or 0, s = tonumber(m[4]) or 0,
             z = m[5] or nil, c = m[6] or currency, a = tonumber(m[7]) or 0, u = m[8] or '0', o = m[9] == '1',
             p = m[10] or '', set = {}, del = {}, fresh = m[1] == false}
  s.n0, s.l0, s.s0, s.z0, s.o0, s.p0 = s.n, s.l, s.s, s.z, s.o, s.p
  return s, m[1] ~= false
end

-- The cart's lines as field/value pairs of the main hash (its meta fields left out).
local function line_items()
  local out, all = {}, redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    if string.byte(all[i]) ~= 35 then out[#out + 1] = all[i]; out[#out + 1] = all[i + 1] end
  end
  return out
end

-- Empties the cart's lines (not its meta): O(lines), for clear, expiry and freeze.
local function drop_lines(s)
  local items = line_items()
  s.set = {}
  for i = 1, #items, 2 do s.del[#s.del + 1] = items[i] end
  s.l = 0
end

-- Lines a saved list kept alive past their expiry, and a saved list Redis expired: gone, and a
-- change.
local function notice_expired(s, now, cart_ttl)
  if s.s == 0 then return end
  local dropped = false
  if s.l > 0 and s.a + cart_ttl < tonumber(now) then drop_lines(s); dropped = true end
  if redis.call('EXISTS', KEYS[2]) == 0 then s.s = 0; dropped = true end
  if dropped then s.v = s.v + 1; s.u = now end
end

-- A line of the main hash, as this call left it so far.
local function get_line(s, sku)
  local v = s.set[sku]
  if v ~= nil then return v end
  for _, d in ipairs(s.del) do if d == sku then return nil end end
  return redis.call('HGET', KEYS[1], sku)
end

local function put_line(s, sku, value)
  s.set[sku] = value
end

local function del_line(s, sku)
  s.set[sku] = nil
  s.del[#s.del + 1] = sku
end

-- Writes the main hash once (the changed lines and the meta) and renews every key's TTL.
local function save(s, now, cart_ttl, saved_ttl)
  if #s.del > 0 then chunked('HDEL', KEYS[1], s.del, 1000) end
  local w = {'#v', s.v, '#u', s.u, '#a', now}
  local function put(k, v) w[#w + 1] = k; w[#w + 1] = v end
  for k, v in pairs(s.set) do put(k, v) end
  if s.fresh then put('#c', s.c); put('#i', now) end
  if s.fresh or s.n ~= s.n0 then put('#n', s.n) end
  if s.fresh or s.l ~= s.l0 then put('#l', s.l) end
  if s.fresh or s.s ~= s.s0 then put('#s', s.s) end
  if s.z and s.z ~= s.z0 then put('#z', s.z) end
  if s.o and not s.o0 then put('#o', '1') end
  if s.p ~= s.p0 then put('#p', s.p) end
  chunked('HSET', KEYS[1], w, 1000)
  local long = cart_ttl
  if s.s > 0 and saved_ttl > long then long = saved_ttl end
  redis.call('PEXPIRE', KEYS[1], long)
  if s.o then redis.call('PEXPIRE', KEYS[3], long) end
  if s.s > 0 then redis.call('PEXPIRE', KEYS[2], saved_ttl) end
end

