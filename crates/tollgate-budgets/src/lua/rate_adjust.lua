-- KEYS: bucket hash. ARGV: now, tpm, delta tokens (signed).
local h = KEYS[1]
if redis.call('EXISTS', h) == 0 then return 0 end
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local v = redis.call('HMGET', h, 'tl', 'ts')
local level = drained(tonumber(v[1] or '0'), tonumber(v[2] or '0'), limit, now) + tonumber(ARGV[3]) * MINUTE
if level < 0 then level = 0 end
redis.call('HSET', h, 'tl', fmt(level), 'ts', ARGV[1])
keep(h, level, limit)
return 1
