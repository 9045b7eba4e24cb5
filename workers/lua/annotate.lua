-- annotate.lua: set fields on a job without a state change, only while it is in a given state.
--
-- Call: EVALSHA sha 2 job uncertain  job_id require_state uncertain_delay_ms f1 v1 ...
-- KEYS[1] job        hash  the job record
-- KEYS[2] uncertain  zset  job id -> ms its uncertain grace ends
-- ARGV[1] job_id; ARGV[2] state the job must be in ("" = any non-terminal)
-- ARGV[3] uncertain_delay_ms  "" or ms from now: ZADD NX the job into the uncertain set
-- ARGV[4..] field/value pairs to HSET ("+name" increments)
-- Returns 1 when applied, 0 when the job is not in the required state, -1 when missing.
-- TERMINAL comes from workers/states.py: scripts.py writes the tables in at the line below.
--#include states

local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return -1 end
if ARGV[2] ~= '' and cur ~= ARGV[2] then return 0 end
if ARGV[2] == '' and TERMINAL[cur] then return 0 end
for i = 4, #ARGV, 2 do
  local name, value = ARGV[i], ARGV[i + 1]
  if string.sub(name, 1, 1) == '+' then
    redis.call('HINCRBY', KEYS[1], string.sub(name, 2), tonumber(value))
  else
    redis.call('HSET', KEYS[1], name, value)
  end
end
if ARGV[3] ~= '' then
  local t = redis.call('TIME')
  local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', KEYS[2], 'NX', now_ms + tonumber(ARGV[3]), ARGV[1])
end
return 1
