-- fence.lua: decide, on a Redis instance new to an account's limiter, whether its state may
-- lack grants the provider has already seen, and if so fence the account for one window.
--
-- Call: EVAL <source> 1 state  known
--   (always EVAL with the full source, whatever the instance's script cache holds; the caller
--   sends it in one MULTI with the SCRIPT LOAD of acquire.lua for the instance it found by
--   INFO, so that acquire exists on an instance only once the fence is decided there)
-- KEYS[1] state  hash  the account's limiter state (see acquire.lua); this script reads and
--                      writes ``server`` (the run_id of the instance that made the last fence
--                      decision) and ``fence_at`` (ms on the Redis clock; acquire.lua grants
--                      nothing in a bucket before fence_at + the bucket's window)
-- ARGV[1] known  the run_id this client process last saw for the account at the same address
--                ("" when it never talked to Redis about this account)
-- Returns "run_id|fence_at|why", why one of
--   "same"   the state names this instance: the decision was made here already (a SCRIPT
--            FLUSH, or another process got here first): nothing changes
--   "moved"  the state names another instance: it was restored (RDB/AOF restart, which can lose
--            the last second of grants) or replicated (a promoted replica, or a demoted primary
--            promoted again: either can lag): fenced
--   "lost"   no state at all, but this client saw another instance before: the data was lost
--            while the fleet lived (restart without persistence): fenced
--   "new"    no state, and a client that knows no other instance (a new deployment) or only
--            this one (the keys were deleted on this live instance): not fenced
-- The instance's identity is its run_id, read here (INFO runs in scripts, and reading it in the
-- same atomic step as the decision leaves no gap for the instance to change in between). A
-- fence starts now: every grant the lost data held was made before this instance took over,
-- and the fence ends a whole window after that.

local run_id = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
if not run_id then return redis.error_reply('fence.lua: no run_id in INFO server') end
local known = ARGV[1]
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'server', 'fence_at')
local recorded, fence_at = s[1], tonumber(s[2]) or 0

local why
if recorded == run_id then
  why = 'same'
elseif recorded then
  why = 'moved'
elseif known ~= '' and known ~= run_id then
  why = 'lost'
else
  why = 'new'
end
if why == 'moved' or why == 'lost' then
  fence_at = math.max(fence_at, now_ms)
  redis.call('HSET', KEYS[1], 'fence_at', fence_at, 'fence:why', why,
             'fence:previous', recorded or known)
end
if why ~= 'same' then redis.call('HSET', KEYS[1], 'server', run_id) end
return run_id .. '|' .. fence_at .. '|' .. why
