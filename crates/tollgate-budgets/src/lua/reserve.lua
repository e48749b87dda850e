-- KEYS: per slot, counter hash then zset.
-- ARGV: now, id, money, tokens, deadline, purge_at, then per slot: kind (n = no limit,
-- m = money, t = tokens), limit, time to live in ms (- for ever).
-- Returns {1, usage...} (4 strings per slot, after) or {0, slot, usage (4 strings, before)}.
local now, id, m, t, deadline, purge = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local n = #KEYS / 2
local want = {big(m), big(t)}
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  prune(h, z, now)
  local kind = ARGV[6 + 3 * (i - 1) + 1]
  if kind ~= 'n' then
    local u = usage(h)
    local d = (kind == 'm') and 1 or 2
    local used = add(big(u[d]), big(u[d + 2]))
    if gt(add(used, want[d]), big(ARGV[6 + 3 * (i - 1) + 2])) then
      return {0, i - 1, u[1], u[2], u[3], u[4]}
    end
  end
end
local out = {1}
local entry = m .. ' ' .. t .. ' ' .. purge
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  incr(h, 'rm', m)
  incr(h, 'rt', t)
  redis.call('HSET', h, 'r:' .. id, entry)
  redis.call('ZADD', z, deadline, 'L:' .. id)
  local keep = ARGV[6 + 3 * (i - 1) + 3]
  if keep ~= '-' then
    redis.call('PEXPIRE', h, keep)
    redis.call('PEXPIRE', z, keep)
  end
  local u = usage(h)
  for j = 1, 4 do out[#out + 1] = u[j] end
end
return out
