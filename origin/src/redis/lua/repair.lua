-- Restores an event's Redis view from the orders table (`flashgate reconcile --repair`).
-- Each buyer of a row holds it again (unless another order of theirs is pending here:
-- its own settlement shows the row). With a restock, the units become the database's
-- free ones (core::fence::restock), but only if no reservation nor failure happened since
-- the caller read Redis (the reserved and failed counters are unchanged).
-- KEYS: 1 stock, 2 orders, 3 status, 4 stats, 5 units given back
-- ARGV: 1 the reserved counter read ('' for no restock), 2 the failed counter read,
--       3 never-sold units, 4 how many given back units follow, then those units, then
--       user, order pairs of the rows
-- Returns {buyers restored, 'restocked' | 'changed' | 'skipped'}
local given = tonumber(ARGV[4])
local restored = 0
for i = 5 + given, #ARGV, 2 do
  local user, order = ARGV[i], ARGV[i + 1]
  if redis.call('HGET', KEYS[2], user) ~= order then
    local status = redis.call('HGET', KEYS[3], user)
    if not (status and string.sub(status, 1, 7) == 'queued:') then
      redis.call('HSET', KEYS[2], user, order)
      redis.call('HSET', KEYS[3], user, 'confirmed:' .. order)
      restored = restored + 1
    end
  end
end
if ARGV[1] == '' then return {restored, 'skipped'} end
local reserved = redis.call('HGET', KEYS[4], 'reserved') or '0'
local failed = redis.call('HGET', KEYS[4], 'failed') or '0'
if reserved ~= ARGV[1] or failed ~= ARGV[2] then return {restored, 'changed'} end
redis.call('SET', KEYS[1], tonumber(ARGV[3]) + given)
redis.call('DEL', KEYS[5])
-- In slices: a Lua call takes a bounded number of arguments.
for first = 5, 4 + given, 1000 do
  redis.call('RPUSH', KEYS[5], unpack(ARGV, first, math.min(first + 999, 4 + given)))
end
return {restored, 'restocked'}
