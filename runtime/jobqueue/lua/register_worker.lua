-- register_worker: enter a worker process in the live-worker registry with a description.
-- KEYS[1]   -> jobqueue:{Q}:workers         ZSET worker id -> registration expiry (ms)
-- KEYS[2]   -> jobqueue:{Q}:worker:<wid>    HASH describing the worker
-- ARGV[1]   -> now (ms)
-- ARGV[2]   -> registration time to live (ms), renewed by extend_lease
-- ARGV[3]   -> worker id
-- ARGV[4..] -> pairs: field, value (host, pid, started_ms, concurrency, version ...)
-- Returns: 1
redis.call('DEL', KEYS[2])
if #ARGV >= 5 then redis.call('HSET', KEYS[2], unpack(ARGV, 4)) end
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]))
redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), ARGV[3])
return 1
