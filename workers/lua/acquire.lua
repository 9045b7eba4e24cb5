-- acquire.lua: take one call from an account's bucket, through its gates, in one round trip.
--
-- Call: EVALSHA sha 2 log state  purpose limit window_ms burst respect_pause probe_lease_ms
--                                 send_bound_ms
-- KEYS[1] log    zset  grant id -> the latest time (ms) its request can have reached the
--                      provider: grant + send_bound_ms until report.lua lowers it to the
--                      answer's time; at most ``limit`` entries are kept
-- KEYS[2] state  hash  the account's shared limiter state (one hash tag with the logs):
--                      <purpose>:factor, <purpose>:cooldown_until, breaker, breaker:until,
--                      breaker:probe_until, pause, pause:auto, pause:probe_at, pause:probe_until
-- ARGV[1] purpose         "submit" or "poll"
-- ARGV[2] limit           N of the rule N/W (the configured ceiling)
-- ARGV[3] window_ms       W, already widened by the caller's safety margin
-- ARGV[4] burst           grants that may go back to back (pacing: burst * W / N_eff apart)
-- ARGV[5] respect_pause   "1": the credits/auth pause applies (submissions); "0": it does not
-- ARGV[6] probe_lease_ms  how long a half-open probe is exclusively held by its taker
-- ARGV[7] send_bound_ms   longest a granted request may take to reach the provider
-- Returns {granted 1|0, wait_ms, now_ms, kind, grant_id}. kind: "ok" | "probe" (breaker
-- half-open) | "pause_probe" when granted; "paused" | "breaker" | "cooldown" | "window" when
-- refused. The effective limit is floor(limit * factor) (AIMD, see report.lua), at least 1.
-- Exactness: a new grant waits until the N-th newest call's latest possible arrival is a whole
-- window old, so ANY window at the provider holds at most N arrivals, whatever the jitter
-- between grant and arrival (within send_bound_ms) and whatever the number of workers.
-- Time is the Redis server clock (one clock for every worker on every machine), in ms.

local purpose = ARGV[1]
local limit = tonumber(ARGV[2])
local window_ms = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])
local respect_pause = ARGV[5] == '1'
local probe_lease_ms = tonumber(ARGV[6])
local send_bound_ms = tonumber(ARGV[7])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local s = redis.call('HMGET', KEYS[2], purpose .. ':factor', purpose .. ':cooldown_until',
                     'breaker', 'breaker:until', 'breaker:probe_until',
                     'pause', 'pause:auto', 'pause:probe_at', 'pause:probe_until')
local factor = tonumber(s[1]) or 1
local cooldown_until = tonumber(s[2]) or 0
local breaker_open = s[3] == 'open'
local breaker_until = tonumber(s[4]) or 0
local breaker_probe_until = tonumber(s[5]) or 0
local paused = s[6] and s[6] ~= ''
local pause_auto = s[7] == '1'
local pause_probe_at = tonumber(s[8]) or 0
local pause_probe_until = tonumber(s[9]) or 0

local kind = 'ok'
if respect_pause and paused then
  if not pause_auto then return {0, 60000, now_ms, 'paused', ''} end
  if now_ms < pause_probe_at then return {0, pause_probe_at - now_ms, now_ms, 'paused', ''} end
  if now_ms < pause_probe_until then return {0, pause_probe_until - now_ms, now_ms, 'paused', ''} end
  kind = 'pause_probe'
end
if breaker_open then
  if now_ms < breaker_until then return {0, breaker_until - now_ms, now_ms, 'breaker', ''} end
  if now_ms < breaker_probe_until then
    return {0, breaker_probe_until - now_ms, now_ms, 'breaker', ''}
  end
  kind = 'probe'
end
if now_ms < cooldown_until then return {0, cooldown_until - now_ms, now_ms, 'cooldown', ''} end

local eff = math.max(1, math.floor(limit * factor + 1e-9))
local wait_ms = 0
local oldest = redis.call('ZREVRANGE', KEYS[1], eff - 1, eff - 1, 'WITHSCORES')
if oldest[2] then wait_ms = math.max(wait_ms, tonumber(oldest[2]) + window_ms - now_ms) end
local b = math.min(burst, eff)
if b < eff then
  local pace_ref = redis.call('ZREVRANGE', KEYS[1], b - 1, b - 1, 'WITHSCORES')
  if pace_ref[2] then
    wait_ms = math.max(wait_ms, tonumber(pace_ref[2]) + math.ceil(b * window_ms / eff) - now_ms)
  end
end
if wait_ms > 0 then return {0, wait_ms, now_ms, 'window', ''} end

if kind == 'probe' then
  redis.call('HSET', KEYS[2], 'breaker:probe_until', now_ms + probe_lease_ms)
elseif kind == 'pause_probe' then
  redis.call('HSET', KEYS[2], 'pause:probe_until', now_ms + probe_lease_ms)
end
local grant_id = now_ms .. '-' .. redis.call('HINCRBY', KEYS[2], 'seq', 1)
redis.call('ZADD', KEYS[1], now_ms + send_bound_ms, grant_id)
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(limit + 1))
redis.call('PEXPIRE', KEYS[1], window_ms * 2 + send_bound_ms)
return {1, 0, now_ms, kind, grant_id}
