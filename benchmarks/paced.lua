-- wrk script: post.lua's request, each connection waiting a fixed number of milliseconds (the first
-- argument after --) before every request, so that every server gets the same offered load, below
-- the capacity of each: tails then compare at equal throughput (hitpath.py --pace-ms).
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "post.lua")

local pause = 1

function init(args)
   pause = tonumber(args[1]) or pause
end

function delay()
   return pause
end
