-- wrk script for benchmarks/soak.py: a fixed mix of hits, misses, streams and errors, counted per
-- thread by what the client saw; each thread stops after SOAK_PER_THREAD answered requests.
--
-- Mix per 100 requests: 60 hits, mostly on the fast path: 40 generateContent repeats of 64 warm
-- prompts with the key in `x-goog-api-key`, 8 with the key in `?key=`, 6 equivalent variants of them
-- (other JSON whitespace) and 6 OpenAI chat repeats of 16 warm prompts with `Authorization: Bearer`;
-- 15 distinct prompts (misses), 10 SSE streams (5 warm repeats, 5 distinct), 5 JSON-array streams
-- (distinct), 5 malformed bodies (400), 3 path tricks (400), 2 requests without a key (401/403).

local threads = {}
local counter = 1

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local function body(text)
  return '{"contents":[{"role":"user","parts":[{"text":"' .. text .. '"}]}]}'
end

local generate = "/v1beta/models/gemini-2.5-flash:generateContent"
local sse = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
local array = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
local chat = "/v1beta/openai/chat/completions"
local key = {["Content-Type"] = "application/json", ["x-goog-api-key"] = "soak-key"}
local bearer = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer soak-key"}
local nokey = {["Content-Type"] = "application/json"}

function init(args)
  quota = tonumber(os.getenv("SOAK_PER_THREAD"))
  -- wrk calls request() once on its first thread to check the script and never sends that request.
  unsent = id == 1 and 1 or 0
  quota = quota + unsent
  sent = 0
  answered = 0
  seen = {}        -- "status X-Gemcache" -> count
  unexpected = 0
  expected = {}    -- kind of each request sent, in order (wrk answers in order per connection, not globally)
end

local function kind_of(n)
  local slot = n % 100
  if slot < 40 then return "hit"
  elseif slot < 48 then return "querykey"
  elseif slot < 54 then return "variant"
  elseif slot < 60 then return "chat"
  elseif slot < 75 then return "miss"
  elseif slot < 80 then return "ssehit"
  elseif slot < 85 then return "ssemiss"
  elseif slot < 90 then return "arraymiss"
  elseif slot < 95 then return "malformed"
  elseif slot < 98 then return "pathtrick"
  else return "nokey" end
end

local health = wrk.format("GET", "/healthz")

function request()
  -- After its share, a thread sends only health checks (not counted by the proxy) until every
  -- counted request has been answered, so that nothing the proxy counted is left unread.
  if sent >= quota then return health end
  sent = sent + 1
  local kind = kind_of(sent)
  local unique = id .. "-" .. sent
  if kind == "hit" then
    return wrk.format("POST", generate, key, body("soak warm prompt " .. (sent % 64)))
  elseif kind == "querykey" then
    return wrk.format("POST", generate .. "?key=soak-key", nokey, body("soak warm prompt " .. (sent % 64)))
  elseif kind == "variant" then
    local warm = body("soak warm prompt " .. (sent % 64))
    return wrk.format("POST", generate, key, "{" .. string.rep(" ", 1 + sent % 29) .. string.sub(warm, 2))
  elseif kind == "chat" then
    local prompt = "soak warm chat " .. (sent % 16)
    return wrk.format("POST", chat, bearer, '{"model":"gemini-2.5-flash","messages":[{"role":"user","content":"' .. prompt .. '"}]}')
  elseif kind == "miss" then
    return wrk.format("POST", generate, key, body("soak distinct " .. unique))
  elseif kind == "ssehit" then
    return wrk.format("POST", sse, key, body("soak warm stream " .. (sent % 16)))
  elseif kind == "ssemiss" then
    return wrk.format("POST", sse, key, body("soak distinct stream " .. unique))
  elseif kind == "arraymiss" then
    return wrk.format("POST", array, key, body("soak distinct array " .. unique))
  elseif kind == "malformed" then
    return wrk.format("POST", generate, key, '{"contents":[{"parts":')
  elseif kind == "pathtrick" then
    return wrk.format("POST", "/v1beta/models/..%2F..%2Ffiles:generateContent", key, body("x"))
  else
    return wrk.format("POST", generate, nokey, body("soak no key"))
  end
end

function response(status, headers, body)
  if string.sub(body, 1, 14) == '{"status":"ok"' then return end
  answered = answered + 1
  local outcome = headers["X-Gemcache"] or headers["x-gemcache"] or "-"
  local label = status .. " " .. outcome
  if status == 400 and string.find(body, "Invalid request target", 1, true) then label = "400 path" end
  seen[label] = (seen[label] or 0) + 1
  local ok = (status == 200 and (outcome == "HIT" or outcome == "MISS" or outcome == "COALESCED"))
    or status == 400 or status == 401 or status == 403
  if not ok then unexpected = unexpected + 1 end
  if answered == quota - unsent then
    -- wrk itself only stops at the end of -d; soak.py interrupts it once every thread left a mark.
    local mark = io.open(os.getenv("SOAK_MARKS") .. "/thread-" .. id, "w")
    mark:close()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local totals, answeredAll, unexpectedAll = {}, 0, 0
  for _, thread in ipairs(threads) do
    answeredAll = answeredAll + thread:get("answered")
    unexpectedAll = unexpectedAll + thread:get("unexpected")
    for label, count in pairs(thread:get("seen")) do totals[label] = (totals[label] or 0) + count end
  end
  io.write("SOAK answered=" .. answeredAll .. " unexpected=" .. unexpectedAll
    .. " socket_errors=" .. (summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout)
    .. " non2xx3xx=" .. summary.errors.status .. "\n")
  for label, count in pairs(totals) do io.write("SOAK seen " .. label .. " " .. count .. "\n") end
  io.write(string.format("SOAK latency_p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
