-- rate_limit: take N permits from a fixed window shared by all producers (INCR + EXPIRE, atomic).
-- Permits are only counted when granted, so a waiting producer does not eat the next window.
-- KEYS[1] -> jobqueue:{Q}:ratelimit   STRING permits used in the current window
-- ARGV[1] -> limit per window (count)
-- ARGV[2] -> window length (ms)
-- ARGV[3] -> N, permits wanted (count); more than the limit is granted alone in an empty window
-- Returns: 0 when granted, else milliseconds until the window ends (retry then)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used > 0 and used + n > limit then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], window)
    ttl = window
  end
  return ttl
end
if redis.call('INCRBY', KEYS[1], n) == n then redis.call('PEXPIRE', KEYS[1], window) end
return 0
