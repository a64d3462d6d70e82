-- A user's live leases and limit, dropping the expired ones on the way.
-- KEYS[1]  the user's leases (see activate.lua)
-- KEYS[2]  the user's own limit, if an operator set one
-- KEYS[3]  the counters of the user's slot (stats.lua)
-- ARGV[1]  lease TTL in ms; 0 = leases never expire
-- ARGV[2]  bucket width of the counters in ms (stats.lua)
-- returns {operator_limit or '', now_ms, stream, score, stream, score, ...} oldest first
local key = KEYS[1]
local ttl = tonumber(ARGV[1])
local now = now_ms()

if ttl > 0 then
  stats_open(now, ttl)
  local newest_before = stats_newest(key)
  stats_drop_expired(key, now, ttl)
  if redis.call('ZREMRANGEBYSCORE', key, '-inf', now - ttl) > 0 then
    stats_user(newest_before, stats_newest(key))
    stats_close(ttl)
  end
end
local reply = {redis.call('GET', KEYS[2]) or '', now}
for _, item in ipairs(redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')) do
  reply[#reply + 1] = item
end
return reply
