-- wrk script: the activate/deactivate cycle spread over many users, one stream each.
-- IDS_FILE holds one "userId streamId" pair a line (issued ids); with one line this is
-- the one-user cycle. Each thread starts at its own offset and walks the pairs in order:
-- request 2k activates pair k, request 2k+1 deactivates it.
local pairs_ = {}
local offset = 0
local n = 0
local threads = {}
-- Answers other than 200, by status, per thread (read back in done()).
statuses = {}

setup = function(thread)
  threads[#threads + 1] = thread
  thread:set("thread_index", #threads)
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

response = function(status, headers, body)
  if status ~= 200 then
    statuses[status] = (statuses[status] or 0) + 1
  end
end

done = function(summary, latency, requests)
  local bad = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      bad[status] = (bad[status] or 0) + count
    end
  end
  local shown = ""
  for status, count in pairs(bad) do
    shown = shown .. status .. "x" .. count .. ","
  end
  io.write("STATUSES " .. shown .. "\n")
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f requests=%d non2xx=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
