-- retry: a failed attempt; the job waits in the scheduled set until its backoff is over.
-- KEYS[1]   -> jobqueue:{Q}:job:          job hash prefix
-- KEYS[2]   -> jobqueue:{Q}:active        ZSET id -> lease deadline (ms)
-- KEYS[3]   -> jobqueue:{Q}:scheduled     ZSET id -> due time (ms)
-- KEYS[4]   -> jobqueue:{Q}:stats         HASH of lifetime counters
-- ARGV[1]   -> now (ms)
-- ARGV[2..] -> quadruples: job id, lease token, due time (ms), error text
-- Returns: array with 1 (scheduled) or 0 (LEASE_LOST) per job, in order.
local out = {}
local n = 0
for a = 2, #ARGV, 4 do
  local id = ARGV[a]
  local key = KEYS[1] .. id
  local f = redis.call('HMGET', key, 'token', 'state')
  if f[1] == ARGV[a + 1] and f[2] == 'active' then
    redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('HSET', key, 'state', 'scheduled', 'error', ARGV[a + 3], 'ready_ms', ARGV[a + 2])
    redis.call('HDEL', key, 'token', 'worker', 'started_ms')
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZADD', KEYS[3], ARGV[a + 2], id)
    n = n + 1
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if n > 0 then redis.call('HINCRBY', KEYS[4], 'retried', n) end
return out
