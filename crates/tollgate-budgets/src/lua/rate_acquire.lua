-- KEYS: bucket hash, concurrency zset.
-- ARGV: now, rpm (- none), tpm (- none), tokens, max concurrency (- none), slot id,
-- slot deadline, slot ttl ms.
-- Returns {1, remaining requests or -1, remaining tokens or -1} or {0, dimension, wait ms}.
local h, c = KEYS[1], KEYS[2]
local now = tonumber(ARGV[1])
local v = redis.call('HMGET', h, 'rl', 'rs', 'tl', 'ts')
local wait, dim = -1, nil
local function refuse(d, ms)
  if ms > wait then
    wait = ms
    dim = d
  end
end
local r_ok, r_new, r_x, r_limit
local t_ok, t_new, t_x, t_limit
if ARGV[2] ~= '-' then
  r_limit = tonumber(ARGV[2])
  r_ok, r_new, r_x = admit(drained(tonumber(v[1] or '0'), tonumber(v[2] or '0'), r_limit, now), 1, r_limit)
  if not r_ok then refuse('rpm', r_x) end
end
if ARGV[3] ~= '-' then
  t_limit = tonumber(ARGV[3])
  t_ok, t_new, t_x = admit(drained(tonumber(v[3] or '0'), tonumber(v[4] or '0'), t_limit, now), tonumber(ARGV[4]), t_limit)
  if not t_ok then refuse('tpm', t_x) end
end
if ARGV[5] ~= '-' then
  redis.call('ZREMRANGEBYSCORE', c, '-inf', ARGV[1])
  if redis.call('ZCARD', c) >= tonumber(ARGV[5]) then refuse('concurrency', 1000) end
end
if dim then return {0, dim, wait} end
local out = {1, -1, -1}
if r_limit then
  redis.call('HSET', h, 'rl', fmt(r_new), 'rs', ARGV[1])
  keep(h, r_new, r_limit)
  out[2] = r_x
end
if t_limit then
  redis.call('HSET', h, 'tl', fmt(t_new), 'ts', ARGV[1])
  keep(h, t_new, t_limit)
  out[3] = t_x
end
if ARGV[5] ~= '-' then
  redis.call('ZADD', c, ARGV[7], ARGV[6])
  redis.call('PEXPIRE', c, ARGV[8])
end
return out
