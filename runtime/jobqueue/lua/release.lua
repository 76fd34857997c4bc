-- release: give leased jobs back unfinished (graceful shutdown): head of their pending list,
-- attempt not counted.
-- KEYS[1]   -> jobqueue:{Q}:job:          job hash prefix
-- KEYS[2]   -> jobqueue:{Q}:active        ZSET id -> lease deadline (ms)
-- KEYS[3]   -> jobqueue:{Q}:wake          LIST of wake-up tokens
-- KEYS[4..] -> jobqueue:{Q}:pending:<p>   one LIST per priority, highest first
-- ARGV[1]   -> now (ms)
-- ARGV[2]   -> wake cap (count)
-- ARGV[3]   -> P, number of priorities; ARGV[4..3+P] -> names aligned with KEYS[4..]
-- ARGV[4+P..] -> pairs: job id, lease token
-- Returns: array with 1 (released) or 0 (LEASE_LOST) per job, in order.
local np = tonumber(ARGV[3])
local out = {}
local n = 0
for a = 4 + np, #ARGV, 2 do
  local id = ARGV[a]
  local key = KEYS[1] .. id
  local f = redis.call('HMGET', key, 'token', 'state', 'prio')
  if f[1] == ARGV[a + 1] and f[2] == 'active' then
    local target = KEYS[#KEYS]
    for i = 1, np do
      if ARGV[3 + i] == f[3] then target = KEYS[3 + i] break end
    end
    redis.call('HSET', key, 'state', 'pending', 'ready_ms', ARGV[1])
    redis.call('HDEL', key, 'token', 'worker', 'started_ms')
    redis.call('ZREM', KEYS[2], id)
    redis.call('RPUSH', target, id)
    n = n + 1
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if n > 0 then
  redis.call('LPUSH', KEYS[3], '1')
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[2]) - 1)
end
return out
