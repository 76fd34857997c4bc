-- promote: move scheduled jobs (delayed jobs, retries after backoff) that are due to their pending list.
-- KEYS[1]   -> jobqueue:{Q}:job:          job hash prefix
-- KEYS[2]   -> jobqueue:{Q}:scheduled     ZSET id -> due time (ms)
-- KEYS[3]   -> jobqueue:{Q}:wake          LIST of wake-up tokens
-- KEYS[4..] -> jobqueue:{Q}:pending:<p>   one LIST per priority, highest first
-- ARGV[1]   -> now (ms)
-- ARGV[2]   -> most jobs to move in this call (count)
-- ARGV[3]   -> wake cap (count)
-- ARGV[4..] -> priority names aligned with KEYS[4..]; a job of an unknown priority goes to the last list
-- Returns: {moved (count), due time of the next scheduled job (ms) or -1 when none}
local now = tonumber(ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local moved = 0
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[2], id)
  local key = KEYS[1] .. id
  local prio = redis.call('HGET', key, 'prio')
  if prio then
    local target = KEYS[#KEYS]
    for i = 4, #ARGV do
      if ARGV[i] == prio then target = KEYS[i] break end
    end
    redis.call('HSET', key, 'state', 'pending', 'ready_ms', now)
    redis.call('LPUSH', target, id)
    moved = moved + 1
  end
end
if moved > 0 then
  redis.call('LPUSH', KEYS[3], '1')
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[3]) - 1)
end
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #nxt == 0 then return {moved, -1} end
return {moved, tonumber(nxt[2])}
