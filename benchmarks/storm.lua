-- wrk script: a new generateContent prompt on every request from every thread and connection (every
-- one a miss). `wrk ... -s storm.lua URL -- PREFIX`: PREFIX makes the prompts of one run distinct
-- from every other run's. Used by missstorm.py and scaling.py.
local threads = 0
setup = function(thread)
    thread:set("id", threads)
    threads = threads + 1
end
init = function(args)
    prefix = args[1] or tostring(os.time())
    counter = 0
end
request = function()
    counter = counter + 1
    local body = '{"contents":[{"role":"user","parts":[{"text":"' .. prefix .. ' thread ' .. id .. ' prompt ' .. counter .. '"}]}]}'
    return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["x-goog-api-key"] = "benchmark-key"}, body)
end
