-- add_duplicate.lua: record an upstream task the job does not own (keep its own), count it once.
-- It is a second task for the job, or one that came back after the job moved on (its attempt
-- superseded, or the job ended): paid either way, so never silent.
--
-- Call: EVALSHA sha 3 job metric recent  task_id
-- KEYS[1] job     hash    the job record (upstream_task_id, dup_task_ids, dup_count)
-- KEYS[2] metric  string  fleet-wide counter of duplicate upstream tasks
-- KEYS[3] recent  list    the latest jobs with a duplicate (status page)
-- ARGV[1] task_id the newcomer
-- Returns 1 when recorded, 0 when it is the job's own task or already recorded, -1 missing.

--#include duplicate

if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return record_duplicate(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
