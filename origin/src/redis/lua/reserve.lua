-- Purchase attempts for one event, each atomically and all in one call: replay guard,
-- one order per user (a holder's retry is not counted by the window), per-user window,
-- stock, outbox. A crash cannot leave half of one.
-- The origin coalesces the attempts that arrive while a call is in flight into the next
-- call (see serve/reserver.rs); one attempt is a batch of one.
-- KEYS: 1 stock, 2 orders (user -> order id), 3 status (user -> "status:order id"),
--       4 outbox stream, 5 stats hash, 6 units given back (list), then per attempt i
--       (from 0): 7+2i the user's window counter, 8+2i the set of the edge signatures
--       signed in the attempt's time slice (its name ends with the slice's end, unix ms)
-- ARGV: 1 now (ms), 2 window (ms), 3 limit per window, 4 event id,
--       5 how long a signature is remembered (ms), 6 the call's deadline (ms, Redis's clock),
--       7 the unit number before the stock's first (0; a stock bucket's range start - 1),
--       8 a claim's deadline (ms; '' for an event of one bucket),
--       then per attempt i: 9+5i user, 10+5i new order id, 11+5i room position ('' for
--       none), 12+5i client network ('' for none), 13+5i the edge signature
-- Returns per attempt two values: the verdict and its detail
--   reserved <order id> | already_purchased <order id> | sold_out <buyers' version> |
--   rate_limited <ms until the window opens> | replayed '' | no_event '' | late '' |
--   and at a user's home stock bucket (core::stock_buckets): claimed <order id> (the
--   bucket is empty: a claim on the new order, to spill) | in_flight <order id> (a claim
--   before its deadline) | resolve <order id> (a claim past it)
--
-- Each reservation takes a unit number (core::fence): a unit given back first, else the
-- highest never sold, which is the stock counter itself (stock = never sold + given back).
-- It goes with the order to the orders table, whose unique key on (event, unit) refuses a
-- unit sold twice after a failover.
--
-- A call that runs after its deadline changes nothing and answers late to every attempt:
-- the origin stops waiting for an answer soon after the deadline and tells the shoppers
-- 503, so a reservation made later (Redis frozen, or a network that held the call back)
-- would be one they were told did not happen.
--
-- The buyers' version ("reservations made:buyers holding an order") changes whenever the
-- set of buyers does (a new order adds to both, a compensation takes one from the second):
-- the origin keeps a sold-out event's buyers in memory only while it is the same.
--
-- The call is atomic, so what every attempt needs to see is kept in Lua (stock left, the
-- orders of this call) and the writes common to all attempts are made once, at the end:
-- per attempt only the signature, the window and the order lookup. The call's
-- reservations share one outbox entry, a line each: the relay reads, acknowledges and
-- deletes an entry per call, not per reservation.
-- (Reading a call's orders and windows with one command each costs Redis less in calls
-- of 64 attempts but more in calls of one, and under load most calls carry one:
-- `./dev bench script`.)
--
-- The replay guard keeps the signatures by the time they were signed at, a set per slice
-- (redis/keys.rs): a replay carries the same time, so it meets its set, and a set expires
-- as a whole once no signature in it can pass the origin's time check, not a key with
-- an expiry per attempt.
--
-- An attempt that reserves reads its window but does not count in it: the buyer's
-- order answers their retries (already_purchased comes before the window), so the count
-- would not be read while the order stands, and should the order be given back,
-- compensate.lua counts the try then. That spares Redis a key with an expiry per
-- reservation (its write, its expiry, and both in the AOF: about 9 % of Redis's
-- instructions per single-attempt call, `./dev bench script`). Counted are the tries that
-- found no stock or no event; one refused by a full window adds nothing to it.
local out = {}
local n = (#ARGV - 8) / 5
local first = tonumber(ARGV[7])
local now = tonumber(ARGV[1])
local clock = redis.call('TIME')
if tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000) > tonumber(ARGV[6]) then
  for _ = 1, n do
    out[#out + 1] = 'late'
    out[#out + 1] = ''
  end
  return out
end
local stock = tonumber(redis.call('GET', KEYS[1]))
local limit = tonumber(ARGV[3])
local taken = 0
local back = 0
if stock and stock > 0 then back = redis.call('LLEN', KEYS[6]) end
local orders, statuses, lines, mine = {}, {}, {}, {}
local buyers_version = nil
-- Remembers the signature in its slice's set; false for a replay. The set holds an empty
-- member too (never a signature): added with the first signature, it tells that the set
-- is new and needs its expiry, without a command more on every call. The set is kept for
-- the replay window past the slice's end: until then an origin may still accept a
-- signature of the slice.
local function remember(slice, signature)
  local added = redis.call('SADD', slice, signature, '')
  if added == 2 then
    local finish = tonumber(string.match(slice, '(%d+)$'))
    redis.call('PEXPIRE', slice, math.max(finish - now, 0) + tonumber(ARGV[5]))
  end
  return added > 0
end
-- The user's counted tries in the current window (an attempt that reserves is not
-- counted, see above).
local function window_tries(window)
  return tonumber(redis.call('GET', window)) or 0
end
-- Counts a try that reserved nothing in the user's window.
local function count_try(window)
  if not redis.call('SET', window, '1', 'NX', 'PX', ARGV[2]) then
    redis.call('INCR', window)
  end
end
-- Ms until the user's full window opens again.
local function window_wait(window)
  local ttl = redis.call('PTTL', window)
  if ttl < 0 then
    redis.call('PEXPIRE', window, ARGV[2])
    ttl = tonumber(ARGV[2])
  end
  return ttl
end
for i = 0, n - 1 do
  local window, slice = KEYS[7 + 2 * i], KEYS[8 + 2 * i]
  local user, order, position = ARGV[9 + 5 * i], ARGV[10 + 5 * i], ARGV[11 + 5 * i]
  local net, signature = ARGV[12 + 5 * i], ARGV[13 + 5 * i]
  local verdict, detail = nil, ''
  if not remember(slice, signature) then
    verdict = 'replayed'
  else
    -- A buyer who already holds an order gets it back without counting in the window:
    -- a retry answers already_purchased, not 429.
    local existing = mine[user] or redis.call('HGET', KEYS[2], user)
    local claimed, deadline = nil, nil
    if existing and string.sub(existing, 1, 6) == 'claim:' then
      claimed, deadline = string.match(existing, '^claim:(.*):(%d+)$')
    end
    if claimed then
      verdict, detail = 'in_flight', claimed
      if now >= tonumber(deadline) then verdict = 'resolve' end
    elseif existing then
      verdict, detail = 'already_purchased', existing
    elseif window_tries(window) >= limit then
      verdict, detail = 'rate_limited', tostring(window_wait(window))
    elseif stock == nil then
      count_try(window)
      verdict = 'no_event'
    elseif stock <= 0 and ARGV[8] ~= '' then
      -- The home bucket is empty: the claim holds the user's place while the purchase
      -- tries the other buckets (lua/spill.lua), and is settled by lua/settle.lua.
      local claim = 'claim:' .. order .. ':' .. ARGV[8]
      redis.call('HSET', KEYS[2], user, claim)
      mine[user] = claim
      verdict, detail = 'claimed', order
    elseif stock <= 0 then
      count_try(window)
      verdict = 'sold_out'
      -- This call's own orders are written at the end: counted here already. Once sold
      -- out, no later attempt of the call reserves: the same for all of them.
      buyers_version = buyers_version or
        (tonumber(redis.call('HGET', KEYS[5], 'reserved')) or 0) + taken .. ':' ..
        redis.call('HLEN', KEYS[2]) + taken
      detail = buyers_version
    else
      local unit
      if back > 0 then
        unit = redis.call('RPOP', KEYS[6])
        back = back - 1
      else
        -- '%d': Lua's own number to text is a float's, several times the work.
        unit = string.format('%d', stock + first)
      end
      stock = stock - 1
      taken = taken + 1
      mine[user] = order
      orders[#orders + 1] = user
      orders[#orders + 1] = order
      statuses[#statuses + 1] = user
      statuses[#statuses + 1] = 'queued:' .. order
      -- A line of the call's outbox entry, as the relay reads it (serve/relay.rs): the
      -- order, what the edge vouched for with it, and no event id (the outbox is the
      -- event's own).
      lines[#lines + 1] =
        order .. '|' .. user .. '|' .. ARGV[1] .. '|' .. unit .. '|' .. position .. '|' .. net
      verdict, detail = 'reserved', order
    end
  end
  out[#out + 1] = verdict
  out[#out + 1] = detail
end
if taken > 0 then
  redis.call('DECRBY', KEYS[1], taken)
  redis.call('HSET', KEYS[2], unpack(orders))
  redis.call('HSET', KEYS[3], unpack(statuses))
  redis.call('HINCRBY', KEYS[5], 'reserved', taken)
  redis.call('XADD', KEYS[4], '*', 'o', table.concat(lines, '\n'))
end
return out
