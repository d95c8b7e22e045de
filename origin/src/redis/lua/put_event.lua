-- Creates or updates an event that has not started, and pre-warms its stock.
-- KEYS: 1 info hash, 2 stock.  ARGV: 1 now, 2 name, 3 stock, 4 starts, 5 ends,
-- 6 the event's room settings as JSON ('' for none: a spec replaces the event's, room too),
-- 7 its stock buckets (1: the stock key holds the stock; more: the caller splits it into
-- the buckets' own keys, which are in other slots, and the event's stock key goes)
-- (the caller adds the event to the event index first: that key is in another slot)
local starts = redis.call('HGET', KEYS[1], 'starts_at')
if starts and tonumber(starts) <= tonumber(ARGV[1]) then return 'started' end
redis.call('HSET', KEYS[1], 'name', ARGV[2], 'stock_total', ARGV[3],
  'starts_at', ARGV[4], 'ends_at', ARGV[5], 'stock_buckets', ARGV[7])
if ARGV[6] == '' then
  redis.call('HDEL', KEYS[1], 'room')
else
  redis.call('HSET', KEYS[1], 'room', ARGV[6])
end
if ARGV[7] == '1' then
  redis.call('SET', KEYS[2], ARGV[3])
else
  redis.call('DEL', KEYS[2])
end
if starts then return 'updated' end
return 'created'
