-- extend_lease: a worker's heartbeat. Renews the leases of the jobs it still holds and its
-- entry in the live-worker registry; reports the jobs whose lease it lost (reaped and re-claimed).
-- KEYS[1]   -> jobqueue:{Q}:job:            job hash prefix
-- KEYS[2]   -> jobqueue:{Q}:active          ZSET id -> lease deadline (ms)
-- KEYS[3]   -> jobqueue:{Q}:workers         ZSET worker id -> registration expiry (ms)
-- KEYS[4]   -> jobqueue:{Q}:worker:<wid>    HASH describing this worker
-- ARGV[1]   -> now (ms)
-- ARGV[2]   -> lease length (ms)
-- ARGV[3]   -> worker id
-- ARGV[4..] -> pairs: job id, lease token
-- Returns: array of the job ids whose lease was lost (token no longer theirs).
local now = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local lost = {}
for a = 4, #ARGV, 2 do
  local id = ARGV[a]
  local f = redis.call('HMGET', KEYS[1] .. id, 'token', 'state')
  if f[1] == ARGV[a + 1] and f[2] == 'active' then
    redis.call('ZADD', KEYS[2], 'XX', now + ttl, id)
  else
    lost[#lost + 1] = id
  end
end
redis.call('ZADD', KEYS[3], now + ttl, ARGV[3])
redis.call('PEXPIRE', KEYS[4], ttl)
return lost
