-- acquire_window.lua: take one call from an exact sliding-window limit (a log of the last grants).
--
-- Call: EVALSHA sha 1 log  limit window_ms burst
-- KEYS[1] log        list  grant times in ms, newest first, at most ``limit`` long
-- ARGV[1] limit      at most this many grants in any window (N of the rule N/W)
-- ARGV[2] window_ms  the window W, already widened by the caller's safety margin
-- ARGV[3] burst      grants that may go back to back; the burst-th newest grant must be at least
--                    burst * window_ms / limit old (burst = limit: no pacing, the window alone)
-- Returns {1, 0, now_ms} when granted (now_ms: the grant's server time), {0, wait_ms, now_ms}
-- when the caller must wait wait_ms and ask again.
-- The log holds exactly the grants that could still matter, so ANY window of window_ms contains at
-- most ``limit`` grants: the (limit)-th newest grant must be older than window_ms before another.
-- Time is the Redis server clock (one clock for every worker on every machine), in milliseconds.

local limit = tonumber(ARGV[1])
local window_ms = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local wait_ms = 0
local oldest = redis.call('LINDEX', KEYS[1], limit - 1)
if oldest then
  wait_ms = math.max(wait_ms, tonumber(oldest) + window_ms - now_ms)
end
if burst < limit then
  local pace_ref = redis.call('LINDEX', KEYS[1], burst - 1)
  if pace_ref then
    local spacing_ms = math.ceil(burst * window_ms / limit)
    wait_ms = math.max(wait_ms, tonumber(pace_ref) + spacing_ms - now_ms)
  end
end
if wait_ms > 0 then return {0, wait_ms, now_ms} end

redis.call('LPUSH', KEYS[1], now_ms)
redis.call('LTRIM', KEYS[1], 0, limit - 1)
redis.call('PEXPIRE', KEYS[1], window_ms * 2)
return {1, 0, now_ms}
