-- reap: recover jobs whose lease expired (their worker crashed or hung) and prune dead workers
-- (with their idle registration and handoff list: jobs on it are leased, so recovered by lease).
-- Each recovered job counts the lost attempt and goes back to the head of its pending list;
-- a job whose attempts are exhausted goes to the dead-letter queue as "lease expired"
-- (poison-pill protection). Safe to run from many processes at once.
-- KEYS[1]   -> jobqueue:{Q}:job:          job hash prefix
-- KEYS[2]   -> jobqueue:{Q}:active        ZSET id -> lease deadline (ms)
-- KEYS[3]   -> jobqueue:{Q}:dead          ZSET id -> time of death (ms)
-- KEYS[4]   -> jobqueue:{Q}:stats         HASH of lifetime counters
-- KEYS[5]   -> jobqueue:{Q}:workers       ZSET worker id -> registration expiry (ms)
-- KEYS[6]   -> jobqueue:{Q}:wake          LIST of wake-up tokens
-- KEYS[7]   -> jobqueue:{Q}:idle          ZSET worker id -> idle registration expiry (ms)
-- KEYS[8]   -> jobqueue:{Q}:idle_slots    HASH worker id -> "<free slots> <lease ms>"
-- KEYS[9]   -> jobqueue:{Q}:handoff:      handoff list prefix (lists are prefix..worker id)
-- KEYS[10..] -> jobqueue:{Q}:pending:<p>  one LIST per priority, highest first
-- ARGV[1]   -> now (ms)
-- ARGV[2]   -> most jobs to recover in this call (count)
-- ARGV[3]   -> wake cap (count)
-- ARGV[4..] -> priority names aligned with KEYS[10..]
-- Returns: {requeued ids (array), dead-lettered ids (array)}
local now = tonumber(ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local requeued, buried = {}, {}
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[2], id)
  local key = KEYS[1] .. id
  local f = redis.call('HMGET', key, 'state', 'prio', 'max_retries', 'worker')
  if f[1] == 'active' then
    local attempts = redis.call('HINCRBY', key, 'attempts', 1)
    local err = 'lease expired: worker ' .. (f[4] or '?') .. ' stopped renewing'
    redis.call('HDEL', key, 'token', 'worker', 'started_ms')
    if attempts > tonumber(f[3] or '0') then
      redis.call('HSET', key, 'state', 'dead', 'reason', 'lease expired', 'error', err, 'dead_ms', now)
      redis.call('ZADD', KEYS[3], now, id)
      redis.call('HINCRBY', KEYS[4], 'dead', 1)
      buried[#buried + 1] = id
    else
      local target = KEYS[#KEYS]
      for i = 4, #ARGV do
        if ARGV[i] == f[2] then target = KEYS[i + 6] break end
      end
      redis.call('HSET', key, 'state', 'pending', 'error', err, 'ready_ms', now)
      redis.call('RPUSH', target, id)
      requeued[#requeued + 1] = id
    end
  end
end
if #requeued + #buried > 0 then redis.call('HINCRBY', KEYS[4], 'reaped', #requeued + #buried) end
if #requeued > 0 then
  redis.call('LPUSH', KEYS[6], '1')
  redis.call('LTRIM', KEYS[6], 0, tonumber(ARGV[3]) - 1)
end
for _, w in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', KEYS[5], w)
  redis.call('ZREM', KEYS[7], w)
  redis.call('HDEL', KEYS[8], w)
  redis.call('DEL', KEYS[9] .. w)
end
return {requeued, buried}
