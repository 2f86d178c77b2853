-- Shared prelude of every cart script (prepended when the server loads them).
--
-- A cart is four keys with one hash tag (KEYS[1..4] of every script):
--   meta   (hash)  v version, n next line sequence number, c currency, u updated at (ms),
--                  nl / ns how many lines the cart / saved list held at the last write, and
--                  z, the freeze field: set on a guest cart that a login merged into a user's
--                  cart, to that user's id (such a cart takes no more ops);
--   lines  (hash)  one field per cart line, the SKU, valued "quantity|seq|added_at_ms|price_amount|price_currency"
--                  (the price parts empty when unknown);
--   saved  (hash)  the save-for-later list, the same way;
--   ops    (hash)  the ids of the ops the cart applied (valued "1").
-- Expiry is Redis's own: every access renews the TTLs (lines: the cart's expiry; saved: the saved
-- list's; meta and ops: the longer of the two while the saved list is not empty). Lines or a saved
-- list that Redis expired while the cart lived on are noticed by their count in meta (nl, ns), and
-- their going counts as a change, as in shared::Cart::touch.
--
-- Every op touches only the fields it changes; nothing here loops over a cart's lines except a
-- merge and a freeze, which are rare. The scripts return what the server needs, and the server
-- reads the cart itself (HGETALL, pipelined after the script) and renders it with `shared`.
-- A property test holds them to shared::Cart::{apply, touch, freeze} and shared::merge.

local function fmt(n) return string.format('%d', n) end

local function decode(s)
  local q, seq, added, amt, cur = string.match(s, '^(%d+)|(%d+)|(%-?%d+)|(%d*)|(%u*)$')
  return {q = tonumber(q), seq = seq, added = added, amt = amt, cur = cur}
end

local function encode(l)
  return fmt(l.q) .. '|' .. l.seq .. '|' .. l.added .. '|' .. l.amt .. '|' .. l.cur
end

-- Reads a cart's meta fields and notices lists Redis expired. Returns the state and whether the
-- cart existed.
local function load_meta(currency)
  local m = redis.call('HMGET', KEYS[1], 'v', 'n', 'nl', 'ns', 'z', 'c', 'u')
  local s = {v = tonumber(m[1]) or 0, n = tonumber(m[2]) or 0, nl = tonumber(m[3]) or 0, ns = tonumber(m[4]) or 0,
             z = m[5] or nil, c = m[6] or currency, u = m[7] or '0', dirty = false}
  return s, m[1] ~= false
end

-- Lines or a saved list that expired while the cart lived on: gone, and a change.
local function notice_expired(s, now)
  local dropped = false
  if s.nl > 0 and redis.call('EXISTS', KEYS[2]) == 0 then s.nl = 0; dropped = true end
  if s.ns > 0 and redis.call('EXISTS', KEYS[3]) == 0 then s.ns = 0; dropped = true end
  if dropped then s.v = s.v + 1; s.u = now end
end

-- Writes the meta fields and renews every key's TTL.
local function save_meta(s, cart_ttl, saved_ttl)
  if s.z then
    redis.call('HSET', KEYS[1], 'v', s.v, 'n', s.n, 'nl', s.nl, 'ns', s.ns, 'c', s.c, 'u', s.u, 'z', s.z)
  else
    redis.call('HSET', KEYS[1], 'v', s.v, 'n', s.n, 'nl', s.nl, 'ns', s.ns, 'c', s.c, 'u', s.u)
  end
  local long = cart_ttl
  if s.ns > 0 and saved_ttl > long then long = saved_ttl end
  redis.call('PEXPIRE', KEYS[1], long)
  redis.call('PEXPIRE', KEYS[4], long)
  if s.nl > 0 then redis.call('PEXPIRE', KEYS[2], cart_ttl) end
  if s.ns > 0 then redis.call('PEXPIRE', KEYS[3], saved_ttl) end
end
