-- transition.lua: move one job forward (or submitting -> queued, or a retry) and record it.
--
-- Call: EVALSHA sha 22 job hist events poll uncertain parked deadline <9 state indexes> notify
--         metric recent leases lease-holders params
--         job_id to reason require_from require_attempt poll_delay_ms retention_ms maxlen
--         mode park_delay_ms f1 v1 ...
-- KEYS[1] job        hash    the job record
-- KEYS[2] hist       list    the job's history, JSON entries, capped at 50
-- KEYS[3] events     stream  transition events (capped, approximate MAXLEN)
-- KEYS[4] poll       zset    job id -> ms of its next poll
-- KEYS[5] uncertain  zset    job id -> ms its uncertain grace ends
-- KEYS[6] parked     zset    job id -> ms a parked queued job may be sent again
-- KEYS[7] deadline   zset    job id -> ms its deadline passes
-- KEYS[8..16] state  zsets   one per state, in the order of STATES (job id -> ms entered)
-- KEYS[17] notify    zset    job id -> ms its webhook is due (terminal jobs with a notify_url)
-- KEYS[18] metric    string  fleet-wide counter of duplicate upstream tasks
-- KEYS[19] recent    list    the latest jobs with a duplicate (status page)
-- KEYS[20] leases    zset    job id -> ms its worker node's lease ends (workers/leases.py)
-- KEYS[21] holders   hash    job id -> the node holding that lease
--                    A job leaving queued / submitting for any other state drops its lease in
--                    this step: a lease only serves to move a queued or submitting job again
--                    when its node dies (reclaim.lua drops it too, later), so the node's own
--                    release at the end of its delivery is spared a round trip.
-- KEYS[22] params    string  the job's params: kept exactly as long as the record
-- ARGV[1] job_id; ARGV[2] target state; ARGV[3] reason (short text)
-- ARGV[4] require_from     "" or the state the job must be in now
-- ARGV[5] require_attempt  "" or the attempt id the job must carry now
-- ARGV[6] poll_delay_ms    "" or ms from now for the next poll (ZADD poll)
-- ARGV[7] retention_ms     how long a terminal record is kept
-- ARGV[8] maxlen           events stream cap
-- ARGV[9] mode             "" (forward only; submitting -> queued allowed), "retry"
--                          (failed / expired -> queued: the one way out of a terminal state)
--                          or "resubmit" (submitted / text_ready / first_ready -> queued: the
--                          provider failed the task with a code it calls retryable; the job
--                          leaves the poll schedule and is parked for the pump in this step)
-- ARGV[10] park_delay_ms   "" or ms from now: a job moved to queued is parked for the pump in
--                          this same step (ZADD parked), so no crash can leave it queued with
--                          neither a message nor a parked entry ("resubmit" parks with 0)
-- ARGV[11..] field/value pairs: "name" sets; "+name" increments; "-name" deletes;
--           "upstream_task_id" never overwrites a different id: the newcomer is recorded as a
--           duplicate instead (_duplicate.lua, the rule add_duplicate.lua follows too).
-- Returns {applied (1|0|-1 missing), state_before}. Time is the Redis server clock, in ms.
-- The state machine (STATES, RANK, TERMINAL and the sets of allowed starting points) is not
-- written here: scripts.py puts workers/states.py's tables where the line below says so.

--#include states
--#include duplicate
local INDEX = {}
for i, name in ipairs(STATES) do INDEX[name] = KEYS[7 + i] end

local job_id = ARGV[1]
local to = ARGV[2]
local reason = ARGV[3]
local require_from = ARGV[4]
local require_attempt = ARGV[5]
local poll_delay_ms = ARGV[6]
local retention_ms = tonumber(ARGV[7])
local events_maxlen = tonumber(ARGV[8])
local mode = ARGV[9]
local park_delay_ms = ARGV[10]

local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {-1, ''} end
if RANK[to] == nil then return redis.error_reply('unknown state ' .. to) end
if require_from ~= '' and cur ~= require_from then return {0, cur} end
if require_attempt ~= '' and redis.call('HGET', KEYS[1], 'attempt_id') ~= require_attempt then
  return {0, cur}
end
if mode == 'retry' then
  if to ~= 'queued' or not RETRY_FROM[cur] then return {0, cur} end
elseif mode == 'resubmit' then
  if to ~= 'queued' or not RESUBMIT_FROM[cur] then return {0, cur} end
else
  if TERMINAL[cur] or cur == to then return {0, cur} end
  if to == 'cancelled' and not CANCELLABLE[cur] then return {0, cur} end
  local back_ok = (to == 'queued' and BACK_TO_QUEUE[cur])
  if RANK[to] <= RANK[cur] and not back_ok then return {0, cur} end
end

local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

redis.call('HSET', KEYS[1], 'state', to, 'updated_at', now_ms, to .. '_at', now_ms)
for i = 11, #ARGV, 2 do
  local name, value = ARGV[i], ARGV[i + 1]
  local op = string.sub(name, 1, 1)
  if op == '+' then
    redis.call('HINCRBY', KEYS[1], string.sub(name, 2), tonumber(value))
  elseif op == '-' then
    redis.call('HDEL', KEYS[1], string.sub(name, 2))
  elseif name == 'upstream_task_id' then
    if (redis.call('HGET', KEYS[1], 'upstream_task_id') or '') == '' then
      redis.call('HSET', KEYS[1], name, value)
    else
      record_duplicate(KEYS[1], KEYS[18], KEYS[19], value)
    end
  else
    redis.call('HSET', KEYS[1], name, value)
  end
end

redis.call('ZREM', INDEX[cur], job_id)
redis.call('ZADD', INDEX[to], now_ms, job_id)
if to ~= 'submitting' then redis.call('ZREM', KEYS[5], job_id) end
if (cur == 'queued' or cur == 'submitting') and to ~= 'queued' and to ~= 'submitting' then
  redis.call('ZREM', KEYS[20], job_id)
  redis.call('HDEL', KEYS[21], job_id)
end
if to ~= 'queued' then redis.call('ZREM', KEYS[6], job_id) end
if TERMINAL[to] then
  redis.call('ZREM', KEYS[4], job_id)
  redis.call('ZREM', KEYS[7], job_id)
  redis.call('PEXPIRE', KEYS[1], retention_ms)
  redis.call('PEXPIRE', KEYS[22], retention_ms)
  if (redis.call('HGET', KEYS[1], 'notify_url') or '') ~= '' then
    redis.call('HSET', KEYS[1], 'notify_state', 'pending')
    redis.call('ZADD', KEYS[17], now_ms, job_id)
  end
elseif poll_delay_ms ~= '' then
  redis.call('ZADD', KEYS[4], now_ms + tonumber(poll_delay_ms), job_id)
end
if mode == 'resubmit' then redis.call('ZREM', KEYS[4], job_id) end
if to == 'queued' and park_delay_ms ~= '' then
  redis.call('ZADD', KEYS[6], now_ms + tonumber(park_delay_ms), job_id)
end
if mode == 'retry' then
  redis.call('PERSIST', KEYS[1])
  redis.call('PERSIST', KEYS[22])
  redis.call('ZADD', KEYS[7], now_ms + tonumber(redis.call('HGET', KEYS[1], 'deadline_ms') or 0),
             job_id)
end
redis.call('RPUSH', KEYS[2], cjson.encode({t = now_ms, from = cur, to = to, reason = reason}))
redis.call('LTRIM', KEYS[2], -50, -1)
if TERMINAL[to] then redis.call('PEXPIRE', KEYS[2], retention_ms) else redis.call('PERSIST', KEYS[2]) end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', events_maxlen, '*',
           'job', job_id, 'from', cur, 'to', to, 'reason', reason, 't', now_ms)
return {1, cur}
