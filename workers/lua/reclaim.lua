-- reclaim.lua: take back a job whose holder stopped renewing its lease (the node is dead).
--
-- Call: EVALSHA sha 6 leases holders job hist parked uncertain  job_id fallback_ms grace_ms
-- KEYS[1] leases     zset  job id -> ms its lease ends
-- KEYS[2] holders    hash  job id -> "<node> <broker delivery tag>"
-- KEYS[3] job        hash  the job record
-- KEYS[4] hist       list  the job's history (a reclaim is written there as queued -> queued or
--                          submitting -> submitting, reason naming the dead node)
-- KEYS[5] parked     zset  job id -> ms the pump may send it again
-- KEYS[6] uncertain  zset  job id -> ms its uncertain grace ends
-- ARGV[1] job_id
-- ARGV[2] fallback_ms  a reclaimed queued job is also parked, leased this long: if putting its
--                      broker message back fails, the pump sends a new one after that
-- ARGV[3] grace_ms     the uncertain grace of a job the dead node held mid-call, counted from
--                      the moment the call began (``submitting_at``)
-- Returns {what, holder}: what is "live" (renewed meanwhile: nothing done), "queued" or
-- "submitting" (reclaimed; the caller puts the broker message back to the front of its queue),
-- or "done" (the job moved on or is gone: the lease is only dropped). Server clock, ms.

local job_id, fallback_ms, grace_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ends = tonumber(redis.call('ZSCORE', KEYS[1], job_id))
if not ends then return {'done', ''} end
if ends > now_ms then return {'live', ''} end
local holder = redis.call('HGET', KEYS[2], job_id) or ''
redis.call('ZREM', KEYS[1], job_id)
redis.call('HDEL', KEYS[2], job_id)
local state = redis.call('HGET', KEYS[3], 'state')
if state ~= 'queued' and state ~= 'submitting' then return {'done', holder} end
local node = string.match(holder, '^(%S+)') or '?'
if state == 'queued' then
  if not redis.call('ZSCORE', KEYS[5], job_id) then
    redis.call('ZADD', KEYS[5], now_ms + fallback_ms, job_id)
  end
else
  -- the dead node may have sent the call: never resubmit blindly (see transition.lua's uncertain)
  redis.call('HSET', KEYS[3], 'uncertain', '1')
  local began = tonumber(redis.call('HGET', KEYS[3], 'submitting_at')) or now_ms
  redis.call('ZADD', KEYS[6], 'NX', math.max(now_ms, began + grace_ms), job_id)
end
redis.call('HSET', KEYS[3], 'reclaimed_at', now_ms)
redis.call('HINCRBY', KEYS[3], 'reclaims', 1)
redis.call('RPUSH', KEYS[4], cjson.encode({t = now_ms, from = state, to = state,
  reason = 'reclaimed: lease of ' .. node .. ' expired'}))
redis.call('LTRIM', KEYS[4], -50, -1)
return {state, holder}
