-- requeue_dlq: move dead-letter jobs back to the tail of their pending list with attempts reset.
-- KEYS[1]   -> jobqueue:{Q}:job:          job hash prefix
-- KEYS[2]   -> jobqueue:{Q}:dead          ZSET id -> time of death (ms)
-- KEYS[3]   -> jobqueue:{Q}:wake          LIST of wake-up tokens
-- KEYS[4..] -> jobqueue:{Q}:pending:<p>   one LIST per priority, highest first
-- ARGV[1]   -> now (ms)
-- ARGV[2]   -> wake cap (count)
-- ARGV[3]   -> N, most jobs to move when no id is given (count, oldest first)
-- ARGV[4]   -> a single job id to move, or ""
-- ARGV[5..] -> priority names aligned with KEYS[4..]
-- Returns: array of the ids moved
local ids
if ARGV[4] ~= '' then
  if not redis.call('ZSCORE', KEYS[2], ARGV[4]) then return {} end
  ids = {ARGV[4]}
else
  ids = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[3]) - 1)
end
local moved = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[2], id)
  local key = KEYS[1] .. id
  local prio = redis.call('HGET', key, 'prio')
  if prio then
    local target = KEYS[#KEYS]
    for i = 5, #ARGV do
      if ARGV[i] == prio then target = KEYS[i - 1] break end
    end
    redis.call('HSET', key, 'state', 'pending', 'attempts', 0, 'ready_ms', ARGV[1])
    redis.call('HDEL', key, 'reason', 'dead_ms')
    redis.call('LPUSH', target, id)
    moved[#moved + 1] = id
  end
end
if #moved > 0 then
  redis.call('LPUSH', KEYS[3], '1')
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[2]) - 1)
end
return moved
