-- Redis's clock, the lifetime of a user's keys, and the counters of active leases and users
-- that every script keeps beside the leases it changes (prepended to each script; see authsvc/stats.py for how they are read).
-- STATS_KEY   a hash in the user's Cluster slot (the last of KEYS), shared by every user
--             of that slot: field 'l<b>' counts leases whose last refresh falls in time
--             bucket b, 'u<b>' users whose newest refresh does; b = floor(ms / BUCKET_MS)
-- BUCKET_MS   bucket width in ms (the last ARGV); 0 when leases never expire: one bucket, 0
-- Active = the sum over the buckets that reach into the TTL window, so a lease expired less
-- than one bucket ago may still be counted (never one that is alive left out). Counts of
-- buckets that left the window are never decremented and their fields are deleted.
local STATS_KEY = KEYS[#KEYS]
local BUCKET_MS = tonumber(ARGV[#ARGV])
local stats_first = 0  -- oldest bucket still counted, set by stats_open

-- Redis's clock in ms, to the microsecond: leases refreshed within one millisecond must
-- still be ordered by their refresh (a tie would order them by member instead, and
-- evict_oldest end the wrong one). A fractional score keeps the unit, so leases written
-- by an older release still read right; 1.8e15 us fits a double's 53 bits exactly.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end

-- A key of the user's leases (the leases, their starts) lives as long as the newest lease.
-- Its expiry is only ever extended, and removed for leases that never expire, so that
-- moving to a longer TTL or to none (a rolling deploy) never lets the key vanish under
-- leases that are still alive.
local function keep_for_leases(key, ttl)
  if ttl == 0 then
    redis.call('PERSIST', key)
  elseif redis.call('PTTL', key) < ttl then
    redis.call('PEXPIRE', key, ttl)
  end
end

-- Fields of a hash beside the leases, in batches (unpack's stack is bounded).
local function hdel_all(key, fields)
  for i = 1, #fields, 100 do
    redis.call('HDEL', key, unpack(fields, i, math.min(i + 99, #fields)))
  end
end

local function stats_bucket(ms)
  if BUCKET_MS == 0 then return 0 end
  return math.floor(ms / BUCKET_MS)
end

local function stats_open(now, ttl)
  if BUCKET_MS > 0 then stats_first = stats_bucket(now - ttl) end
end

local function stats_add(kind, ms, delta)
  local b = stats_bucket(ms)
  -- A bucket out of the window is no longer counted (and its field may be gone).
  if delta < 0 and b < stats_first then return end
  redis.call('HINCRBY', STATS_KEY, kind .. b, delta)
end

local function stats_newest(key)
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  return top[2] and tonumber(top[2])
end

-- A user is counted in the bucket of their newest refresh: move them when it changes.
local function stats_user(before, after)
  if before and after and stats_bucket(before) == stats_bucket(after) then return end
  if before then stats_add('u', before, -1) end
  if after then stats_add('u', after, 1) end
end

-- Leases about to be dropped as expired: take them out of the counts; returns their stream
-- ids (their starts are swept with them).
local function stats_drop_expired(key, now, ttl)
  local expired = {}
  for i, item in ipairs(redis.call('ZRANGEBYSCORE', key, '-inf', now - ttl, 'WITHSCORES')) do
    if i % 2 == 0 then
      stats_add('l', tonumber(item), -1)
    else
      expired[#expired + 1] = item
    end
  end
  return expired
end

local function stats_close(ttl)
  if BUCKET_MS == 0 then return end
  -- Fields of buckets out of the window: a few dozen at most, swept now and then.
  if redis.call('HLEN', STATS_KEY) > 64 then
    local fields = redis.call('HKEYS', STATS_KEY)
    for _, f in ipairs(fields) do
      if tonumber(string.sub(f, 2)) < stats_first then redis.call('HDEL', STATS_KEY, f) end
    end
  end
  -- A slot where nothing happened for two TTLs holds no live lease: let the hash go.
  redis.call('PEXPIRE', STATS_KEY, 2 * ttl + 2 * BUCKET_MS)
end

