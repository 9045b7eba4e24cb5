-- store_credits.lua: keep one credit balance read in the account's state hash (tasks/credits.py)
-- and learn what one accepted submission costs.
-- KEYS[1] the account's state hash
-- ARGV[1] the balance, ARGV[2] the grant's time (ms), ARGV[3..5] the fields: balance, read time,
--         grant time (workers/status.py reads the first two), ARGV[6] the configured cost of
--         one accepted submission ("" to learn it)
-- Writes the balance with the Redis time unless a read granted later already wrote one; returns
-- the time written, or 0.
-- Cost: "credits:charged" counts accepted submissions (report.lua); its value at each stored
-- read is kept in "credits:charged_at_read". Between two reads, a balance that fell by D while
-- d > 0 submissions were accepted gives one sample D / d; "credits:cost" is the mean of the
-- last estimate and the sample (a top-up, D <= 0, teaches nothing). A configured cost wins.
-- acquire.lua stops granting submissions when credits - cost * (charged since the read + in
-- flight + 1) would fall below the account's floor.
local prev = tonumber(redis.call('HGET', KEYS[1], ARGV[5]) or '0')
if tonumber(ARGV[2]) < prev then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], ARGV[3], 'credits:charged', 'credits:charged_at_read',
                     'credits:cost')
local balance, charged = tonumber(ARGV[1]), tonumber(s[2]) or 0
local cost = tonumber(ARGV[6])
if not cost then
  local before, at_read, known = tonumber(s[1]), tonumber(s[3]), tonumber(s[4])
  cost = known
  if before and at_read and charged > at_read and before > balance then
    local sample = (before - balance) / (charged - at_read)
    cost = known and (known + sample) / 2 or sample
  end
end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[1], ARGV[4], now, ARGV[5], ARGV[2],
           'credits:charged_at_read', charged)
if cost then redis.call('HSET', KEYS[1], 'credits:cost', cost) end
return now
