-- add_duplicate.lua: record an upstream task the job does not own (keep its own), count it once.
-- It is a second task for the job, or one that came back after the job moved on (its attempt
-- superseded, or the job ended): paid either way, so never silent.
--
-- Call: EVALSHA sha 2 job metric  task_id
-- KEYS[1] job     hash    the job record (upstream_task_id, dup_task_ids, dup_count)
-- KEYS[2] metric  string  fleet-wide counter of duplicate upstream tasks
-- ARGV[1] task_id the newcomer
-- Returns 1 when recorded, 0 when it is the job's own task or already recorded, -1 missing.

local task_id = ARGV[1]
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local known = redis.call('HGET', KEYS[1], 'upstream_task_id') or ''
if task_id == '' or known == task_id then return 0 end
local dups = redis.call('HGET', KEYS[1], 'dup_task_ids') or ''
for seen in string.gmatch(dups, '[^,]+') do
  if seen == task_id then return 0 end
end
redis.call('HSET', KEYS[1], 'dup_task_ids', dups == '' and task_id or (dups .. ',' .. task_id))
redis.call('HINCRBY', KEYS[1], 'dup_count', 1)
redis.call('INCR', KEYS[2])
return 1
