-- Settles a claim at the user's home stock bucket (core::stock_buckets::settle): the
-- claim on the order becomes the order if a bucket gave it a unit, or is dropped. Any
-- other mark stays (the consumer's confirmation, or a resolution, settled it first).
-- KEYS: 1 orders (user -> order id or claim), 2 status (user -> status:order id)
-- ARGV: 1 user, 2 order id, 3 '1' when a bucket gave the order a unit, else '0'
-- Returns 'settled', 'dropped' or 'other'.
local mark = redis.call('HGET', KEYS[1], ARGV[1])
local claim = 'claim:' .. ARGV[2] .. ':'
if not mark or string.sub(mark, 1, #claim) ~= claim then return 'other' end
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('HSET', KEYS[2], ARGV[1], 'queued:' .. ARGV[2])
  return 'settled'
end
redis.call('HDEL', KEYS[1], ARGV[1])
return 'dropped'
