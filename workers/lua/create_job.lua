-- create_job.lua: write a new job record, its idempotency key and its indexes in one step.
--
-- Call: EVALSHA sha 14 job idem events queued jobs outbox deadline params lanes parked queue
--         lane lane_of lane_seq
--         job_id has_idem fingerprint idem_ttl_ms maxlen deadline_ms params_json placement
--         message channel event f1 v1 ...
-- KEYS[1] job       hash    the new job record
-- KEYS[2] idem      string  "job_id|fingerprint" for this idempotency key (unused if has_idem 0)
-- KEYS[3] events    stream  transition events (capped, approximate MAXLEN)
-- KEYS[4] queued    zset    state index: job id -> ms it entered ``queued``
-- KEYS[5] jobs      zset    job id -> ms created (listing)
-- KEYS[6] outbox    zset    job id -> ms created, until the producer confirms its message sent
-- KEYS[7] deadline  zset    job id -> ms its deadline passes
-- KEYS[8] params    string  the job's provider params (JSON): kept out of the record, so the
--                           record's values stay short and Redis stores it as a listpack
-- KEYS[9..14] lanes (set), parked (zset), queue (the broker's list of the submit queue's
--           front), lane (the producer's zset), lane_of (hash), lane_seq (string): where a
--           new job goes (workers/lanes.py, send_or_admit; admit.lua)
-- ARGV[6] deadline_ms: ms from now until the job expires unless finished
-- ARGV[7] params_json
-- ARGV[8] placement: "" (the caller places the job: the broker is another Redis), or
--         "target|producer|priority": a new job is sent at once when no lane waits, nothing
--         is parked and the queue's front holds fewer than target messages (the reply says
--         "send": the job stays in the outbox until the caller confirms its message sent);
--         else it is admitted to its producer's lane here (as admit.lua does; "lane"), and
--         never enters the outbox
-- ARGV[9..11] message, channel, event: the job's submit message as kombu writes it (for the
--         front of the line: KEYS[11]) and its task-sent event (workers/messages.py), or "":
--         a job to send is then LPUSHed here and its event PUBLISHed ("sent": no outbox entry,
--         the message exists from the same step as the job); without them the reply says
--         "send" and the caller sends it
-- No history entry is written: "created" is the record's created_at (store.history shows it
-- first), so a queued job costs no history list.
-- Returns {1, job_id, fingerprint, record, placed} when created (placed: "sent" | "send" |
-- "lane" | ""),
-- {0, existing_job_id, existing_fingerprint, record, ""} when the idempotency key already
-- names a job (the caller compares fingerprints: same -> same job, else 409); record = the
-- job's hash (HGETALL, flat) with its params, empty when that job is gone: the caller needs
-- no second read.
-- Time is the Redis server clock, in milliseconds.

local job_id = ARGV[1]
local has_idem = ARGV[2] == "1"
local fingerprint = ARGV[3]
local idem_ttl_ms = tonumber(ARGV[4])
local events_maxlen = tonumber(ARGV[5])
local deadline_ms = tonumber(ARGV[6])

local function record(job_key, params_key)
  local h = redis.call('HGETALL', job_key)
  if #h > 0 and redis.call('HEXISTS', job_key, 'params') == 0 then
    h[#h + 1] = 'params'
    h[#h + 1] = redis.call('GET', params_key) or '{}'
  end
  return h
end

if has_idem then
  local existing = redis.call('GET', KEYS[2])
  if existing then
    local sep = string.find(existing, '|', 1, true)
    local found = string.sub(existing, 1, sep - 1)
    local prefix = string.sub(KEYS[1], 1, #KEYS[1] - #job_id)  -- "<p>:job:"
    local params_prefix = string.sub(KEYS[8], 1, #KEYS[8] - #job_id)
    return {0, found, string.sub(existing, sep + 1),
            record(prefix .. found, params_prefix .. found), ''}
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, job_id, redis.call('HGET', KEYS[1], 'fingerprint') or '', record(KEYS[1], KEYS[8]),
          ''}
end

local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local fields = {'id', job_id, 'state', 'queued', 'fingerprint', fingerprint,
                'created_at', now_ms, 'updated_at', now_ms, 'queued_at', now_ms,
                'deadline_at', now_ms + deadline_ms, 'attempts', 0, 'failures', 0}
for i = 12, #ARGV, 2 do
  fields[#fields + 1] = ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('SET', KEYS[8], ARGV[7])
if has_idem then
  redis.call('SET', KEYS[2], job_id .. '|' .. fingerprint, 'PX', idem_ttl_ms)
end
redis.call('ZADD', KEYS[4], now_ms, job_id)
redis.call('ZADD', KEYS[5], now_ms, job_id)
redis.call('ZADD', KEYS[7], now_ms + deadline_ms, job_id)
local placed = ''
local target, producer, priority = string.match(ARGV[8], '^(%d+)|([^|]+)|(%d)$')
if target and (redis.call('SCARD', KEYS[9]) > 0 or redis.call('ZCARD', KEYS[10]) > 0
               or redis.call('LLEN', KEYS[11]) >= tonumber(target)) then
  local seq = redis.call('INCR', KEYS[14])  -- admitted to its lane (admit.lua)
  redis.call('ZADD', KEYS[12], (9 - tonumber(priority)) * 10000000000000 + seq, job_id)
  redis.call('SADD', KEYS[9], producer)
  redis.call('HSET', KEYS[13], job_id, producer)
  placed = 'lane'
elseif target and ARGV[9] ~= '' then
  redis.call('LPUSH', KEYS[11], ARGV[9])  -- its message, at the front of the line
  if ARGV[11] ~= '' then redis.call('PUBLISH', ARGV[10], ARGV[11]) end
  placed = 'sent'
else
  redis.call('ZADD', KEYS[6], now_ms, job_id)  -- until the caller confirms the message sent
  if target then placed = 'send' end
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', events_maxlen, '*',
           'job', job_id, 'from', '', 'to', 'queued', 'reason', 'created', 't', now_ms)
fields[#fields + 1] = 'params'
fields[#fields + 1] = ARGV[7]
return {1, job_id, fingerprint, fields, placed}
