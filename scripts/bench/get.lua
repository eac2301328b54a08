-- wrk: linearizable GET /v1/kv/<random key>; the keys must be preloaded
-- (raftkv bench --preload-only). See common.lua for the settings.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

function request()
   return wrk.format("GET", bench.path())
end
