-- wrk script: the activate/deactivate cycle spread over many users, one stream each.
-- IDS_FILE holds one "userId streamId" pair a line (issued ids); with one line this is
-- the one-user cycle. Each thread starts at its own offset and walks the pairs in order:
-- request 2k activates pair k, request 2k+1 deactivates it.
local pairs_ = {}
local offset = 0
local n = 0

setup = function(thread)
  setup_count = (setup_count or 0) + 1
  thread:set("thread_index", setup_count)
end

init = function(args)
  for line in io.lines(os.getenv("IDS_FILE")) do
    local user, stream = line:match("^(%S+) (%S+)$")
    if user then
      pairs_[#pairs_ + 1] = {user, stream}
    end
  end
  -- Threads far apart in the list, so that they do not work on the same users.
  offset = math.floor(#pairs_ * ((thread_index or 1) - 1) / 2)
end

request = function()
  local k = (offset + math.floor(n / 2)) % #pairs_ + 1
  local op = (n % 2 == 0) and "/activate" or "/deactivate"
  n = n + 1
  local pair = pairs_[k]
  return wrk.format("PATCH", "/streams/" .. pair[2] .. op, {["x-userid"] = pair[1]})
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f requests=%d non2xx=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
