-- A user's live leases and limit, dropping the expired ones on the way.
-- KEYS[1]  the user's leases (see activate.lua)
-- KEYS[2]  the user's own limit, if an operator set one
-- KEYS[3]  the devices of the user's leases (see activate.lua)
-- KEYS[4]  when the user's leases started (see activate.lua)
-- KEYS[5]  the counters of the user's slot (stats.lua)
-- ARGV[1]  lease TTL in ms; 0 = leases never expire
-- ARGV[2]  bucket width of the counters in ms (stats.lua)
-- returns {operator_limit or '', now_ms, stream, score, device or '', start or '', ...}
--   oldest refresh first
local key, starts_key = KEYS[1], KEYS[4]
local ttl = tonumber(ARGV[1])
local now = now_ms()

local expired = {}
if ttl > 0 then
  stats_open(now, ttl)
  local newest_before = stats_newest(key)
  expired = stats_drop_expired(key, now, ttl)
  if redis.call('ZREMRANGEBYSCORE', key, '-inf', now - ttl) > 0 then
    stats_user(newest_before, stats_newest(key))
    stats_close(ttl)
  end
end
local reply = {redis.call('GET', KEYS[2]) or '', now}
local leases = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
local devices, starts = {}, {}
if #leases > 0 then
  for _, pair in ipairs({{KEYS[3], devices}, {starts_key, starts}}) do
    local flat = redis.call('HGETALL', pair[1])
    for i = 1, #flat, 2 do
      pair[2][flat[i]] = flat[i + 1]
    end
  end
end
for i = 1, #leases, 2 do
  reply[#reply + 1] = leases[i]
  reply[#reply + 1] = leases[i + 1]
  reply[#reply + 1] = devices[leases[i]] or ''
  reply[#reply + 1] = starts[leases[i]] or ''
end
-- The starts of the leases that expired go with them.
hdel_all(starts_key, expired)
return reply
