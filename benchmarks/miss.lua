-- wrk script: a new generateContent prompt on every request (every one a miss), run with -t1.
local counter = 0
request = function()
    counter = counter + 1
    local body = '{"contents":[{"role":"user","parts":[{"text":"Miss number ' .. counter .. ' at ' .. os.time() .. '"}]}]}'
    return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["x-goog-api-key"] = "benchmark-key"}, body)
end
