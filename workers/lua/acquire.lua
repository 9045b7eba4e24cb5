-- acquire.lua: take one call from an account's bucket, through its gates, in one round trip.
--
-- Call: EVALSHA sha 2 log state  grant_id [answered_grant_id...]
--   The caller puts one line before this text naming the Redis instance it loads the script
--   on and the bucket's configuration, as Lua literals (no parsing on the hot path):
--     local instance, purpose, limit, window_ms, burst, respect_pause, probe_lease_ms,
--           flight_ms, floor = '<run_id>', 'submit', 20, 10050, 20, true, 30000, 60000, 0
--   so the text, and its sha, are this bucket's on that instance.
-- KEYS[1] log    zset  grant id -> the latest time (ms) its request can have reached the
--                      provider: while unanswered, grant + flight_ms (a time in the future,
--                      so it counts as "arriving now"); report.lua lowers it to the answer's
--                      time. About ``limit`` entries are kept (no TTL).
-- KEYS[2] state  hash  the account's shared limiter state (one hash tag with the logs):
--                      <purpose>:factor, <purpose>:cooldown_until, <purpose>:pace, breaker,
--                      breaker:until, breaker:probe_until, pause, pause:auto, pause:probe_at,
--                      pause:probe_until, server and fence_at (written by fence.lua)
-- configuration (the first line):
--   purpose         "submit" or "poll"
--   limit           N of the rule N/W (the configured ceiling)
--   window_ms       W, already widened by the caller's safety margin
--   burst           grants that may go back to back (then paced W / N_eff apart)
--   respect_pause   true: the credits/auth pause applies (submissions); false: it does not
--   probe_lease_ms  how long a half-open probe is exclusively held by its taker
--   flight_ms       longest a granted call can stay unanswered (the caller's timeouts);
--                   a grant nobody reports (its worker died) stops counting after that
--   floor           credits below which the account takes no submission (with
--                   respect_pause): once a balance and the cost of one accepted call are
--                   known (store_credits.lua), a grant is refused ("credits") when
--                   credits - cost * (accepted since the read + in flight + 1) < floor
-- ARGV[1] grant_id  a caller-made unique id for this grant (the log's member)
-- ARGV[2..]         optional: grants of this bucket whose calls this process has seen
--                   answered normally since its last acquire (workers/answers.py): their
--                   entries are lowered to now, whatever this call's verdict, so the window
--                   sees each answer with the next acquire, in the same round trip (on a
--                   grant in the same ZADD as the new entry). Counting them, and the AIMD
--                   increase, is settle.lua's, a moment later. While the account's credit
--                   floor is in force they are left for settle.lua, which lowers and counts
--                   them together (the floor counts an accepted call either in flight or
--                   charged, never in neither).
-- Returns the grant's time (ms, an integer) for a plain grant (kind "ok"), the hot path;
-- else one string "granted|wait_ms|now_ms|kind" (granted 1|0). kind: "probe" (breaker
-- half-open) | "pause_probe" when granted; "paused" | "breaker" | "cooldown" | "window" |
-- "fence" | "credits" when refused; "recheck" (granted 0) asks the caller to run fence.lua
-- first. One integer or one string, not an array: the cheapest replies to parse.
-- Lost state (limiter.py's docstring): the caller loads this script, its first line naming the
-- instance, in one MULTI with fence.lua on that instance, so a script with that text exists
-- there only (Redis neither replicates nor persists scripts). Whoever runs it is therefore on
-- ``instance``, and it grants only while the state's ``server`` (the instance that made the
-- account's last fence decision) is that same instance: otherwise the state was decided
-- elsewhere (a failover, a failback to a demoted primary that kept its scripts) or lost, and
-- the reply is "recheck". After a fence decision, no grant before fence_at + window: a refusal
-- "fence", to be waited out like "window".
-- The effective limit is floor(limit * factor) (AIMD, see report.lua), at least 1: the
-- function comes from _effective.lua, written in at the include line below.
-- Exactness: the provider stamps a call somewhere between its grant and its answer. A new
-- grant waits until the N-th newest call's latest possible stamp (its answer, or "now" while
-- it is unanswered) is a whole window old, so ANY window at the provider holds at most N
-- calls, however long calls take to travel and whatever the number of workers.
-- Time is the Redis server clock (one clock for every worker on every machine), in ms.

--#include effective
--#include answered

local grant_id = ARGV[1]
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local f_pace = purpose .. ':pace'
local s = redis.call('HMGET', KEYS[2], purpose .. ':factor', purpose .. ':cooldown_until',
                     'breaker', 'pause', f_pace, 'server', 'fence_at', 'credits',
                     'credits:cost', 'credits:charged', 'credits:charged_at_read')
if s[6] ~= instance then return '0|0|' .. now_ms .. '|recheck' end
local factor = tonumber(s[1]) or 1
-- answered grants to lower (ARGV[2..]); left to settle.lua under the credit floor (above)
local lowering = #ARGV >= 2 and not (respect_pause and s[8] and s[9])
local function lower()
  if lowering then lower_answered(KEYS[1], now_ms, 2) end
  lowering = false
end
local cooldown_until = tonumber(s[2]) or 0
local breaker_open = s[3] == 'open'
local paused = s[4] and s[4] ~= ''

local function refuse(wait, why)
  lower()
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
if respect_pause and s[8] and s[9] then  -- the credit floor (a probe costs credits too)
  local balance, cost = tonumber(s[8]), tonumber(s[9])
  local since = (tonumber(s[10]) or 0) - (tonumber(s[11]) or 0)
  if balance and cost and cost > 0 then
    local in_flight = redis.call('ZCOUNT', KEYS[1], '(' .. now_ms, '+inf')
    if balance - cost * (math.max(since, 0) + in_flight + 1) < floor then
      return refuse(60000, 'credits')
    end
  end
end
if now_ms < cooldown_until then return refuse(cooldown_until - now_ms, 'cooldown') end
local fence_end = (tonumber(s[7]) or 0) + window_ms
if now_ms < fence_end then return refuse(fence_end - now_ms, 'fence') end

local eff = effective_limit(limit, factor)
local wait_ms = 0
local nth = redis.call('ZREVRANGE', KEYS[1], eff - 1, eff - 1, 'WITHSCORES')
if nth[2] then wait_ms = math.min(tonumber(nth[2]), now_ms) + window_ms - now_ms end
-- pacing (burst < N_eff): slots T = W / N_eff apart, b of them usable at once (a GCRA on
-- the slot time). A waiter that wakes up to T/2 after its slot keeps the schedule instead of
-- pushing every later slot back by its lateness; a slot missed by more starts afresh at now.
local b = math.min(burst, eff)
local pace_ms = math.ceil(window_ms / eff)
local pace = nil
if b < eff then
  pace = tonumber(s[5]) or 0
  if pace < now_ms - math.floor(pace_ms / 2) then pace = now_ms end
  wait_ms = math.max(wait_ms, pace - (b - 1) * pace_ms - now_ms)
end
if wait_ms > 0 then return refuse(wait_ms, 'window') end

if pace then redis.call('HSET', KEYS[2], f_pace, pace + pace_ms) end
if kind == 'probe' then
  redis.call('HSET', KEYS[2], 'breaker:probe_until', now_ms + probe_lease_ms)
elseif kind == 'pause_probe' then
  redis.call('HSET', KEYS[2], 'pause:probe_until', now_ms + probe_lease_ms)
end
if lowering then  -- one ZADD: the answered entries lowered to now, the new grant added
  if #ARGV == 2 then  -- the hot path: one answer
    redis.call('ZADD', KEYS[1], 'LT', now_ms, ARGV[2], now_ms + flight_ms, grant_id)
  else
    local args = answered_zadd(KEYS[1], now_ms, 2, 'LT')
    args[#args + 1] = now_ms + flight_ms
    args[#args + 1] = grant_id
    redis.call(unpack(args))
  end
else
  redis.call('ZADD', KEYS[1], now_ms + flight_ms, grant_id)
end
-- only the newest ``limit`` entries matter; trimming on one grant in eight (by the clock's
-- last digits) keeps the log within a few entries of that at a fraction of the cost. The log
-- has no TTL: bounded so, it is a few hundred bytes per bucket, and no expiry can ever drop
-- grants that still count.
if now_ms % 8 == 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(limit + 1)) end
if kind == 'ok' then return now_ms end  -- an integer reply: the cheapest to make and read
return '1|0|' .. now_ms .. '|' .. kind
