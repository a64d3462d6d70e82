-- Refresh a lease if it is still alive: a heartbeat, or a gated fetch of the stream.
-- KEYS[1]  the user's leases (see activate.lua)
-- KEYS[2]  the counters of the user's slot (stats.lua)
-- ARGV[1]  stream id
-- ARGV[2]  lease TTL in ms; 0 = leases never expire
-- ARGV[3]  bucket width of the counters in ms (stats.lua)
-- returns {1, now_ms} when the lease was alive and is refreshed, {0, now_ms} when there is none
local key, stream = KEYS[1], ARGV[1]
local ttl = tonumber(ARGV[2])
local now = now_ms()

local touched = redis.call('ZSCORE', key, stream)
if not touched or (ttl > 0 and tonumber(touched) <= now - ttl) then
  return {0, now}
end
-- Most refreshes (a gated fetch every few seconds) stay in their bucket: nothing to count.
-- Then the user's newest refresh, between this lease's two, is in that bucket too.
if stats_bucket(tonumber(touched)) == stats_bucket(now) then
  redis.call('ZADD', key, 'XX', now, stream)
else
  stats_open(now, ttl)
  local newest_before = stats_newest(key)
  redis.call('ZADD', key, 'XX', now, stream)
  stats_add('l', tonumber(touched), -1)
  stats_add('l', now, 1)
  stats_user(newest_before, now)
  stats_close(ttl)
end
-- As in activate.lua: the key's expiry is only ever extended.
if ttl == 0 then
  redis.call('PERSIST', key)
elseif redis.call('PTTL', key) < ttl then
  redis.call('PEXPIRE', key, ttl)
end
return {1, now}
