-- store_credits.lua: keep one credit balance read in the account's state hash (tasks/credits.py).
-- KEYS[1] the account's state hash
-- ARGV[1] the balance, ARGV[2] the grant's time (ms), ARGV[3..5] the fields: balance, read time,
--         grant time (workers/status.py reads the first two)
-- Writes the balance with the Redis time unless a read granted later already wrote one; returns
-- the time written, or 0.
local prev = tonumber(redis.call('HGET', KEYS[1], ARGV[5]) or '0')
if tonumber(ARGV[2]) < prev then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[3], ARGV[1], ARGV[4], now, ARGV[5], ARGV[2])
return now
