-- KEYS: per slot, counter hash then zset.
-- ARGV: id, money, tokens, then per slot: kind (m/t), k, then k pairs (per-mille, at).
-- Returns per slot {charged 0/1, committed money, committed tokens, {fired per-mille...}}.
local id, m, t = ARGV[1], ARGV[2], ARGV[3]
local pos = 4
local out = {}
for i = 1, #KEYS / 2 do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  local kind, k = ARGV[pos], tonumber(ARGV[pos + 1])
  pos = pos + 2
  local charged = 0
  local fired = {}
  if settle(h, z, id) then
    charged = 1
    incr(h, 'cm', m)
    incr(h, 'ct', t)
    local c = redis.call('HMGET', h, 'cm', 'ct')
    local used = big((kind == 'm') and (c[1] or '0') or (c[2] or '0'))
    if not is_zero(used) then
      for j = 0, k - 1 do
        local pm, at = ARGV[pos + 2 * j], ARGV[pos + 2 * j + 1]
        if not gt(big(at), used) and redis.call('HSETNX', h, 'a:' .. pm, '1') == 1 then
          fired[#fired + 1] = pm
        end
      end
    end
  end
  pos = pos + 2 * k
  local c = redis.call('HMGET', h, 'cm', 'ct')
  out[i] = {charged, c[1] or '0', c[2] or '0', fired}
end
return out
