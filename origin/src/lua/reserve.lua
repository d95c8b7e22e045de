-- One purchase attempt, atomically: replay guard, per-user window, one order per user,
-- stock, outbox. A crash cannot leave half of it.
-- KEYS: 1 stock, 2 orders (user -> order id), 3 status (user -> "status:order id"),
--       4 outbox stream, 5 stats hash, 6 per-user window counter, 7 edge signature seen
-- ARGV: 1 user, 2 new order id, 3 now (ms), 4 window (ms), 5 limit per window, 6 event id,
--       7 how long a signature is remembered (ms)
if not redis.call('SET', KEYS[7], '1', 'NX', 'PX', ARGV[7]) then
  return {'replayed', ''}
end
local n = redis.call('INCR', KEYS[6])
if n == 1 then redis.call('PEXPIRE', KEYS[6], ARGV[4]) end
if n > tonumber(ARGV[5]) then
  local ttl = redis.call('PTTL', KEYS[6])
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[6], ARGV[4])
    ttl = tonumber(ARGV[4])
  end
  return {'rate_limited', tostring(ttl)}
end
local existing = redis.call('HGET', KEYS[2], ARGV[1])
if existing then return {'already_purchased', existing} end
local stock = tonumber(redis.call('GET', KEYS[1]))
if stock == nil then return {'no_event', ''} end
if stock <= 0 then return {'sold_out', ''} end
local left = redis.call('DECR', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], 'queued:' .. ARGV[2])
redis.call('HINCRBY', KEYS[5], 'reserved', 1)
redis.call('XADD', KEYS[4], '*', 'order_id', ARGV[2], 'event_id', ARGV[6],
  'user_id', ARGV[1], 'reserved_at', ARGV[3])
return {'reserved', ARGV[2], tostring(left)}
