-- budget.lua: reserve one job's estimated cost against its producer's credit budget.
--
-- Call: EVALSHA sha 1 budget  producer cost budget
-- KEYS[1] budget  hash  producer -> credits reserved by its jobs so far (a cancelled job's
--                       reservation is given back; every other job's stays: spent)
-- Returns "" when reserved, else the credits already reserved (the job would pass the budget).
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local cost, budget = tonumber(ARGV[2]), tonumber(ARGV[3])
if current + cost > budget then return tostring(current) end
redis.call('HINCRBYFLOAT', KEYS[1], ARGV[1], cost)
return ''
