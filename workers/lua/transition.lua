-- transition.lua: move one job forward (or submitting -> queued) and record the event.
--
-- Call: EVALSHA sha 6 job events queued poll uncertain parked
--         job_id to reason require_from require_attempt poll_delay_ms retention_ms maxlen f1 v1 ...
-- KEYS[1] job        hash    the job record
-- KEYS[2] events     stream  transition events (capped, approximate MAXLEN)
-- KEYS[3] queued     zset    job id -> ms it entered ``queued``
-- KEYS[4] poll       zset    job id -> ms of its next poll
-- KEYS[5] uncertain  zset    job id -> ms its uncertain grace ends
-- KEYS[6] parked     zset    job id -> ms a parked queued job may be sent again
-- ARGV[1] job_id; ARGV[2] target state; ARGV[3] reason (short text)
-- ARGV[4] require_from     "" or the state the job must be in now
-- ARGV[5] require_attempt  "" or the attempt id the job must carry now
-- ARGV[6] poll_delay_ms    "" or ms from now for the next poll (ZADD poll)
-- ARGV[7] retention_ms     how long a terminal record is kept
-- ARGV[8] maxlen           events stream cap
-- ARGV[9..] field/value pairs: "name" sets; "+name" increments by value;
--           "upstream_task_id" never overwrites a different id: the newcomer is recorded as a
--           duplicate (dup_task_ids, dup_count) instead.
-- Returns {applied (1|0|-1 missing), state_before}. Time is the Redis server clock, in ms.

local RANK = {queued = 0, submitting = 1, submitted = 2, text_ready = 3, first_ready = 4,
              succeeded = 9, failed = 9, expired = 9, cancelled = 9}

local job_id = ARGV[1]
local to = ARGV[2]
local reason = ARGV[3]
local require_from = ARGV[4]
local require_attempt = ARGV[5]
local poll_delay_ms = ARGV[6]
local retention_ms = tonumber(ARGV[7])
local events_maxlen = tonumber(ARGV[8])

local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {-1, ''} end
if RANK[to] == nil then return redis.error_reply('unknown state ' .. to) end
if require_from ~= '' and cur ~= require_from then return {0, cur} end
if require_attempt ~= '' and redis.call('HGET', KEYS[1], 'attempt_id') ~= require_attempt then
  return {0, cur}
end
if RANK[cur] == 9 or cur == to then return {0, cur} end
local backward_ok = (cur == 'submitting' and to == 'queued')
if RANK[to] <= RANK[cur] and not backward_ok then return {0, cur} end
if to == 'cancelled' and cur ~= 'queued' then return {0, cur} end

local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

redis.call('HSET', KEYS[1], 'state', to, 'updated_at', now_ms, to .. '_at', now_ms)
for i = 9, #ARGV, 2 do
  local name, value = ARGV[i], ARGV[i + 1]
  if string.sub(name, 1, 1) == '+' then
    redis.call('HINCRBY', KEYS[1], string.sub(name, 2), tonumber(value))
  elseif name == 'upstream_task_id' then
    local known = redis.call('HGET', KEYS[1], 'upstream_task_id')
    if not known or known == '' then
      redis.call('HSET', KEYS[1], name, value)
    elseif known ~= value then
      local dups = redis.call('HGET', KEYS[1], 'dup_task_ids')
      redis.call('HSET', KEYS[1], 'dup_task_ids', (dups and dups ~= '') and (dups .. ',' .. value) or value)
      redis.call('HINCRBY', KEYS[1], 'dup_count', 1)
    end
  else
    redis.call('HSET', KEYS[1], name, value)
  end
end

if to == 'queued' then redis.call('ZADD', KEYS[3], now_ms, job_id) else redis.call('ZREM', KEYS[3], job_id) end
if to ~= 'submitting' then redis.call('ZREM', KEYS[5], job_id) end
if to ~= 'queued' then redis.call('ZREM', KEYS[6], job_id) end
if RANK[to] == 9 then
  redis.call('ZREM', KEYS[4], job_id)
  redis.call('PEXPIRE', KEYS[1], retention_ms)
elseif poll_delay_ms ~= '' then
  redis.call('ZADD', KEYS[4], now_ms + tonumber(poll_delay_ms), job_id)
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', events_maxlen, '*',
           'job', job_id, 'from', cur, 'to', to, 'reason', reason, 't', now_ms)
return {1, cur}
