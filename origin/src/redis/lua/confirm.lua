-- Marks a queued order confirmed once it is in the orders table. Idempotent.
-- KEYS: 1 status, 2 stats.  ARGV: 1 user, 2 order id
if redis.call('HGET', KEYS[1], ARGV[1]) == 'queued:' .. ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], 'confirmed:' .. ARGV[2])
  redis.call('HINCRBY', KEYS[2], 'confirmed', 1)
  return 1
end
return 0
