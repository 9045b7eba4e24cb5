-- _duplicate.lua: one rule for an upstream task a job does not own, included by the scripts that
-- meet one (transition.lua, add_duplicate.lua) where they include "duplicate".
-- The job keeps its own task; the newcomer is listed once in dup_task_ids and counted once in
-- dup_count and in the fleet-wide counter (paid either way, so never silent); the job also goes
-- to the head of the list of the latest jobs with a duplicate (Keys.recent: at most
-- RECENT_DUPLICATES, here the one definition), which the status page shows.
local RECENT_DUPLICATES = 20
-- Returns 1 when recorded, 0 when it is the job's own task, empty, or already recorded.
local function record_duplicate(job_key, metric_key, recent_key, task_id)
  local known = redis.call('HGET', job_key, 'upstream_task_id') or ''
  if task_id == '' or known == task_id then return 0 end
  local dups = redis.call('HGET', job_key, 'dup_task_ids') or ''
  for seen in string.gmatch(dups, '[^,]+') do
    if seen == task_id then return 0 end
  end
  redis.call('HSET', job_key, 'dup_task_ids', dups == '' and task_id or (dups .. ',' .. task_id))
  redis.call('HINCRBY', job_key, 'dup_count', 1)
  redis.call('INCR', metric_key)
  local job_id = redis.call('HGET', job_key, 'id')
  redis.call('LREM', recent_key, 0, job_id)
  redis.call('LPUSH', recent_key, job_id)
  redis.call('LTRIM', recent_key, 0, RECENT_DUPLICATES - 1)
  return 1
end
