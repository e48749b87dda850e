-- KEYS: per slot, counter hash then zset. ARGV: id.
for i = 1, #KEYS / 2 do
  settle(KEYS[2 * i - 1], KEYS[2 * i], ARGV[1])
end
return 1
