-- wrk script for bench/gate.py: GET one segment over and over on every connection, with
-- the user's id in x-userid (USER_ID from the environment; ignored where nothing is gated).
local user = os.getenv("USER_ID") or ""

request = function()
  return wrk.format("GET", nil, {["x-userid"] = user})
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
