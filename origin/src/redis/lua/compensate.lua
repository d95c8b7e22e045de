-- An order that could not be created: mark it failed, give its unit back and clear the
-- user's purchase mark. Exactly once per order id, however often it is called.
-- An order already confirmed (a row of record: confirmations follow the database commit)
-- is never compensated: giving its unit back would sell it twice.
-- The order's try counts in the user's per-user window once its unit is given back (a
-- reserving try is not counted by reserve.lua, as the order answers the buyer's retries),
-- so a buyer whose orders keep failing (a blocked one) reserves at most once per window.
-- KEYS: 1 stock, 2 orders, 3 status, 4 stats, 5 compensated set, 6 the user's window
-- ARGV: 1 user, 2 order id, 3 window (ms)
local status = redis.call('HGET', KEYS[3], ARGV[1])
if status == 'confirmed:' .. ARGV[2] then return 0 end
if redis.call('SADD', KEYS[5], ARGV[2]) == 0 then return 0 end
redis.call('INCR', KEYS[1])
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[2], ARGV[1])
end
if status == 'queued:' .. ARGV[2] then
  redis.call('HSET', KEYS[3], ARGV[1], 'failed:' .. ARGV[2])
end
redis.call('HINCRBY', KEYS[4], 'failed', 1)
redis.call('HINCRBY', KEYS[4], 'compensated', 1)
if not redis.call('SET', KEYS[6], '1', 'NX', 'PX', ARGV[3]) then
  redis.call('INCR', KEYS[6])
end
return 1
