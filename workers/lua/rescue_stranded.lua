-- rescue_stranded.lua: park queued jobs that may have lost their message, each examined once.
--
-- Call: EVALSHA sha 5 queued parked outbox cursor lane_of  cutoff_ms batch
-- KEYS[1] queued  zset    state index: job id -> ms it (re)entered ``queued``
-- KEYS[2] parked  zset    job id -> ms the pump may send it again
-- KEYS[3] outbox  zset    jobs whose first message is not sent yet (housekeeping owns them)
-- KEYS[4] cursor  string  ms up to which queued entries were already examined
-- KEYS[5] lane_of hash    jobs waiting in a producer's lane (the pump sends them in turn)
-- ARGV[1] cutoff_ms  entries that entered ``queued`` before this are examined (a message that
--                    old may have been lost: kombu's Redis transport pops a message before it
--                    records it as unacked, so a worker or Redis dying in between drops it)
-- ARGV[2] batch      most entries examined per call
-- Parking is harmless when the message was not lost: the pump sends parked jobs only while the
-- broker queue is short, and a second message for a job is a no-op (a submit claims a job only
-- from ``queued``). Each entry is examined once, when it crosses the cutoff, so the cost per
-- call is O(newly stale), not O(backlog). Returns the number of jobs parked.

local cutoff_ms = tonumber(ARGV[1])
local batch = tonumber(ARGV[2])
local from = redis.call('GET', KEYS[4]) or '-inf'
local lower = (from == '-inf') and '-inf' or ('(' .. from)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], lower, cutoff_ms, 'WITHSCORES', 'LIMIT', 0, batch)
local parked, last = 0, nil
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function examine(job_id)
  if not redis.call('ZSCORE', KEYS[2], job_id) and not redis.call('ZSCORE', KEYS[3], job_id)
      and redis.call('HEXISTS', KEYS[5], job_id) == 0 then
    redis.call('ZADD', KEYS[2], now_ms, job_id)
    parked = parked + 1
  end
end
for i = 1, #due, 2 do
  examine(due[i])
  last = due[i + 1]
end
if #due / 2 >= batch then
  -- a full batch: finish every entry at its last score too, then resume after that score
  local ties = redis.call('ZRANGEBYSCORE', KEYS[1], last, last)
  for _, job_id in ipairs(ties) do examine(job_id) end
  redis.call('SET', KEYS[4], last)
else
  redis.call('SET', KEYS[4], cutoff_ms)
end
return parked
