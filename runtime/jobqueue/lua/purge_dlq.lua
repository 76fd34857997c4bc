-- purge_dlq: delete up to N dead-letter jobs (oldest first) with their records.
-- Called repeatedly until it returns 0, so a huge DLQ never blocks Redis in one call.
-- KEYS[1] -> jobqueue:{Q}:job:     job hash prefix
-- KEYS[2] -> jobqueue:{Q}:dead     ZSET id -> time of death (ms)
-- ARGV[1] -> N, most jobs to delete (count)
-- ARGV[2] -> a single job id to delete instead, or "" for the oldest N
-- Returns: number of jobs deleted
local ids
if ARGV[2] ~= '' then
  if not redis.call('ZSCORE', KEYS[2], ARGV[2]) then return 0 end
  ids = {ARGV[2]}
else
  ids = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1)
end
for _, id in ipairs(ids) do
  redis.call('DEL', KEYS[1] .. id)
  redis.call('ZREM', KEYS[2], id)
end
return #ids
