-- report.lua: feed one provider answer back into the account's shared limiter state.
--
-- Call: EVALSHA sha 2 state log  purpose signal kind limit beta min_factor cooldown_ms
--                                 retry_after_ms jitter_ms breaker_base_ms breaker_cap_ms
--                                 outcome pause_probe_ms grant_id
-- KEYS[1] state  hash  the account's limiter state (see acquire.lua)
-- KEYS[2] log    zset  the bucket's grant log: the answered call's entry is lowered to now
--                      (its request reached the provider before the answer came back); an
--                      unused grant's entry is removed (its call never left)
-- ARGV[1] purpose      "submit" or "poll"
-- ARGV[2] signal       "up" (the provider answered normally) | "throttled" | "maintenance" |
--                      "paused" (credits / auth) | "down" (transient error, no verdict) |
--                      "unused" (the grant was given back: no call was made)
-- ARGV[3] kind         the grant kind this call held: "ok" | "probe" | "pause_probe"
-- ARGV[4] limit        configured N (the ceiling of the effective limit)
-- ARGV[5] beta         multiplicative cut on a throttle, e.g. 0.5
-- ARGV[6] min_factor   floor of the factor (1 / limit keeps at least one call per window)
-- ARGV[7] cooldown_ms  shared pause after a throttle when no Retry-After says longer
-- ARGV[8] retry_after_ms  the provider's Retry-After in ms, or 0
-- ARGV[9] jitter_ms    random extra for cool-down / breaker time, chosen by the caller
-- ARGV[10] breaker_base_ms, ARGV[11] breaker_cap_ms: open time base * 2^(opens-1), capped
-- ARGV[12] outcome     the answer's Outcome (provider/profiles.py: "accepted", "throttled",
--                      "maintenance", "credits", ...; with signal "paused" it is the pause
--                      reason: "credits" | "unauthorized" | "not_found"); every answered call
--                      adds 1 to the state field "<purpose>:calls:<outcome>" (the Prometheus
--                      counter backbeat_provider_calls_total, workers/status.py); "" with
--                      signal "unused" (no call was made, nothing is counted)
-- ARGV[13] pause_probe_ms  time until a paused account is probed again
-- ARGV[14] grant_id    the grant this call used ("" when unknown)
-- ARGV[15] charged     "1" when an accepted call of this bucket costs credits (submissions):
--                      it adds 1 to "credits:charged" (acquire.lua's credit floor, and the
--                      cost learned from balance reads, store_credits.lua)
-- ARGV[16] pace_ms     with signal "unused": one pacing slot of the bucket (0: not paced); an
--                      unused grant steps the schedule (``<purpose>:pace``, acquire.lua) back
--                      by that much while it is ahead of now, so a token given back (a job
--                      found taken, a redelivery) costs no slot
-- Returns the effect: "none" | "cut" | "cooldown" | "raised" | "opened" | "closed" | "paused" |
-- "resumed". A throttle cuts the rate once per cool-down however many workers report it; only
-- the first 455 after a close (or the probe's own 455) counts toward the breaker's backoff.

local purpose = ARGV[1]
local signal = ARGV[2]
local kind = ARGV[3]
local limit = tonumber(ARGV[4])
local beta = tonumber(ARGV[5])
local min_factor = tonumber(ARGV[6])
local cooldown_ms = tonumber(ARGV[7])
local retry_after_ms = tonumber(ARGV[8])
local jitter_ms = tonumber(ARGV[9])
local breaker_base_ms = tonumber(ARGV[10])
local breaker_cap_ms = tonumber(ARGV[11])
local outcome = ARGV[12]
local pause_probe_ms = tonumber(ARGV[13])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local K = KEYS[1]
local f_factor, f_cool = purpose .. ':factor', purpose .. ':cooldown_until'
if signal == 'unused' then
  if ARGV[14] ~= '' then redis.call('ZREM', KEYS[2], ARGV[14]) end
  local step = tonumber(ARGV[16]) or 0
  if step > 0 then
    local pace = tonumber(redis.call('HGET', K, purpose .. ':pace'))
    if pace and pace > now_ms then
      redis.call('HSET', K, purpose .. ':pace', math.max(now_ms, pace - step))
    end
  end
  if kind == 'probe' then redis.call('HSET', K, 'breaker:probe_until', 0) end
  if kind == 'pause_probe' then redis.call('HSET', K, 'pause:probe_until', 0) end
  return 'none'
end
if ARGV[14] ~= '' then redis.call('ZADD', KEYS[2], 'XX', 'LT', now_ms, ARGV[14]) end
-- one provider call answered (or given up on): counted here, once per call, fleet-wide
if outcome ~= '' then redis.call('HINCRBY', K, purpose .. ':calls:' .. outcome, 1) end
if outcome == 'accepted' and ARGV[15] == '1' then redis.call('HINCRBY', K, 'credits:charged', 1) end

if signal == 'up' then
  local effect = 'none'
  if kind == 'probe' and redis.call('HGET', K, 'breaker') == 'open' then
    redis.call('HSET', K, 'breaker', '', 'breaker:opens', 0, 'breaker:probe_until', 0,
               'breaker:closed_at', now_ms)
    effect = 'closed'
  end
  if kind == 'pause_probe' and (redis.call('HGET', K, 'pause') or '') ~= '' then
    redis.call('HSET', K, 'pause', '', 'pause:auto', '', 'pause:probe_until', 0,
               'pause:resumed_at', now_ms)
    effect = 'resumed'
  end
  local factor = tonumber(redis.call('HGET', K, f_factor)) or 1
  if factor < 1 then
    -- additive increase: about one more call per window for each window of successes
    local eff = math.max(1, limit * factor)
    factor = math.min(1, factor + 1 / (limit * eff))
    redis.call('HSET', K, f_factor, factor)
    if effect == 'none' then effect = 'raised' end
  end
  return effect
end

if signal == 'throttled' then
  local cool_until = tonumber(redis.call('HGET', K, f_cool)) or 0
  local effect = 'cooldown'
  if now_ms >= cool_until then
    local factor = tonumber(redis.call('HGET', K, f_factor)) or 1
    redis.call('HSET', K, f_factor, math.max(min_factor, factor * beta))
    redis.call('HINCRBY', K, purpose .. ':cuts', 1)
    effect = 'cut'
  end
  local wait_ms = math.max(cooldown_ms, retry_after_ms) + jitter_ms
  redis.call('HSET', K, f_cool, math.max(cool_until, now_ms + wait_ms),
             purpose .. ':last_throttle_at', now_ms)
  redis.call('HINCRBY', K, purpose .. ':throttles', 1)
  -- a throttle proves the service is up: a probe that got one closes the breaker
  if kind == 'probe' then redis.call('HSET', K, 'breaker', '', 'breaker:opens', 0,
                                     'breaker:probe_until', 0) end
  if kind == 'pause_probe' then redis.call('HSET', K, 'pause:probe_until', 0,
                                           'pause:probe_at', now_ms + wait_ms) end
  return effect
end

if signal == 'maintenance' then
  local is_open = redis.call('HGET', K, 'breaker') == 'open'
  if is_open and kind ~= 'probe' then return 'none' end
  local opens = redis.call('HINCRBY', K, 'breaker:opens', 1)
  local open_ms = math.min(breaker_cap_ms, breaker_base_ms * 2 ^ (opens - 1)) + jitter_ms
  redis.call('HSET', K, 'breaker', 'open', 'breaker:until', now_ms + open_ms,
             'breaker:probe_until', 0, 'breaker:opened_at', now_ms)
  redis.call('HINCRBY', K, 'breaker:trips', 1)
  return 'opened'
end

if signal == 'paused' then
  local current = redis.call('HGET', K, 'pause') or ''
  if current ~= '' and kind ~= 'pause_probe' then return 'none' end
  if current == '' then redis.call('HSET', K, 'pause:since', now_ms) end
  redis.call('HSET', K, 'pause', outcome, 'pause:auto', '1',
             'pause:probe_at', now_ms + pause_probe_ms + jitter_ms, 'pause:probe_until', 0)
  return 'paused'
end

-- "down": a transient failure says nothing; a probe that got one frees its lease
if kind == 'probe' then redis.call('HSET', K, 'breaker:probe_until', 0) end
if kind == 'pause_probe' then redis.call('HSET', K, 'pause:probe_until', 0) end
return 'none'
