-- bury: move jobs to the dead-letter queue, keeping payload, reason, last error, attempts and time.
-- KEYS[1]   -> jobqueue:{Q}:job:          job hash prefix
-- KEYS[2]   -> jobqueue:{Q}:active        ZSET id -> lease deadline (ms)
-- KEYS[3]   -> jobqueue:{Q}:dead          ZSET id -> time of death (ms)
-- KEYS[4]   -> jobqueue:{Q}:stats         HASH of lifetime counters
-- ARGV[1]   -> now (ms)
-- ARGV[2..] -> quintuples: job id, lease token, reason, error text, count this attempt (1/0)
-- Returns: array with 1 (buried) or 0 (LEASE_LOST) per job, in order.
local now = ARGV[1]
local out = {}
local n = 0
for a = 2, #ARGV, 5 do
  local id = ARGV[a]
  local key = KEYS[1] .. id
  local f = redis.call('HMGET', key, 'token', 'state')
  if f[1] == ARGV[a + 1] and f[2] == 'active' then
    if ARGV[a + 4] == '1' then redis.call('HINCRBY', key, 'attempts', 1) end
    redis.call('HSET', key, 'state', 'dead', 'reason', ARGV[a + 2], 'error', ARGV[a + 3], 'dead_ms', now)
    redis.call('HDEL', key, 'token', 'worker', 'started_ms')
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZADD', KEYS[3], now, id)
    n = n + 1
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if n > 0 then redis.call('HINCRBY', KEYS[4], 'dead', n) end
return out
