-- wrk script for bench/links.py, every answer checked and counted by status.
-- MODE=cycle: the API cycle over many users. PAIRS names a file of "kind stream user"
-- lines: kind "a" pairs are activated and deactivated in turn (one stream per user, so
-- never at the limit, and a deactivate answers 200 whether or not its activate came
-- first), kind "h" pairs are held active and heartbeated (they never end, so a heartbeat
-- always finds its lease). Request n of a thread: activate, heartbeat, deactivate, then
-- the next pairs. Every answer must be a 200 saying "ok".
-- MODE=gate: every request the next player's gated fetch of SEGMENT (a path under
-- /watch/{stream}/), identity in x-userid; every answer must be a 200 of SEGMENT_SIZE bytes.
local mode = os.getenv("MODE")
local segment = os.getenv("SEGMENT")
local size = tonumber(os.getenv("SEGMENT_SIZE") or "0")
local cycle, held, players = {}, {}, {}
local threads = {}
local n = 0
-- Globals, for done() reads them from each thread (thread:get): 200s with a wrong body,
-- and the answers by status, one number each (s200, s403 ... sother).
wrong = 0
local counted = {200, 403, 404, 429, 500, 502, 503, 504}

setup = function(thread)
  thread:set("offset", #threads * 7919)
  threads[#threads + 1] = thread
end

init = function(args)
  for line in io.lines(os.getenv("PAIRS")) do
    local kind, stream, user = line:match("^(%a) (%S+) (%S+)$")
    local list = kind == "a" and cycle or (kind == "h" and held or players)
    list[#list + 1] = {stream = stream, user = user}
  end
  n = offset or 0
  for _, status in ipairs(counted) do _G["s" .. status] = 0 end
  sother = 0
end

request = function()
  n = n + 1
  if mode == "gate" then
    local p = players[n % #players + 1]
    return wrk.format("GET", "/watch/" .. p.stream .. "/" .. segment, {["x-userid"] = p.user})
  end
  local step, k = n % 3, math.floor(n / 3)
  if step == 1 then
    local p = held[k % #held + 1]
    return wrk.format("PATCH", "/streams/" .. p.stream .. "/heartbeat", {["x-userid"] = p.user})
  end
  local p = cycle[k % #cycle + 1]
  local op = step == 0 and "/activate" or "/deactivate"
  return wrk.format("PATCH", "/streams/" .. p.stream .. op, {["x-userid"] = p.user})
end

response = function(status, headers, body)
  local name = _G["s" .. status] and ("s" .. status) or "sother"
  _G[name] = _G[name] + 1
  if status == 200 then
    if mode == "gate" then
      if #body ~= size then wrong = wrong + 1 end
    elseif not body:find('"status": *"ok"') then
      wrong = wrong + 1
    end
  end
end

done = function(summary, latency, requests)
  local bad, seen = 0, {}
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("wrong") or 0)
  end
  for _, name in ipairs({"s200", "s403", "s404", "s429", "s500", "s502", "s503", "s504", "sother"}) do
    local count = 0
    for _, thread in ipairs(threads) do count = count + (thread:get(name) or 0) end
    if count > 0 then seen[#seen + 1] = name:sub(2) .. ":" .. count end
  end
  io.write(string.format(
    "RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d errors=%d requests=%d bad=%d statuses=%s\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.requests, bad, table.concat(seen, ",")))
end
