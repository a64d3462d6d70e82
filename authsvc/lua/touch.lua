-- Refresh a lease if it is still alive: a heartbeat, or a gated fetch of the stream.
-- KEYS[1]  the user's leases (see activate.lua)
-- ARGV[1]  stream id
-- ARGV[2]  lease TTL in ms; 0 = leases never expire
-- returns {1, now_ms} when the lease was alive and is refreshed, {0, now_ms} when there is none
local key, stream = KEYS[1], ARGV[1]
local ttl = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local touched = redis.call('ZSCORE', key, stream)
if not touched or (ttl > 0 and tonumber(touched) <= now - ttl) then
  return {0, now}
end
redis.call('ZADD', key, 'XX', now, stream)
-- As in activate.lua: the key's expiry is only ever extended.
if ttl == 0 then
  redis.call('PERSIST', key)
elseif redis.call('PTTL', key) < ttl then
  redis.call('PEXPIRE', key, ttl)
end
return {1, now}
