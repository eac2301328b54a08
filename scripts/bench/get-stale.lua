-- wrk: GET /v1/kv/<random key>?consistency=stale, served by whichever node
-- receives it; the keys must be preloaded. See common.lua for the settings.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

function request()
   return wrk.format("GET", bench.path() .. "?consistency=stale")
end
