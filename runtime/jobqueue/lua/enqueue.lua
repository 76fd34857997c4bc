-- enqueue: add new jobs, ready now (pending list tail) or at a due time (scheduled set).
-- A job whose id already exists is not touched (idempotent enqueue with caller-given ids).
-- KEYS[1]     -> jobqueue:{Q}:job:          job hash prefix (hashes are prefix..id)
-- KEYS[2]     -> jobqueue:{Q}:scheduled     ZSET id -> due time (ms)
-- KEYS[3]     -> jobqueue:{Q}:wake          LIST of wake-up tokens
-- KEYS[4..]   -> jobqueue:{Q}:pending:<p>   one LIST per priority, highest first
-- ARGV[1]     -> now (ms since epoch)
-- ARGV[2]     -> wake cap: most tokens kept in the wake list (count)
-- ARGV[3]     -> pub/sub channel told when an empty queue receives work
-- ARGV[4]     -> P, number of priorities; ARGV[5..4+P] -> their names, aligned with KEYS[4..]
-- ARGV[5+P..] -> groups of 5: id, priority index (1-based), due (ms, 0 = now), max_retries, job JSON
-- Returns: array with 1 (enqueued) or 0 (id already exists) per job, in order.
local now = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local np = tonumber(ARGV[4])
local was_empty = true
for i = 1, np do
  if redis.call('LLEN', KEYS[3 + i]) > 0 then was_empty = false break end
end
local out = {}
local ready = 0
local a = 5 + np
while a <= #ARGV do
  local id, pi, due, maxr, data = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), ARGV[a + 3], ARGV[a + 4]
  local key = KEYS[1] .. id
  if redis.call('EXISTS', key) == 1 then
    out[#out + 1] = 0
  else
    if due > now then
      redis.call('HSET', key, 'data', data, 'prio', ARGV[4 + pi], 'state', 'scheduled', 'attempts', 0,
        'max_retries', maxr, 'enq_ms', now, 'ready_ms', due)
      redis.call('ZADD', KEYS[2], due, id)
    else
      redis.call('HSET', key, 'data', data, 'prio', ARGV[4 + pi], 'state', 'pending', 'attempts', 0,
        'max_retries', maxr, 'enq_ms', now, 'ready_ms', now)
      redis.call('LPUSH', KEYS[3 + pi], id)
      ready = ready + 1
    end
    out[#out + 1] = 1
  end
  a = a + 5
end
if ready > 0 then
  redis.call('LPUSH', KEYS[3], '1')
  redis.call('LTRIM', KEYS[3], 0, cap - 1)
  if was_empty then redis.call('PUBLISH', ARGV[3], 'enqueued') end
end
return out
