-- Leaky buckets in integer token-milliseconds (see rate.rs); every value stays far below
-- 2^53 for any realistic limit, so doubles are exact here.
-- Bucket hash fields: rl/rs level and last update of the request bucket, tl/ts of the
-- token bucket. Concurrency zset: slot ids scored by deadline.
local MINUTE = 60000

local function fmt(x)
  return string.format('%.0f', x)
end

local function drained(level, last, limit, now)
  if level <= 0 then return 0 end
  local elapsed = now - last
  if elapsed <= 0 then return level end
  if elapsed > math.floor(level / limit) then return 0 end
  local l = level - elapsed * limit
  if l < 0 then return 0 end
  return l
end

-- Returns admitted, new level, remaining units (admitted) or ms to wait (refused).
local function admit(level, cost, limit)
  if limit == 0 then return false, 0, MINUTE end
  local cap = limit * MINUTE
  local add = cost * MINUTE
  local new = level + add
  if new <= cap then return true, new, math.floor((cap - new) / MINUTE) end
  if add > cap then
    if level == 0 then return true, new, 0 end
    return false, 0, math.floor((level + limit - 1) / limit)
  end
  return false, 0, math.floor((new - cap + limit - 1) / limit)
end

-- Keep the bucket hash at least until a bucket at `level` drained, plus a minute.
local function keep(h, level, limit)
  local ms = MINUTE
  if limit > 0 then ms = math.floor((level + limit - 1) / limit) + MINUTE end
  if redis.call('PTTL', h) < ms then redis.call('PEXPIRE', h, fmt(ms)) end
end
