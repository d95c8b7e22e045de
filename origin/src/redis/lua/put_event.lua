-- Creates or updates an event that has not started, and pre-warms its stock.
-- KEYS: 1 info hash, 2 stock.  ARGV: 1 now, 2 name, 3 stock, 4 starts, 5 ends,
-- 6 the event's room settings as JSON ('' for none: a spec replaces the event's, room too)
-- (the caller adds the event to the event index first: that key is in another slot)
local starts = redis.call('HGET', KEYS[1], 'starts_at')
if starts and tonumber(starts) <= tonumber(ARGV[1]) then return 'started' end
redis.call('HSET', KEYS[1], 'name', ARGV[2], 'stock_total', ARGV[3],
  'starts_at', ARGV[4], 'ends_at', ARGV[5])
if ARGV[6] == '' then
  redis.call('HDEL', KEYS[1], 'room')
else
  redis.call('HSET', KEYS[1], 'room', ARGV[6])
end
redis.call('SET', KEYS[2], ARGV[3])
if starts then return 'updated' end
return 'created'
