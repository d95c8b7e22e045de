-- Gives a failed spilled order's unit back to the stock bucket that gave it (its range
-- holds the unit, core::stock_buckets::bucket_of), once per order: only the unit this
-- bucket's decision names for the order. The order itself is failed at the user's home
-- bucket (compensate.lua, which gives nothing back for it there).
-- KEYS: 1 stock, 2 units given back (list), 3 stats, 4 compensated set, 5 decisions
-- ARGV: 1 order id, 2 unit number
-- Returns 1 when the unit went back, else 0.
if redis.call('HGET', KEYS[5], ARGV[1]) ~= ARGV[2] then return 0 end
if redis.call('SADD', KEYS[4], ARGV[1]) == 0 then return 0 end
redis.call('INCR', KEYS[1])
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('HINCRBY', KEYS[3], 'compensated', 1)
return 1
