-- KEYS: counter hash, zset. ARGV: money, tokens, time to live in ms (- for ever), then the
-- per-mille thresholds to mark fired.
local h, z = KEYS[1], KEYS[2]
redis.call('HSET', h, 'cm', ARGV[1], 'ct', ARGV[2])
for i = 4, #ARGV do
  redis.call('HSET', h, 'a:' .. ARGV[i], '1')
end
if ARGV[3] ~= '-' then
  redis.call('PEXPIRE', h, ARGV[3])
  if redis.call('EXISTS', z) == 1 then redis.call('PEXPIRE', z, ARGV[3]) end
end
return 1
