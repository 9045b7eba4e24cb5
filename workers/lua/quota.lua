-- quota.lua: count one new job against its producer's quota (at most N in any W ms), or say
-- how long until it may be created.
--
-- Call: EVALSHA sha 1 quota  limit window_ms member
-- KEYS[1] quota  zset  member -> ms it was counted (the producer's last W ms of jobs)
-- ARGV[3] member       the new job's id (ZREM it to give the place back: a replayed request)
-- Returns 0 when counted, else the ms until the oldest counted job leaves the window.
local limit, window_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - window_ms)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window_ms - now_ms)
end
redis.call('ZADD', KEYS[1], now_ms, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window_ms)
return 0
