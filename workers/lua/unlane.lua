-- unlane.lua: take a job out of its producer's lane (cancelled, expired); an emptied lane
-- leaves the set of lanes in use, so an idle system sends new jobs at once again.
--
-- Call: EVALSHA sha 3 lane lanes lane_of  job_id producer
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[2]) end
return 1
