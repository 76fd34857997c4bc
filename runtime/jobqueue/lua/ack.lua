-- ack: record jobs as completed. Refused per job when the lease token is no longer the caller's
-- (the job was reaped and possibly claimed by another worker): fencing.
-- KEYS[1]   -> jobqueue:{Q}:job:          job hash prefix
-- KEYS[2]   -> jobqueue:{Q}:active        ZSET id -> lease deadline (ms)
-- KEYS[3]   -> jobqueue:{Q}:completed     LIST of completed summaries, newest first
-- KEYS[4]   -> jobqueue:{Q}:stats         HASH of lifetime counters
-- ARGV[1]   -> now (ms)
-- ARGV[2]   -> completed entries to keep (count; 0 keeps none)
-- ARGV[3]   -> how long the completed id is remembered (ms; 0 = not at all): a small hash
--              {state=completed} stays so enqueue.lua ignores the same id (producer retries)
-- ARGV[4..] -> triples: job id, lease token, run time (ms)
-- Returns: array with 1 (acked) or 0 (LEASE_LOST) per job, in order.
local now = ARGV[1]
local keep = tonumber(ARGV[2])
local remember = tonumber(ARGV[3])
local out = {}
-- Keys, ids and summaries are collected and sent in one DEL, ZREM and LPUSH per chunk: a
-- redis.call costs more than the command it runs.
local dels, ids, summaries = {}, {}, {}
local seen = {}  -- an id twice in one call: the second is refused, as if acked one by one
local function flush()
  if #dels == 0 then return end
  redis.call('DEL', unpack(dels))
  redis.call('ZREM', KEYS[2], unpack(ids))
  if #summaries > 0 then redis.call('LPUSH', KEYS[3], unpack(summaries)) end
  dels, ids, summaries = {}, {}, {}
end
local done = 0
for a = 4, #ARGV, 3 do
  local id = ARGV[a]
  local key = KEYS[1] .. id
  local f = redis.call('HMGET', key, 'token', 'state', 'data', 'attempts', 'prio')
  if f[1] == ARGV[a + 1] and f[2] == 'active' and not seen[id] then
    seen[id] = true
    if keep > 0 then
      summaries[#summaries + 1] = '{"id":' .. cjson.encode(id) .. ',"priority":' .. cjson.encode(f[5])
        .. ',"attempts":' .. f[4] .. ',"completed_ms":' .. now .. ',"duration_ms":' .. tonumber(ARGV[a + 2])
        .. ',"job":' .. f[3] .. '}'
    end
    dels[#dels + 1] = key
    ids[#ids + 1] = id
    done = done + 1
    out[#out + 1] = 1
    if #dels >= 1000 then flush() end
  else
    out[#out + 1] = 0
  end
end
flush()
if done > 0 and remember > 0 then
  -- After the DEL: a small {state=completed} hash per id, so enqueue.lua ignores the same id.
  for a = 4, #ARGV, 3 do
    if out[(a - 1) / 3] == 1 then
      local key = KEYS[1] .. ARGV[a]
      redis.call('HSET', key, 'state', 'completed', 'completed_ms', now)
      redis.call('PEXPIRE', key, remember)
    end
  end
end
if done > 0 then
  if keep > 0 then redis.call('LTRIM', KEYS[3], 0, keep - 1) end
  redis.call('HINCRBY', KEYS[4], 'completed', done)
end
return out
