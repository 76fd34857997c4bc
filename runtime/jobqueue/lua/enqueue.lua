-- enqueue: add new jobs, ready now (pending list tail) or at a due time (scheduled set).
-- A job whose id already exists is not touched (idempotent enqueue with caller-given ids).
-- Direct handoff: while workers are registered idle (claim.lua found their queue dry), a ready
-- job is leased here to the longest-idle one and pushed on that worker's handoff list, which the
-- worker is blocked on: it starts the job on the same reply, with no claim round trip. The lease
-- is an ordinary one (active set, fencing token), so a worker that dies before taking the entry
-- loses nothing: the reaper requeues the job when the lease expires.
-- KEYS[1]     -> jobqueue:{Q}:job:          job hash prefix (hashes are prefix..id)
-- KEYS[2]     -> jobqueue:{Q}:scheduled     ZSET id -> due time (ms)
-- KEYS[3]     -> jobqueue:{Q}:wake          LIST of wake-up tokens
-- KEYS[4]     -> jobqueue:{Q}:idle          ZSET worker id -> idle registration expiry (ms)
-- KEYS[5]     -> jobqueue:{Q}:idle_slots    HASH worker id -> "<free slots> <lease ms>"
-- KEYS[6]     -> jobqueue:{Q}:handoff:      handoff list prefix (lists are prefix..worker id)
-- KEYS[7]     -> jobqueue:{Q}:active        ZSET id -> lease deadline (ms)
-- KEYS[8]     -> jobqueue:{Q}:seq           STRING counter for fencing tokens
-- KEYS[9..]   -> jobqueue:{Q}:pending:<p>   one LIST per priority, highest first
-- ARGV[1]     -> now (ms since epoch)
-- ARGV[2]     -> wake cap: most tokens kept in the wake list (count)
-- ARGV[3]     -> pub/sub channel told when an empty queue receives work
-- ARGV[4]     -> P, number of priorities; ARGV[5..4+P] -> their names, aligned with KEYS[9..]
-- ARGV[5+P..] -> groups of 5: id, priority index (1-based), due (ms, 0 = now), max_retries, job JSON
-- Returns: array with 1 (enqueued) or 0 (id already exists) per job, in order.
-- A handoff entry is "<token>\31<id>\31<priority>\31<attempts>\31<ready ms>\31<job JSON>".
local now = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local np = tonumber(ARGV[4])
local P = 8
-- Whether every pending list was empty before this call (the pub/sub wake-up is for an empty
-- queue receiving work): read just before the first push, so a handoff-only call skips it.
local was_empty = nil
local function note_emptiness()
  if was_empty ~= nil then return end
  was_empty = true
  for i = 1, np do
    if redis.call('LLEN', KEYS[P + i]) > 0 then was_empty = false break end
  end
end
-- Idle workers: the one whose registration expires first (the longest idle) that is still
-- registered and has a free slot. Expired registrations sort first and are dropped on the way.
-- Kept to one ZRANGE and one HGET in the common case: this is the idle pickup path.
local idle_left = true
local worker, slots, lease
local function next_idle()
  while true do
    local first = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
    if #first == 0 then
      idle_left = false
      return
    end
    local w = first[1]
    if tonumber(first[2]) >= now then
      local s, l = string.match(redis.call('HGET', KEYS[5], w) or '', '^(%d+) (%d+)$')
      if s and tonumber(s) > 0 then
        worker, slots, lease = w, tonumber(s), tonumber(l)
        return
      end
    end
    redis.call('ZREM', KEYS[4], w)
    redis.call('HDEL', KEYS[5], w)
  end
end
local function settle_worker()
  if slots > 0 then
    redis.call('HSET', KEYS[5], worker, slots .. ' ' .. lease)
  else
    redis.call('ZREM', KEYS[4], worker)
    redis.call('HDEL', KEYS[5], worker)
  end
  worker = nil
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
    local prio = ARGV[4 + pi]
    if due > now then
      redis.call('HSET', key, 'data', data, 'prio', prio, 'state', 'scheduled', 'attempts', 0,
        'max_retries', maxr, 'enq_ms', now, 'ready_ms', due)
      redis.call('ZADD', KEYS[2], due, id)
    else
      if not worker and idle_left then next_idle() end
      if worker then
        local token = redis.call('INCR', KEYS[8])
        redis.call('HSET', key, 'data', data, 'prio', prio, 'state', 'active', 'attempts', 0,
          'max_retries', maxr, 'enq_ms', now, 'ready_ms', now, 'token', token, 'worker', worker, 'started_ms', now)
        redis.call('ZADD', KEYS[7], now + lease, id)
        redis.call('RPUSH', KEYS[6] .. worker, token .. '\31' .. id .. '\31' .. prio .. '\31' .. '0\31' .. now .. '\31' .. data)
        slots = slots - 1
        if slots == 0 then settle_worker() end
      else
        note_emptiness()
        redis.call('HSET', key, 'data', data, 'prio', prio, 'state', 'pending', 'attempts', 0,
          'max_retries', maxr, 'enq_ms', now, 'ready_ms', now)
        redis.call('LPUSH', KEYS[P + pi], id)
        ready = ready + 1
      end
    end
    out[#out + 1] = 1
  end
  a = a + 5
end
if worker then settle_worker() end
if ready > 0 then
  redis.call('LPUSH', KEYS[3], '1')
  redis.call('LTRIM', KEYS[3], 0, cap - 1)
  if was_empty then redis.call('PUBLISH', ARGV[3], 'enqueued') end
end
return out
