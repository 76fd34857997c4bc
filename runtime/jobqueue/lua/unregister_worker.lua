-- unregister_worker: remove a cleanly stopped worker from the live-worker registry and from the
-- idle (handoff) registry. Its handoff list is deleted: the worker takes it first (claim with
-- N = 0); any entry left is a leased job that the reaper recovers when the lease expires.
-- KEYS[1] -> jobqueue:{Q}:workers         ZSET worker id -> registration expiry (ms)
-- KEYS[2] -> jobqueue:{Q}:worker:<wid>    HASH describing the worker
-- KEYS[3] -> jobqueue:{Q}:idle            ZSET worker id -> idle registration expiry (ms)
-- KEYS[4] -> jobqueue:{Q}:idle_slots      HASH worker id -> "<free slots> <lease ms>"
-- KEYS[5] -> jobqueue:{Q}:handoff:<wid>   LIST of handoff entries for this worker
-- ARGV[1] -> worker id
-- Returns: 1 if it was registered, else 0
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('DEL', KEYS[5])
return redis.call('ZREM', KEYS[1], ARGV[1])
