-- End one lease of a user (deactivate, or an operator's kick).
-- KEYS[1]  the user's leases (see activate.lua)
-- KEYS[2]  when the user's leases started (see activate.lua)
-- KEYS[3]  the counters of the user's slot (stats.lua)
-- ARGV[1]  stream id
-- ARGV[2]  lease TTL in ms; 0 = leases never expire
-- ARGV[3]  bucket width of the counters in ms (stats.lua)
-- returns 1 when there was a lease (alive or expired but not yet dropped), else 0
local key, stream = KEYS[1], ARGV[1]
local score = redis.call('ZSCORE', key, stream)
if not score then
  return 0
end
stats_open(now_ms(), tonumber(ARGV[2]))
-- The user's newest lease before and after, both read before the ZREM: removing the last
-- lease deletes the key, and on a Cluster a script that reads a key it deleted while its
-- slot is being migrated fails ("non local key"), the ZREM done and the counters not.
local top = redis.call('ZRANGE', key, -2, -1, 'WITHSCORES')
local newest_before = tonumber(top[#top])
local newest_after = newest_before
if top[#top - 1] == stream then
  newest_after = top[4] and tonumber(top[2]) or nil
end
redis.call('ZREM', key, stream)
stats_add('l', tonumber(score), -1)
stats_user(newest_before, newest_after)
-- Last: removing the last start deletes that key too.
redis.call('HDEL', KEYS[2], stream)
return 1
