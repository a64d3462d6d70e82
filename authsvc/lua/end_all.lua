-- End every lease of a user at once.
-- KEYS[1]  the user's leases (see activate.lua)
-- KEYS[2]  when the user's leases started (see activate.lua)
-- KEYS[3]  the counters of the user's slot (stats.lua)
-- ARGV[1]  lease TTL in ms; 0 = leases never expire
-- ARGV[2]  bucket width of the counters in ms (stats.lua)
-- returns how many leases the user held (expired ones not yet dropped included)
local key = KEYS[1]
stats_open(now_ms(), tonumber(ARGV[1]))
local leases = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
for i = 2, #leases, 2 do
  stats_add('l', tonumber(leases[i]), -1)
end
stats_user(stats_newest(key), nil)
redis.call('DEL', key, KEYS[2])
return #leases / 2
