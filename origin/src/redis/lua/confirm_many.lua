-- Marks many queued orders of one event confirmed (a consumer batch). Idempotent.
-- KEYS: 1 status, 2 stats.  ARGV: user1, order1, user2, order2, ...
local changed = 0
for i = 1, #ARGV, 2 do
  local user, order = ARGV[i], ARGV[i + 1]
  if redis.call('HGET', KEYS[1], user) == 'queued:' .. order then
    redis.call('HSET', KEYS[1], user, 'confirmed:' .. order)
    changed = changed + 1
  end
end
if changed > 0 then redis.call('HINCRBY', KEYS[2], 'confirmed', changed) end
return changed
