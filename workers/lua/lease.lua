-- lease.lua: take or renew the leases a live worker node holds on the jobs it was delivered.
--
-- Call: EVALSHA sha 2 leases holders  mode ttl_ms node [job_id tag]...   (mode "take")
--       EVALSHA sha 2 leases holders  mode ttl_ms node [job_id]...       (mode "renew")
--       EVALSHA sha 2 leases holders  mode ttl_ms node [job_id]...       (mode "release")
-- KEYS[1] leases   zset  job id -> ms its lease ends (housekeeping reclaims it after that)
-- KEYS[2] holders  hash  job id -> "<node> <broker delivery tag>" of the lease's holder
-- ARGV[1] mode     "take": a node received a message for these jobs (sets holder and lease);
--                  "renew": the node still holds them (extends only leases that still exist and
--                  that this node holds, so a lease released meanwhile is never recreated);
--                  "release": the node's delivery ended (drops only leases this node holds,
--                  never one another node took since)
-- ARGV[2] ttl_ms   lease length from now: several heartbeats, so a live node never loses one
-- ARGV[3] node     the worker node's name (``celery@host``)
-- Returns the number of leases written (or dropped). Server clock, ms.

local mode, ttl_ms, node = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + ttl_ms
local written = 0
if mode == 'take' then
  for i = 4, #ARGV, 2 do
    redis.call('ZADD', KEYS[1], until_ms, ARGV[i])
    redis.call('HSET', KEYS[2], ARGV[i], node .. ' ' .. ARGV[i + 1])
    written = written + 1
  end
else
  local prefix = node .. ' '
  for i = 4, #ARGV do
    local holder = redis.call('HGET', KEYS[2], ARGV[i])
    if holder and string.sub(holder, 1, #prefix) == prefix then
      if mode == 'release' then
        redis.call('ZREM', KEYS[1], ARGV[i])
        redis.call('HDEL', KEYS[2], ARGV[i])
      else
        redis.call('ZADD', KEYS[1], 'XX', until_ms, ARGV[i])
      end
      written = written + 1
    end
  end
end
return written
