-- Pauses (ARGV 1 = 1) or resumes (0) an event's sale; its window, stock and orders stay.
-- KEYS: 1 info hash.  Returns 'unknown' or 'ok'.
if redis.call('EXISTS', KEYS[1]) == 0 then return 'unknown' end
redis.call('HSET', KEYS[1], 'paused', ARGV[1])
return 'ok'
