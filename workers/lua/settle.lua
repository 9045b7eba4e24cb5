-- settle.lua: the normal answers limiter.py held back, sent on their own when no acquire of
-- the bucket took them within FLUSH_S (see _answered.lua for what each does).
--
-- Call: EVALSHA sha 2 log state  config counts grant_id...
--   config = "purpose|limit|charged" (charged "1": an accepted call costs credits)
--   counts = "outcome=n,..." (e.g. "accepted=3,rejected=1"), or one outcome's name when all
--            the answers have it, then the answered grants' ids
-- Returns the number of grant ids applied.

--#include answered

local purpose, limit, charged = string.match(ARGV[1], '^([^|]+)|(%d+)|([01])$')
if not purpose then return redis.error_reply('settle.lua: bad config ' .. ARGV[1]) end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local factor = tonumber(redis.call('HGET', KEYS[2], purpose .. ':factor')) or 1
count_answered(KEYS[2], purpose, tonumber(limit), charged == '1', factor, ARGV[2], 3)
lower_answered(KEYS[1], now_ms, 3)
return #ARGV - 2
