-- Marks many queued orders of one event confirmed (a consumer batch). Idempotent.
-- An order of a buyer this Redis has no status for (a failover lost it: the promoted
-- replica missed the reservation) is written confirmed and held for its buyer again, so
-- their lookup and their retries find it.
-- KEYS: 1 status, 2 stats, 3 orders.  ARGV: user1, order1, user2, order2, ...
--
-- The statuses are read with one HMGET and written with one HSET per chunk, not a command
-- per order: a batch is hundreds of orders, and per command Redis pays the call from Lua
-- and, for a write, its own entry in the AOF (`./dev bench script`).
local CHUNK = 1000 -- under Lua's limit on the values one unpack() may pass
local n = #ARGV / 2
local users = {}
for i = 1, n do users[i] = ARGV[2 * i - 1] end
local statuses = {}
for s = 1, n, CHUNK do
  local part = redis.call('HMGET', KEYS[1], unpack(users, s, math.min(s + CHUNK - 1, n)))
  for j = 1, #part do statuses[s + j - 1] = part[j] end
end
-- What this call wrote, by user, read as Redis would read it had each order been written
-- at once: an order sent twice in a batch is counted once.
local written, held = {}, {}
local status_fields, order_fields = {}, {}
local changed = 0
for i = 1, n do
  local user, order = users[i], ARGV[2 * i]
  local status = written[user] or statuses[i]
  local confirmed = 'confirmed:' .. order
  if status == 'queued:' .. order then
    written[user] = confirmed
    status_fields[#status_fields + 1] = user
    status_fields[#status_fields + 1] = confirmed
    changed = changed + 1
  elseif not status or string.sub(held[user] or redis.call('HGET', KEYS[3], user) or '',
      1, 7 + #order) == 'claim:' .. order .. ':' then
    -- Also a spilled order whose claim has not settled yet (core::stock_buckets::confirm).
    written[user] = confirmed
    status_fields[#status_fields + 1] = user
    status_fields[#status_fields + 1] = confirmed
    held[user] = order
    order_fields[#order_fields + 1] = user
    order_fields[#order_fields + 1] = order
  end
end
local function hset_all(key, fields)
  for s = 1, #fields, 2 * CHUNK do
    redis.call('HSET', key, unpack(fields, s, math.min(s + 2 * CHUNK - 1, #fields)))
  end
end
hset_all(KEYS[1], status_fields)
hset_all(KEYS[3], order_fields)
if changed > 0 then redis.call('HINCRBY', KEYS[2], 'confirmed', changed) end
return changed
