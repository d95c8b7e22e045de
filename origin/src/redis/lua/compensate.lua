-- An order that could not be created: mark it failed, clear the user's purchase mark and
-- give its unit back. Exactly once per order id, however often it is called.
-- An order already confirmed (a row of record: confirmations follow the database commit)
-- is never compensated: giving its unit back would sell it twice.
-- The unit goes back (to the stock counter, and its number to the units given back, taken
-- first by reserve.lua) only when the database does not hold it for another order
-- (ARGV 5, core::fence) and this Redis counted it: the user's mark is this order. After a
-- failover Redis may not know the order (the promoted replica missed it): its unit was
-- never taken from this stock.
-- A buyer who holds another order in the database (ARGV 6, '' for none) is shown that
-- one, it is theirs whatever this Redis lost, unless another order of theirs is pending
-- here (its own settlement shows it then).
-- The order's try counts in the user's per-user window (a reserving try is not counted by
-- reserve.lua, as the order answers the buyer's retries), so a buyer whose orders keep
-- failing (a blocked one) reserves at most once per window.
-- KEYS: 1 stock, 2 orders, 3 status, 4 stats, 5 compensated set, 6 the user's window,
--       7 units given back
-- ARGV: 1 user, 2 order id, 3 window (ms), 4 unit number ('' for none), 5 give back (1/0),
--       6 the buyer's order in the database ('' for none)
local status = redis.call('HGET', KEYS[3], ARGV[1])
if status == 'confirmed:' .. ARGV[2] then return 0 end
if redis.call('SADD', KEYS[5], ARGV[2]) == 0 then return 0 end
-- A claim on the order (core::stock_buckets: a purchase that spilled and has not settled)
-- counts as the user's mark too.
local mark = redis.call('HGET', KEYS[2], ARGV[1])
local claim = 'claim:' .. ARGV[2] .. ':'
local known = mark == ARGV[2] or (mark ~= false and string.sub(mark, 1, #claim) == claim)
if known then
  redis.call('HDEL', KEYS[2], ARGV[1])
end
if status == 'queued:' .. ARGV[2] then
  redis.call('HSET', KEYS[3], ARGV[1], 'failed:' .. ARGV[2])
end
redis.call('HINCRBY', KEYS[4], 'failed', 1)
-- An order without a unit number (from before unit numbers, or published again by
-- reconcile) gives nothing back: the counter without the number would hand out a unit
-- already sold. The unit stays unsold (an undersell that reconcile reports).
if known and ARGV[5] == '1' and ARGV[4] ~= '' then
  redis.call('INCR', KEYS[1])
  redis.call('RPUSH', KEYS[7], ARGV[4])
  redis.call('HINCRBY', KEYS[4], 'compensated', 1)
end
if ARGV[6] ~= '' and (known or not status) then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[6])
  redis.call('HSET', KEYS[3], ARGV[1], 'confirmed:' .. ARGV[6])
end
if not redis.call('SET', KEYS[6], '1', 'NX', 'PX', ARGV[3]) then
  redis.call('INCR', KEYS[6])
end
return 1
