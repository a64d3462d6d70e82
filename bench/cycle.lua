-- wrk script: one user activates and deactivates one stream, alternating, on every connection.
-- USER and STREAM come from the environment (issued ids).
local user = os.getenv("USER_ID")
local stream = os.getenv("STREAM_ID")
local paths = {"/streams/" .. stream .. "/activate", "/streams/" .. stream .. "/deactivate"}
local n = 0

request = function()
  n = n + 1
  return wrk.format("PATCH", paths[(n % 2) + 1], {["x-userid"] = user})
end

local bad = 0
response = function(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
  end
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
