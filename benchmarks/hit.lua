-- wrk script for benchmarks/hitpath.py: one request, POSTed to the URL's path and query with the
-- headers given by -H, its body and options after `--`:
--
--   wrk -H "Content-Type: application/json" -s hit.lua URL -- BODY [PACE_MS [SERIES]]
--
-- Without more, every request is a byte-identical repeat of BODY.
-- PACE_MS above 0: each connection waits that long before every request, so that every server gets
-- the same offered load, below the capacity of each: tails then compare at equal throughput.
-- SERIES (a number, a new one for every wrk run): every request's body is a byte sequence never sent
-- before that normalizes to BODY (BODY, an object, with the series, the thread and the request's
-- number written in JSON whitespace around its braces), a first-seen equivalent variant.

local threads = 0

function setup(thread)
   threads = threads + 1
   thread:set("thread_number", threads)
end

-- `n` as base-4 digits written in the four JSON whitespace characters: a different run for every n.
local function whitespace(n)
   local digits = { " ", "\t", "\n", "\r" }
   local run = ""
   while n > 0 do
      run = digits[n % 4 + 1] .. run
      n = math.floor(n / 4)
   end
   return run
end

function init(args)
   wrk.method = "POST"
   wrk.body = args[1]
   local pause = tonumber(args[2]) or 0
   if pause > 0 then
      delay = function()
         return pause
      end
   end
   local series = tonumber(args[3])
   if series then
      -- The request line and headers are the same every time: only Content-Length and the body change.
      local lines = { wrk.method .. " " .. wrk.path .. " HTTP/1.1" }
      for name, value in pairs(wrk.headers) do
         lines[#lines + 1] = name .. ": " .. value
      end
      local head = table.concat(lines, "\r\n") .. "\r\nContent-Length: "
      local opening = whitespace(series) .. "{" .. whitespace(thread_number)
      local inside = assert(string.match(wrk.body, "^{(.*)}$"), "BODY must be a JSON object")
      local sent = 0
      request = function()
         sent = sent + 1
         local body = opening .. inside .. whitespace(sent) .. "}"
         return head .. #body .. "\r\n\r\n" .. body
      end
   end
end
