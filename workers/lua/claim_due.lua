-- claim_due.lua: lease the members of a schedule zset whose time has come.
--
-- Call: EVALSHA sha 1 schedule  limit lease_ms [min_age_ms]
-- KEYS[1] schedule  zset  member -> ms when it is due
-- ARGV[1] limit     most members to claim in this call
-- ARGV[2] lease_ms  claimed members are re-scored to now + lease_ms, so a second caller (another
--                   beat, or this one restarted mid-cycle) does not see them until the lease ends
-- ARGV[3] min_age_ms  optional: claim only members due this long ago or earlier (default 0)
-- Returns the claimed members, oldest due first. Cost is O(log N + claimed). Server clock, ms.

local limit = tonumber(ARGV[1])
local lease_ms = tonumber(ARGV[2])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local min_age_ms = tonumber(ARGV[3] or 0) or 0
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms - min_age_ms, 'LIMIT', 0, limit)
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', now_ms + lease_ms, member)
end
return due
