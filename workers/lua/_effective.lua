-- _effective.lua: the effective limit of a bucket, floor(limit * factor) and at least 1 (the
-- AIMD factor, see report.lua). limiter.py's effective_limit is the same rule; a unit test runs
-- both over a grid of limits and factors.
local function effective_limit(limit, factor)
  return math.max(1, math.floor(limit * factor + 1e-9))
end
