-- queue_stats: read every queue-wide figure in one round trip (admin stats, metrics, the operator's
-- autoscaler). Read-only.
-- KEYS[1]   -> jobqueue:{Q}:job:          job hash prefix
-- KEYS[2]   -> jobqueue:{Q}:active        ZSET id -> lease deadline (ms)
-- KEYS[3]   -> jobqueue:{Q}:scheduled     ZSET id -> due time (ms)
-- KEYS[4]   -> jobqueue:{Q}:dead          ZSET id -> time of death (ms)
-- KEYS[5]   -> jobqueue:{Q}:workers       ZSET worker id -> registration expiry (ms)
-- KEYS[6]   -> jobqueue:{Q}:stats         HASH of lifetime counters
-- KEYS[7]   -> jobqueue:{Q}:completed     LIST of completed summaries
-- KEYS[8..] -> jobqueue:{Q}:pending:<p>   one LIST per priority, highest first
-- ARGV[1]   -> now (ms)
-- Returns: {per priority: {length, ready_ms of the oldest or -1} (array), in flight, scheduled,
--           scheduled and due, dead, live workers, completed kept, lifetime counters (flat HGETALL)}
local now = tonumber(ARGV[1])
local per = {}
for i = 8, #KEYS do
  local len = redis.call('LLEN', KEYS[i])
  local oldest = -1
  if len > 0 then
    local id = redis.call('LINDEX', KEYS[i], -1)
    local r = redis.call('HGET', KEYS[1] .. id, 'ready_ms')
    if r then oldest = tonumber(r) end
  end
  per[#per + 1] = {len, oldest}
end
return {
  per,
  redis.call('ZCARD', KEYS[2]),
  redis.call('ZCARD', KEYS[3]),
  redis.call('ZCOUNT', KEYS[3], '-inf', now),
  redis.call('ZCARD', KEYS[4]),
  redis.call('ZCOUNT', KEYS[5], now + 1, '+inf'),
  redis.call('LLEN', KEYS[7]),
  redis.call('HGETALL', KEYS[6]),
}
