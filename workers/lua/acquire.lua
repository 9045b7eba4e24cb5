-- acquire.lua: take one call from an account's bucket, through its gates, in one round trip.
--
-- Call: EVALSHA sha 2 log state  purpose limit window_ms burst respect_pause probe_lease_ms
--                                 send_bound_ms grant_id
-- KEYS[1] log    zset  grant id -> the latest time (ms) its request can have reached the
--                      provider: grant + send_bound_ms until report.lua lowers it to the
--                      answer's time; about ``limit`` entries are kept (no TTL)
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
-- ARGV[8] grant_id        a caller-made unique id for this grant (the log's member)
-- Returns one string "granted|wait_ms|now_ms|kind" (granted 1|0). kind: "ok" | "probe"
-- (breaker half-open) | "pause_probe" when granted; "paused" | "breaker" | "cooldown" |
-- "window" when refused. One string, not an array: the cheapest reply to parse.
-- The effective limit is floor(limit * factor) (AIMD, see report.lua), at least 1.
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
local grant_id = ARGV[8]
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local s = redis.call('HMGET', KEYS[2], purpose .. ':factor', purpose .. ':cooldown_until',
                     'breaker', 'pause')
local factor = tonumber(s[1]) or 1
local cooldown_until = tonumber(s[2]) or 0
local breaker_open = s[3] == 'open'
local paused = s[4] and s[4] ~= ''

local function refuse(wait, why)
  return '0|' .. wait .. '|' .. now_ms .. '|' .. why
end

local kind = 'ok'
if (respect_pause and paused) or breaker_open then  -- the slow path reads the gates' details
  local g = redis.call('HMGET', KEYS[2], 'pause:auto', 'pause:probe_at', 'pause:probe_until',
                       'breaker:until', 'breaker:probe_until')
  if respect_pause and paused then
    if g[1] ~= '1' then return refuse(60000, 'paused') end
    local probe_at, probe_until = tonumber(g[2]) or 0, tonumber(g[3]) or 0
    if now_ms < probe_at then return refuse(probe_at - now_ms, 'paused') end
    if now_ms < probe_until then return refuse(probe_until - now_ms, 'paused') end
    kind = 'pause_probe'
  end
  if breaker_open then
    local until_ms, probe_until = tonumber(g[4]) or 0, tonumber(g[5]) or 0
    if now_ms < until_ms then return refuse(until_ms - now_ms, 'breaker') end
    if now_ms < probe_until then return refuse(probe_until - now_ms, 'breaker') end
    kind = 'probe'
  end
end
if now_ms < cooldown_until then return refuse(cooldown_until - now_ms, 'cooldown') end

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
if wait_ms > 0 then return refuse(wait_ms, 'window') end

if kind == 'probe' then
  redis.call('HSET', KEYS[2], 'breaker:probe_until', now_ms + probe_lease_ms)
elseif kind == 'pause_probe' then
  redis.call('HSET', KEYS[2], 'pause:probe_until', now_ms + probe_lease_ms)
end
redis.call('ZADD', KEYS[1], now_ms + send_bound_ms, grant_id)
-- only the newest ``limit`` entries matter; trimming on one grant in eight (by the clock's
-- last digits) keeps the log within a few entries of that at a fraction of the cost. The log
-- has no TTL: bounded so, it is a few hundred bytes per bucket, and no expiry can ever drop
-- grants that still count.
if now_ms % 8 == 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(limit + 1)) end
return '1|0|' .. now_ms .. '|' .. kind
