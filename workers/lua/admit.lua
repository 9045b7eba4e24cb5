-- admit.lua: a new queued job waits in its producer's lane instead of the broker.
--
-- Call: EVALSHA sha 5 lane lanes lane_of outbox seq  job_id producer priority
-- KEYS[1] lane     zset  the producer's waiting jobs: id -> (9 - priority) * 1e13 + the
--                        admission's sequence number (priority 9 first, then first come)
-- KEYS[2] lanes    set   producers whose lane holds jobs
-- KEYS[3] lane_of  hash  job id -> producer (housekeeping's rescues leave such a job alone)
-- KEYS[4] outbox   zset  the job leaves it: the lane holds it now (nothing to re-send)
-- KEYS[5] seq      string  the admissions' counter (exact order, even within one ms)
-- Only a job still ``queued`` is admitted (KEYS job state checked by the caller's create, in
-- the same Redis: a cancel in between leaves a lane entry the pump skips). Returns 1.
local seq = redis.call('INCR', KEYS[5])
redis.call('ZADD', KEYS[1], (9 - tonumber(ARGV[3])) * 10000000000000 + seq, ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
