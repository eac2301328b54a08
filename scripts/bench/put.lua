-- wrk: PUT /v1/kv/<random preloaded-space key> with a BENCH_VALUE_SIZE body.
-- See common.lua for the settings.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local body = bench.value()
local headers = { ["Content-Type"] = "application/octet-stream" }

function request()
   return wrk.format("PUT", bench.path(), headers, body)
end
