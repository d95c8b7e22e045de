-- Marks many queued orders of one event confirmed (a consumer batch). Idempotent.
-- An order of a buyer this Redis has no status for (a failover lost it: the promoted
-- replica missed the reservation) is written confirmed and held for its buyer again, so
-- their lookup and their retries find it.
-- KEYS: 1 status, 2 stats, 3 orders.  ARGV: user1, order1, user2, order2, ...
local changed = 0
for i = 1, #ARGV, 2 do
  local user, order = ARGV[i], ARGV[i + 1]
  local status = redis.call('HGET', KEYS[1], user)
  if status == 'queued:' .. order then
    redis.call('HSET', KEYS[1], user, 'confirmed:' .. order)
    changed = changed + 1
  elseif not status or string.sub(redis.call('HGET', KEYS[3], user) or '', 1, 7 + #order)
      == 'claim:' .. order .. ':' then
    -- Also a spilled order whose claim has not settled yet (core::stock_buckets::confirm).
    redis.call('HSET', KEYS[1], user, 'confirmed:' .. order)
    redis.call('HSET', KEYS[3], user, order)
  end
end
if changed > 0 then redis.call('HINCRBY', KEYS[2], 'confirmed', changed) end
return changed
