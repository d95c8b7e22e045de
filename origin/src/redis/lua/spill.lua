-- One spilled order at one stock bucket (core::stock_buckets::at_bucket): the bucket
-- decides once per order and keeps the decision, so a repeated or late call gets the same
-- answer and an order never takes a second unit. A spill call takes a unit while the
-- bucket has one; a fence call (resolving a claim past its deadline) only closes the
-- bucket to the order.
-- KEYS: 1 stock, 2 units given back (list), 3 outbox stream, 4 stats hash,
--       5 decisions (order id -> unit number or 'passed')
-- ARGV: 1 order id, 2 user, 3 now (ms), 4 the unit number before the bucket's first,
--       5 'spill' or 'fence', 6 room position ('' for none),
--       7 the call's deadline (ms, Redis's clock; as in reserve.lua),
--       8 client network ('' for none)
-- Returns the unit number the order holds here, 'passed', or 'late' (nothing changed).
local clock = redis.call('TIME')
if tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000) > tonumber(ARGV[7]) then
  return 'late'
end
local decided = redis.call('HGET', KEYS[5], ARGV[1])
if decided then return decided end
local stock = tonumber(redis.call('GET', KEYS[1])) or 0
if ARGV[5] ~= 'spill' or stock <= 0 then
  redis.call('HSET', KEYS[5], ARGV[1], 'passed')
  return 'passed'
end
-- As reserve.lua: a unit given back first, else the highest never sold.
local unit = stock + tonumber(ARGV[4])
if redis.call('LLEN', KEYS[2]) > 0 then unit = tonumber(redis.call('RPOP', KEYS[2])) end
redis.call('DECR', KEYS[1])
-- The outbox entry as reserve.lua writes it.
redis.call('XADD', KEYS[3], '*', 'o',
  ARGV[1] .. '|' .. ARGV[2] .. '|' .. ARGV[3] .. '|' .. unit .. '|' .. ARGV[6] .. '|' .. ARGV[8])
redis.call('HINCRBY', KEYS[4], 'reserved', 1)
redis.call('HSET', KEYS[5], ARGV[1], unit)
return tostring(unit)
