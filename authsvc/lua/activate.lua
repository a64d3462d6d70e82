-- Activate a stream for a user: the whole admission decision in one atomic step.
-- KEYS[1]  the user's leases: sorted set, member = stream id, score = last refresh (ms to the us, Redis TIME)
-- KEYS[2]  the user's own limit, if an operator set one (string integer)
-- KEYS[3]  the counters of active leases and users of the user's slot (stats.lua)
-- ARGV[1]  stream id
-- ARGV[2]  lease TTL in ms; 0 = leases never expire
-- ARGV[3]  default limit
-- ARGV[4]  the limit the user's token carries, or '' (an operator's limit wins over it)
-- ARGV[5]  policy at the limit: 'reject' or 'evict_oldest'
-- ARGV[6]  '1' to enforce, '0' for shadow mode (decide, never deny or evict)
-- ARGV[7]  bucket width of the counters in ms (stats.lua)
-- returns {code, limit, now_ms, active_count, ...}
--   code 1 admitted, 2 already active (refreshed), 3 refused at the limit (+ stream, score
--   pairs of the 100 oldest leases),
--   4 admitted after evicting (+ evicted stream ids), 5 over the limit but admitted in shadow mode
local key, stream = KEYS[1], ARGV[1]
local ttl = tonumber(ARGV[2])
local now = now_ms()

stats_open(now, ttl)
local newest_before = stats_newest(key)

if ttl > 0 then
  stats_drop_expired(key, now, ttl)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - ttl)
end

-- An operator's limit wins over the token's, which wins over the default; a value that is
-- not a number (written by hand) counts as absent.
local limit = tonumber(redis.call('GET', KEYS[2]) or '') or tonumber(ARGV[4]) or tonumber(ARGV[3])

local function admit()
  redis.call('ZADD', key, now, stream)
  stats_add('l', now, 1)
  stats_user(newest_before, now)
  stats_close(ttl)
  -- The key lives as long as its newest lease. Its expiry is only ever extended, and
  -- removed for leases that never expire, so that moving to a longer TTL or to none (a
  -- rolling deploy) never lets the key vanish under leases that are still alive.
  if ttl == 0 then
    redis.call('PERSIST', key)
  elseif redis.call('PTTL', key) < ttl then
    redis.call('PEXPIRE', key, ttl)
  end
end

local refreshed = redis.call('ZSCORE', key, stream)
if refreshed then
  stats_add('l', tonumber(refreshed), -1)
  admit()
  return {2, limit, now, redis.call('ZCARD', key)}
end

local count = redis.call('ZCARD', key)
if count < limit then
  admit()
  return {1, limit, now, count + 1}
end

if ARGV[6] ~= '1' then
  admit()
  return {5, limit, now, count + 1}
end

if ARGV[5] == 'evict_oldest' and limit > 0 then
  -- End as many of the longest-idle leases as it takes to make room (more than one
  -- when the user's limit was lowered below what they hold).
  local evicted = redis.call('ZRANGE', key, 0, count - limit, 'WITHSCORES')
  redis.call('ZREMRANGEBYRANK', key, 0, count - limit)
  admit()
  local reply = {4, limit, now, limit}
  for i = 1, #evicted, 2 do
    reply[#reply + 1] = evicted[i]
    stats_add('l', tonumber(evicted[i + 1]), -1)
  end
  return reply
end

-- Refused: only expired leases may have been dropped above.
stats_user(newest_before, stats_newest(key))
stats_close(ttl)
local reply = {3, limit, now, count}
for _, item in ipairs(redis.call('ZRANGE', key, 0, 99, 'WITHSCORES')) do
  reply[#reply + 1] = item
end
return reply
