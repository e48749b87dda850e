-- KEYS: counter hash. ARGV: per-mille thresholds whose markers to clear.
local h = KEYS[1]
if redis.call('EXISTS', h) == 0 then return 0 end
redis.call('HSET', h, 'cm', '0', 'ct', '0')
for i = 1, #ARGV do
  redis.call('HDEL', h, 'a:' .. ARGV[i])
end
return 1
