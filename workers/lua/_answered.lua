-- _answered.lua: apply a batch of normal answers ("up": accepted, rejected) of one bucket's
-- plain grants (kind "ok"), the ones limiter.py holds back to send with the next acquire
-- (acquire.lua) or at most FLUSH_S later (settle.lua; see workers/answers.py). Exactly what
-- report.lua does for each: the answer is counted ("<purpose>:calls:<outcome>", and
-- "credits:charged" for an accepted, charged submission), the AIMD factor takes its additive
-- increase once per answer (count_answered), and the grant's log entry is lowered to now
-- (lower_answered: its call was answered, so it reached the provider before now; lowering
-- to the time the batch is applied, at or after each answer's, is the safe side).
-- counts: "accepted=3,rejected=1", or one outcome's name when every answer of the batch has
-- it (the hot path: no parsing); the grants' ids are ARGV[first..].
local function count_answered(state, purpose, limit, charged, factor, counts, first)
  local n = 0
  local function count(outcome, c)
    n = n + c
    redis.call('HINCRBY', state, purpose .. ':calls:' .. outcome, c)
    if charged and outcome == 'accepted' then redis.call('HINCRBY', state, 'credits:charged', c) end
  end
  if string.find(counts, '=', 1, true) then
    for outcome, c in string.gmatch(counts, '([%w_]+)=(%d+)') do count(outcome, tonumber(c)) end
  else
    count(counts, #ARGV - first + 1)
  end
  if n > 0 and factor < 1 then
    for _ = 1, n do  -- additive increase: about one more call per window of successes
      factor = math.min(1, factor + 1 / (limit * math.max(1, limit * factor)))
    end
    redis.call('HSET', state, purpose .. ':factor', factor)
  end
  return factor
end

-- acquire.lua adds its new grant in the same ZADD, so it cannot say XX: an answered entry
-- already gone (trimmed, or lost with the data) comes back at now, which counts no more than
-- an unanswered entry did (min(score, now) = now); settle.lua says XX (flags "XX", "LT").
local function answered_zadd(log, now_ms, first, ...)
  local args = {'ZADD', log, ...}
  for i = first, #ARGV do
    args[#args + 1] = now_ms
    args[#args + 1] = ARGV[i]
  end
  return args
end

local function lower_answered(log, now_ms, first)
  if #ARGV >= first then redis.call(unpack(answered_zadd(log, now_ms, first, 'XX', 'LT'))) end
end
