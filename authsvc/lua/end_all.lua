-- End every lease of a user at once.
-- KEYS[1]  the user's leases (see activate.lua)
-- returns how many leases the user held (expired ones not yet dropped included)
local ended = redis.call('ZCARD', KEYS[1])
redis.call('DEL', KEYS[1])
return ended
