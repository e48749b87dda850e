-- KEYS: counter hash, zset. ARGV: now. Returns usage (4 strings).
prune(KEYS[1], KEYS[2], ARGV[1])
return usage(KEYS[1])
