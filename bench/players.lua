-- wrk script for bench/gate.py's many-players model: every request is the next of many
-- (user, stream) pairs, each with its own identity and its own lease cookie, as players
-- fetching segments in turn. PAIRS names a file of "stream user cookie" lines; URL_PREFIX
-- and URL_SUFFIX frame the stream id ("/watch/" and "/demo/segment0.ts" through the gate,
-- an ungated path otherwise, where the stream is ignored).
local pairs_file = os.getenv("PAIRS")
local prefix = os.getenv("URL_PREFIX") or "/watch/"
local suffix = os.getenv("URL_SUFFIX") or "/demo/segment0.ts"
local list = {}

local threads = {}
local next_index = 1

setup = function(thread)
  -- Each thread starts at its own place in the list: together they walk every pair.
  thread:set("offset", #threads * 7919)
  threads[#threads + 1] = thread
end

init = function(args)
  -- Built here, in each thread, once wrk has set the Host header that wrk.format adds.
  for line in io.lines(pairs_file) do
    local stream, user, cookie = line:match("^(%S+) (%S+) (%S*)$")
    local path = prefix == "" and suffix or (prefix .. stream .. suffix)
    local headers = {["x-userid"] = user}
    if cookie ~= "" then headers["Cookie"] = "cw_lease=" .. cookie end
    list[#list + 1] = wrk.format("GET", path, headers)
  end
  next_index = (offset or 0) % #list + 1
end

request = function()
  local r = list[next_index]
  next_index = next_index % #list + 1
  return r
end

done = function(summary, latency, requests)
  io.write(string.format(
    "RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d errors=%d requests=%d bytes=%.0f\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.requests, summary.bytes))
end
