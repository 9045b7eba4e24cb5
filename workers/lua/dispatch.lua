-- dispatch.lua: take up to ``budget`` jobs from the producers' lanes, fairly (deficit round
-- robin), and lease each in the parked set for the pump to send.
--
-- Call: EVALSHA sha 4 lanes lane_of parked drr  budget lease_ms lane_prefix job_prefix weights
-- KEYS[1] lanes    set   producers whose lane holds jobs
-- KEYS[2] lane_of  hash  job id -> producer while it waits in a lane
-- KEYS[3] parked   zset  a dispatched job is leased there (score now + lease_ms): if its
--                        message is lost, the pump sends it again when the lease ends
-- KEYS[4] drr      hash  producer -> deficit; "~cursor" the lane served last; "~open" "1" while
--                        that lane's quantum for the current visit is already granted
-- ARGV[1] budget       most jobs to take
-- ARGV[2] lease_ms     see KEYS[3]
-- ARGV[3] lane_prefix  "{p}:lane:" (a lane's key is the prefix and the producer's name)
-- ARGV[4] job_prefix   "{p}:job:" (a job that is no longer ``queued``, or is parked already,
--                      is dropped, not sent)
-- ARGV[5] weights      "name=w|name=w|..." (a producer not named: weight 1)
-- Deficit round robin: the lanes are visited in name order from the cursor; a visit adds the
-- producer's weight to its deficit and takes jobs while the deficit is at least 1 (each job
-- costs 1), lowest score first (the highest priority, then the oldest). An emptied lane
-- leaves the round and its deficit is forgotten. A visit cut short by the budget resumes at
-- the next call without a second quantum, so the shares hold across calls whatever the
-- budget. Over any stretch where two lanes stay non-empty, their jobs taken differ from the
-- ratio of their weights by at most one quantum. Returns the job ids taken, in order.
local budget, lease_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local lane_prefix, job_prefix = ARGV[3], ARGV[4]
local names = redis.call('SMEMBERS', KEYS[1])
if budget <= 0 or #names == 0 then return {} end
table.sort(names)
local weights = {}
for name, w in string.gmatch(ARGV[5], '([^|=]+)=([^|]+)') do weights[name] = tonumber(w) end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cursor = redis.call('HGET', KEYS[4], '~cursor') or ''
local open = redis.call('HGET', KEYS[4], '~open') == '1'
local i = 1
for k, name in ipairs(names) do
  if name >= cursor then
    i = k
    break
  end
end
if names[i] ~= cursor then open = false end
local out, active, guard = {}, #names, 0
local empty = {}
while budget > 0 and active > 0 and guard < 100000 do
  guard = guard + 1
  local name = names[i]
  if not empty[name] then
    local deficit = tonumber(redis.call('HGET', KEYS[4], name) or '0')
    if not open then deficit = deficit + (weights[name] or 1) end
    open = false
    local lane = lane_prefix .. name
    while deficit >= 1 and budget > 0 do
      local popped = redis.call('ZPOPMIN', lane)
      if #popped == 0 then break end
      local job_id = popped[1]
      redis.call('HDEL', KEYS[2], job_id)
      if redis.call('HGET', job_prefix .. job_id, 'state') == 'queued'
          and not redis.call('ZSCORE', KEYS[3], job_id) then  -- parked: the pump has it
        redis.call('ZADD', KEYS[3], now_ms + lease_ms, job_id)
        out[#out + 1] = job_id
        deficit = deficit - 1
        budget = budget - 1
      end
    end
    if redis.call('EXISTS', lane) == 0 then
      empty[name] = true
      active = active - 1
      redis.call('SREM', KEYS[1], name)
      redis.call('HDEL', KEYS[4], name)
    else
      redis.call('HSET', KEYS[4], name, deficit)
      if budget <= 0 then
        if deficit >= 1 then  -- cut short: the next call resumes this visit, quantum granted
          redis.call('HSET', KEYS[4], '~cursor', name, '~open', '1')
        else  -- the visit is over: the next call starts at the next lane
          redis.call('HSET', KEYS[4], '~cursor', names[i % #names + 1], '~open', '0')
        end
        return out
      end
    end
  end
  i = i % #names + 1
end
redis.call('HSET', KEYS[4], '~cursor', names[i] or '', '~open', '0')
return out
