-- Refresh a lease if it is still alive: a heartbeat, or a gated fetch of the stream.
-- KEYS[1]  the user's leases (see activate.lua)
-- KEYS[2]  when the user's leases started (see activate.lua): kept as long as the leases.
--          It exists beside every lease admitted since starts are kept, so naming it adds
--          no TRYAGAIN on a slot being migrated, except for users whose leases all predate it
-- KEYS[3]  only when a device asks: the devices of the user's leases (see activate.lua)
-- KEYS[#KEYS] the counters of the user's slot (stats.lua)
-- ARGV[1]  stream id
-- ARGV[2]  lease TTL in ms; 0 = leases never expire
-- ARGV[3]  the asking device's id, or '' (then KEYS has no devices hash)
-- ARGV[4]  bucket width of the counters in ms (stats.lua)
-- returns {1, now_ms} when the lease was alive and is refreshed, {0, now_ms} when there is none
-- A device refreshing a lease that has none becomes its device (a browser's first gated
-- fetch of a stream activated without one); a lease's device never changes here, and
-- nothing is replaced: that is the activation's decision.
local key, stream = KEYS[1], ARGV[1]
local ttl = tonumber(ARGV[2])
local now = now_ms()

local touched = redis.call('ZSCORE', key, stream)
if not touched or (ttl > 0 and tonumber(touched) <= now - ttl) then
  return {0, now}
end
-- Most refreshes (a gated fetch every few seconds) stay in their bucket: nothing to count.
-- Then the user's newest refresh, between this lease's two, is in that bucket too.
local same_bucket = stats_bucket(tonumber(touched)) == stats_bucket(now)
if same_bucket then
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
keep_for_leases(key, ttl)
-- The starts stay as they were (none for a lease admitted by an older release) and live
-- a bucket longer than the leases: extended only when a refresh leaves its bucket (and
-- by every activation), which covers the refreshes within that bucket; so most gated
-- fetches leave them alone.
if not same_bucket or ttl == 0 then
  keep_for_leases(KEYS[2], ttl + BUCKET_MS)
end
-- Without a device the devices hash is not even named: the gate costs what it did, and
-- a slot being migrated serves it as before (a missing key named by a script is TRYAGAIN).
if ARGV[3] ~= '' then
  redis.call('HSETNX', KEYS[3], stream, ARGV[3])
  -- The devices live as long as the leases that devices refresh.
  if ttl == 0 then
    redis.call('PERSIST', KEYS[3])
  else
    redis.call('PEXPIRE', KEYS[3], ttl)
  end
end
return {1, now}
