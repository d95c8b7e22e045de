-- Acknowledges and deletes outbox entries the broker holds (serve/relay.rs), and counts
-- their reservations in the stats' `relayed`: the outbox's backlog in reservations is
-- `reserved - relayed` (an entry holds a reserve call's reservations, a line each).
-- An entry already deleted (sent twice: claimed from a relay that stalled) counts once.
-- Once the outbox is empty, `relayed` is set to `reserved`, which also starts the count
-- for an event whose entries an earlier version relayed without counting them.
-- KEYS: 1 outbox, 2 stats.  ARGV: 1 consumer group, then per entry: its id, its reservations
local ids = {}
for i = 2, #ARGV, 2 do ids[#ids + 1] = ARGV[i] end
redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
local relayed = 0
for i = 2, #ARGV, 2 do
  if redis.call('XDEL', KEYS[1], ARGV[i]) == 1 then relayed = relayed + tonumber(ARGV[i + 1]) end
end
if redis.call('XLEN', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[2], 'relayed', redis.call('HGET', KEYS[2], 'reserved') or 0)
elseif relayed > 0 then
  redis.call('HINCRBY', KEYS[2], 'relayed', relayed)
end
return relayed
