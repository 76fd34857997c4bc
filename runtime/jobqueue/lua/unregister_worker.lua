-- unregister_worker: remove a cleanly stopped worker from the live-worker registry.
-- KEYS[1] -> jobqueue:{Q}:workers         ZSET worker id -> registration expiry (ms)
-- KEYS[2] -> jobqueue:{Q}:worker:<wid>    HASH describing the worker
-- ARGV[1] -> worker id
-- Returns: 1 if it was registered, else 0
redis.call('DEL', KEYS[2])
return redis.call('ZREM', KEYS[1], ARGV[1])
