-- claim: take up to N ready jobs in strict priority order and lease them to a worker.
-- First it collects the jobs already handed to this worker by enqueue (direct handoff, see
-- enqueue.lua) that its blocking read has not taken yet: they are leased to it already.
-- A list entry without a job hash (pushed raw by another program) is given a record with a
-- fresh id "raw-<n>" and flag "raw", so the worker can decode it or dead-letter it: never dropped.
-- An entry whose hash is not pending (a duplicate entry) is skipped.
-- When it found fewer than N (the queue is dry), fewer than ARGV[7] (the worker's free run slots:
-- prefetch room does not count, a handed-off job should start at once) and ARGV[6] > 0, the
-- worker is entered as idle with ARGV[7] - found slots until now + ARGV[6], so enqueue hands new
-- jobs straight to it; otherwise it is removed.
-- KEYS[1]   -> jobqueue:{Q}:job:          job hash prefix
-- KEYS[2]   -> jobqueue:{Q}:active        ZSET id -> lease deadline (ms)
-- KEYS[3]   -> jobqueue:{Q}:seq           STRING counter for fencing tokens and raw ids
-- KEYS[4]   -> jobqueue:{Q}:wake          LIST of wake-up tokens
-- KEYS[5]   -> jobqueue:{Q}:idle          ZSET worker id -> idle registration expiry (ms)
-- KEYS[6]   -> jobqueue:{Q}:idle_slots    HASH worker id -> "<free slots> <lease ms>"
-- KEYS[7]   -> jobqueue:{Q}:handoff:<wid> LIST of handoff entries for this worker
-- KEYS[8..] -> jobqueue:{Q}:pending:<p>   one LIST per priority, highest first
-- ARGV[1]   -> now (ms)
-- ARGV[2]   -> lease length (ms)
-- ARGV[3]   -> N, most jobs to claim from the pending lists (count)
-- ARGV[4]   -> worker id (recorded on the job)
-- ARGV[5]   -> wake cap (count)
-- ARGV[6]   -> idle registration time to live (ms; 0 = do not register for handoff)
-- ARGV[7]   -> free run slots of the worker (count), what it offers for handoff
-- ARGV[8..] -> priority names aligned with KEYS[8..]
-- Returns: flat array, 7 per claimed job: id, token, priority, attempts, ready_ms, job JSON, flag ("" or "raw").
-- When it claimed N and work remains it pushes a wake token, so another idle worker wakes (chain wake).
local now = tonumber(ARGV[1])
local deadline = now + tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local idle_ttl = tonumber(ARGV[6])
local out = {}
local got = 0
local handed = redis.call('LRANGE', KEYS[7], 0, -1)
if #handed > 0 then
  redis.call('DEL', KEYS[7])
  for _, entry in ipairs(handed) do
    local token, id = string.match(entry, '^([^\31]*)\31([^\31]*)\31')
    local key = KEYS[1] .. id
    local f = redis.call('HMGET', key, 'token', 'state', 'prio', 'attempts', 'ready_ms', 'data')
    if f[1] == token and f[2] == 'active' then  -- else reaped meanwhile: no longer ours
      redis.call('ZADD', KEYS[2], deadline, id)
      out[#out + 1] = id
      out[#out + 1] = token
      out[#out + 1] = f[3]
      out[#out + 1] = f[4]
      out[#out + 1] = f[5]
      out[#out + 1] = f[6]
      out[#out + 1] = ''
      got = got + 1
    end
  end
end
-- Pending jobs: popped up to N at a time (RPOP count), checked one by one, then leased with one
-- INCRBY (a block of fencing tokens) and one ZADD for the whole batch: a redis.call costs more
-- than the command it runs, so per-job calls are kept to the two that cannot be shared.
local fresh = {}  -- {id, key, prio, attempts, ready_ms, data, flag}
local seen = {}  -- ids taken by this call: a duplicate entry in the same batch is still 'pending'
for i = 8, #KEYS do
  local prio = ARGV[i]
  while got < n do
    local ids = redis.call('RPOP', KEYS[i], n - got)
    if not ids then break end
    for _, id in ipairs(ids) do
      local key = KEYS[1] .. id
      local f = redis.call('HMGET', key, 'state', 'attempts', 'ready_ms', 'data')
      if not f[1] then
        local raw = id
        id = 'raw-' .. redis.call('INCR', KEYS[3])
        key = KEYS[1] .. id
        redis.call('HSET', key, 'data', raw, 'prio', prio, 'attempts', 0, 'max_retries', 0,
          'enq_ms', now, 'ready_ms', now)
        f = {'pending', '0', tostring(now), raw, 'raw'}
      end
      if f[1] == 'pending' and not seen[id] then
        seen[id] = true
        fresh[#fresh + 1] = {id, key, prio, f[2], f[3], f[4], f[5] or ''}
        got = got + 1
      end
    end
  end
  if got >= n then break end
end
if #fresh > 0 then
  local token = redis.call('INCRBY', KEYS[3], #fresh) - #fresh
  local zadd = {}
  for _, j in ipairs(fresh) do
    token = token + 1
    redis.call('HSET', j[2], 'state', 'active', 'token', token, 'worker', ARGV[4], 'started_ms', now)
    zadd[#zadd + 1] = deadline
    zadd[#zadd + 1] = j[1]
    if #zadd >= 1000 then
      redis.call('ZADD', KEYS[2], unpack(zadd))
      zadd = {}
    end
    out[#out + 1] = j[1]
    out[#out + 1] = tostring(token)
    out[#out + 1] = j[3]
    out[#out + 1] = j[4]
    out[#out + 1] = j[5]
    out[#out + 1] = j[6]
    out[#out + 1] = j[7]
  end
  if #zadd > 0 then redis.call('ZADD', KEYS[2], unpack(zadd)) end
end
local offer = tonumber(ARGV[7]) - got
if got < n and offer > 0 and idle_ttl > 0 then
  redis.call('ZADD', KEYS[5], now + idle_ttl, ARGV[4])
  redis.call('HSET', KEYS[6], ARGV[4], offer .. ' ' .. ARGV[2])
else
  if redis.call('ZREM', KEYS[5], ARGV[4]) == 1 then redis.call('HDEL', KEYS[6], ARGV[4]) end
end
if got >= n and n > 0 then
  for i = 8, #KEYS do
    if redis.call('LLEN', KEYS[i]) > 0 then
      redis.call('LPUSH', KEYS[4], '1')
      redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[5]) - 1)
      break
    end
  end
end
return out
