-- Ends a live event now (its sale window closes; stock and orders stay as they are).
-- KEYS: 1 info hash.  ARGV: 1 now.
-- Returns 'unknown', 'upcoming' (not started: edit it instead), 'ended' (already), or 'ended_now'.
local starts = redis.call('HGET', KEYS[1], 'starts_at')
if not starts then return 'unknown' end
local now = tonumber(ARGV[1])
if tonumber(starts) > now then return 'upcoming' end
if tonumber(redis.call('HGET', KEYS[1], 'ends_at')) <= now then return 'ended' end
redis.call('HSET', KEYS[1], 'ends_at', ARGV[1])
return 'ended_now'
