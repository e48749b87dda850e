-- Shared by the budget scripts. Amounts are non-negative integers up to i64::MAX kept
-- as decimal strings: Lua numbers are doubles, exact only below 2^53, so sums are done by
-- Redis (HINCRBY on strings) and comparisons on base-1e9 limbs, never on doubles.
--
-- Counter hash fields: cm/ct committed money/tokens, rm/rt live reserved money/tokens,
-- r:<id> = "<money> <tokens> <purge_at>" per reservation, a:<per-mille> fired alerts.
-- Counter zset members: L:<id> scored by deadline (live), D:<id> scored by purge time
-- (expired but remembered so a late commit is still charged and commits are idempotent).
local LIMB = 1000000000

local function big(s)
  if not s then return {0, 0} end
  local n = #s
  if n <= 9 then return {0, tonumber(s)} end
  return {tonumber(string.sub(s, 1, n - 9)), tonumber(string.sub(s, n - 8))}
end

local function add(a, b)
  local lo = a[2] + b[2]
  local hi = a[1] + b[1]
  if lo >= LIMB then
    lo = lo - LIMB
    hi = hi + 1
  end
  return {hi, lo}
end

local function gt(a, b)
  if a[1] ~= b[1] then return a[1] > b[1] end
  return a[2] > b[2]
end

local function is_zero(a)
  return a[1] == 0 and a[2] == 0
end

local function incr(h, field, v)
  if v ~= '0' then redis.call('HINCRBY', h, field, v) end
end

local function decr(h, field, v)
  if v ~= '0' then redis.call('HINCRBY', h, field, '-' .. v) end
end

-- Expire live reservations whose deadline is at or before now (they stop counting and
-- are remembered until their purge time), and forget remembered ones past it. Bounded
-- per call; what is left over still counts, which can only refuse more, never less.
local function prune(h, z, now)
  local due = redis.call('ZRANGEBYSCORE', z, '-inf', now, 'LIMIT', 0, 512)
  for _, member in ipairs(due) do
    redis.call('ZREM', z, member)
    local id = string.sub(member, 3)
    if string.sub(member, 1, 1) == 'L' then
      local v = redis.call('HGET', h, 'r:' .. id)
      if v then
        local m, t, purge = string.match(v, '^(%d+) (%d+) (%d+)$')
        decr(h, 'rm', m)
        decr(h, 'rt', t)
        redis.call('ZADD', z, purge, 'D:' .. id)
      end
    else
      redis.call('HDEL', h, 'r:' .. id)
    end
  end
end

-- Remove a reservation (live or remembered); true when it was there.
local function settle(h, z, id)
  local field = 'r:' .. id
  local v = redis.call('HGET', h, field)
  if not v then return false end
  if redis.call('ZREM', z, 'L:' .. id) == 1 then
    local m, t = string.match(v, '^(%d+) (%d+) ')
    decr(h, 'rm', m)
    decr(h, 'rt', t)
  else
    redis.call('ZREM', z, 'D:' .. id)
  end
  redis.call('HDEL', h, field)
  return true
end

local function usage(h)
  local v = redis.call('HMGET', h, 'cm', 'ct', 'rm', 'rt')
  return {v[1] or '0', v[2] or '0', v[3] or '0', v[4] or '0'}
end
