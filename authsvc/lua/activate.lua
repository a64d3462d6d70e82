-- Activate a stream for a user: the whole admission decision in one atomic step.
-- KEYS[1]  the user's leases: sorted set, member = stream id, score = last refresh (ms to the us, Redis TIME)
-- KEYS[2]  the user's own limit, if an operator set one (string integer)
-- KEYS[3]  the devices of the user's leases: hash, field = stream id, value = device id
--          (leases without a device have no field; fields of ended leases may linger
--          until the next activation with a device sweeps them, and are never read)
-- KEYS[4]  when the user's leases started: hash, field = stream id, value = ms (Redis TIME,
--          whole ms), written when a lease is admitted, kept by its refreshes, removed
--          with the lease (leases admitted by an older release have no field); lives a
--          counting bucket (ARGV[10]) longer than the leases
-- KEYS[5]  the counters of active leases and users of the user's slot (stats.lua)
-- ARGV[1]  stream id
-- ARGV[2]  lease TTL in ms; 0 = leases never expire
-- ARGV[3]  default limit
-- ARGV[4]  the limit the user's token carries, or '' (an operator's limit wins over it)
-- ARGV[5]  policy at the limit: 'reject' or 'evict_oldest'
-- ARGV[6]  '1' to enforce, '0' for shadow mode (decide, never deny, evict or replace)
-- ARGV[7]  the activating device's id, or '' for none
-- ARGV[8]  '1': a device that activates a stream ends its other leases (one stream per device)
-- ARGV[9]  what the limit counts: 'stream' (leases) or 'device' (distinct devices of the
--          user; a lease without a device counts as a device of its own)
-- ARGV[10] bucket width of the counters in ms (stats.lua)
-- returns {code, limit, now_ms, active_count, counted, replaced, ...}
--   counted: what the limit compares with (leases, or devices with ARGV[9] = 'device');
--   replaced: the stream ids this activation ended for its device (a table, maybe empty)
--   code 1 admitted, 2 already active (refreshed), 3 refused at the limit (+ stream, score,
--   device ('' none), start ('' none) quadruples of the 100 oldest leases),
--   4 admitted after evicting (+ evicted stream ids), 5 over the limit but admitted in shadow mode
local key, devices_key, starts_key, stream, device = KEYS[1], KEYS[3], KEYS[4], ARGV[1], ARGV[7]
local ttl = tonumber(ARGV[2])
local enforce = ARGV[6] == '1'
local by_device = ARGV[9] == 'device'
local now = now_ms()

stats_open(now, ttl)
local newest_before = stats_newest(key)

local expired = {}
if ttl > 0 then
  expired = stats_drop_expired(key, now, ttl)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - ttl)
end

-- An operator's limit wins over the token's, which wins over the default; a value that is
-- not a number (written by hand) counts as absent.
local limit = tonumber(redis.call('GET', KEYS[2]) or '') or tonumber(ARGV[4]) or tonumber(ARGV[3])

local function add()
  redis.call('ZADD', key, now, stream)
  stats_add('l', now, 1)
end

-- A stream the user did not hold: its lease starts now (a refresh keeps the start).
local function start()
  redis.call('HSET', starts_key, stream, math.floor(now))
end

-- Set when the user held no live lease before this activation: the starts hash (which
-- outlives the leases' key by up to a bucket) then holds only starts of ended leases.
local held_none = false

-- Removes the starts of the leases that ended here (``ended``) or expired, last: on a
-- Cluster, a script may not touch a key it emptied while its slot is migrating.
local function sweep_starts(ended)
  hdel_all(starts_key, ended)
  local gone = {}
  for _, s in ipairs(held_none and redis.call('HKEYS', starts_key) or expired) do
    if s ~= stream then gone[#gone + 1] = s end
  end
  hdel_all(starts_key, gone)
end

local function finish(ended)
  stats_user(newest_before, now)
  stats_close(ttl)
  keep_for_leases(key, ttl)
  -- A bucket longer than the leases: see touch.lua.
  keep_for_leases(starts_key, ttl + BUCKET_MS)
  sweep_starts(ended)
end

local function fields_of(hash)
  local fields = {}
  local flat = redis.call('HGETALL', hash)
  for i = 1, #flat, 2 do
    fields[flat[i]] = flat[i + 1]
  end
  return fields
end

local function labels_of()
  return fields_of(devices_key)
end

-- The refusal: the user's 100 oldest leases, each with its device and start.
local function refused(reply, labels)
  stats_user(newest_before, stats_newest(key))
  stats_close(ttl)
  local starts = fields_of(starts_key)
  local oldest = redis.call('ZRANGE', key, 0, 99, 'WITHSCORES')
  for i = 1, #oldest, 2 do
    reply[#reply + 1] = oldest[i]
    reply[#reply + 1] = oldest[i + 1]
    reply[#reply + 1] = labels[oldest[i]] or ''
    reply[#reply + 1] = starts[oldest[i]] or ''
  end
  sweep_starts({})
  return reply
end

if device == '' and not by_device then
  -- Without a device id: the decision as it was before devices, plus forgetting the
  -- device of an earlier lease on this stream id.
  local refreshed = redis.call('ZSCORE', key, stream)
  if refreshed then
    stats_add('l', tonumber(refreshed), -1)
    add()
    finish({})
    local count = redis.call('ZCARD', key)
    return {2, limit, now, count, count, {}}
  end

  local count = redis.call('ZCARD', key)
  if count < limit or not enforce then
    held_none = count == 0
    add()
    start()
    redis.call('HDEL', devices_key, stream)
    finish({})
    return {count < limit and 1 or 5, limit, now, count + 1, count + 1, {}}
  end

  if ARGV[5] == 'evict_oldest' and limit > 0 then
    -- End as many of the longest-idle leases as it takes to make room (more than one
    -- when the user's limit was lowered below what they hold).
    local evicted = redis.call('ZRANGE', key, 0, count - limit, 'WITHSCORES')
    redis.call('ZREMRANGEBYRANK', key, 0, count - limit)
    add()
    start()
    redis.call('HDEL', devices_key, stream)
    local reply, ended = {4, limit, now, limit, limit, {}}, {}
    for i = 1, #evicted, 2 do
      reply[#reply + 1] = evicted[i]
      ended[#ended + 1] = evicted[i]
      stats_add('l', tonumber(evicted[i + 1]), -1)
    end
    finish(ended)
    return reply
  end

  -- Refused: only expired leases may have been dropped above.
  return refused({3, limit, now, count, count, {}}, labels_of())
end

-- With a device id, or a limit on devices: the user's leases and their devices are read
-- whole (a few leases: the limit bounds them, except in shadow mode).
local live = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
local labels = labels_of()
local is_live = {}
for i = 1, #live, 2 do
  is_live[live[i]] = true
end
local refreshed = is_live[stream]
-- The stream's device from now on: the activating one, else (a refresh) the one it had.
local label = device ~= '' and device or (refreshed and labels[stream]) or nil

-- Leases and what the limit counts: the live ones but those in ``gone``, and ``stream``
-- (on ``with_label``'s device) unless ``without`` is set.
local function usage(gone, with_label, without)
  local leases, units, seen = 0, 0, {}
  local function count(d)
    leases = leases + 1
    if not d then
      units = units + 1
    elseif not seen[d] then
      seen[d] = true
      units = units + 1
    end
  end
  for i = 1, #live, 2 do
    local s = live[i]
    if s ~= stream and not gone[s] then count(labels[s]) end
  end
  if not without then count(with_label) end
  return leases, by_device and units or leases
end

-- The leases this device holds besides this stream: ended to admit it.
local replaced, gone = {}, {}
if device ~= '' and ARGV[8] == '1' and enforce then
  for i = 1, #live, 2 do
    local s = live[i]
    if s ~= stream and labels[s] == device then
      replaced[#replaced + 1] = s
      gone[s] = true
    end
  end
end

local function ends(streams)
  for _, s in ipairs(streams) do
    stats_add('l', tonumber(redis.call('ZSCORE', key, s)), -1)
    redis.call('ZREM', key, s)
  end
end

-- Writes the stream's device, keeps the devices as long as the leases, and sweeps the
-- fields of leases that ended. The new lease is in the key before anything is removed:
-- on a Cluster, a script may not touch a key it emptied while its slot is migrating.
local function label_and_end(ended)
  if label then
    redis.call('HSET', devices_key, stream, label)
    if ttl == 0 then
      redis.call('PERSIST', devices_key)
    else
      redis.call('PEXPIRE', devices_key, ttl)
    end
  end
  ends(ended)
  local stale = {}
  for s in pairs(labels) do
    if (not is_live[s] or gone[s]) and s ~= stream then stale[#stale + 1] = s end
  end
  if not label and labels[stream] then stale[#stale + 1] = stream end
  hdel_all(devices_key, stale)
end

if refreshed then
  local leases, counted = usage(gone, label)
  local _, counted_before = usage({}, labels[stream])
  if counted > math.max(limit, counted_before) then
    -- Moving the stream to this device would exceed the limit on devices: it is
    -- refreshed where it was, and replaces nothing.
    label, replaced, gone = labels[stream], {}, {}
    leases, counted = usage(gone, label)
  end
  stats_add('l', tonumber(redis.call('ZSCORE', key, stream)), -1)
  add()
  label_and_end(replaced)
  finish(replaced)
  return {2, limit, now, leases, counted, replaced}
end

local leases, counted = usage(gone, label)
if counted <= limit or not enforce then
  held_none = #live == 0
  add()
  start()
  label_and_end(replaced)
  finish(replaced)
  return {counted <= limit and 1 or 5, limit, now, leases, counted, replaced}
end

if ARGV[5] == 'evict_oldest' and limit > 0 then
  -- Units the limit counts (a device's leases together, or one lease), the longest idle
  -- first; the new stream's own unit is never one of them.
  local units, order = {}, {}
  local own = by_device and label or nil
  for i = 1, #live, 2 do
    local s, score = live[i], tonumber(live[i + 1])
    if not gone[s] and s ~= stream then
      local d = by_device and labels[s] or nil
      local id = d and ('d' .. d) or ('s' .. s)
      if not (own and d == own) then
        local unit = units[id]
        if not unit then
          unit = {newest = score, streams = {}}
          units[id] = unit
          order[#order + 1] = unit
        end
        unit.newest = math.max(unit.newest, score)
        unit.streams[#unit.streams + 1] = s
      end
    end
  end
  table.sort(order, function(a, b) return a.newest < b.newest end)
  local evicted = {}
  for _, unit in ipairs(order) do
    if counted <= limit then break end
    for _, s in ipairs(unit.streams) do
      evicted[#evicted + 1] = s
      gone[s] = true
      leases = leases - 1
    end
    counted = counted - 1
  end
  add()
  start()
  local ended = {unpack(replaced)}
  for _, s in ipairs(evicted) do ended[#ended + 1] = s end
  label_and_end(ended)
  finish(ended)
  local reply = {4, limit, now, leases, counted, replaced}
  for _, s in ipairs(evicted) do reply[#reply + 1] = s end
  return reply
end

-- Refused: only expired leases may have been dropped above; nothing is replaced.
local count, counted_now = usage({}, nil, true)
return refused({3, limit, now, count, counted_now, {}}, labels)
