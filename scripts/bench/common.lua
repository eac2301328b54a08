-- Shared by put.lua and get.lua (wrk runs one script; they dofile this).
--
-- Settings come from the environment, because wrk's setup() and done()
-- do not see the script arguments:
--   BENCH_KEYS        size of the key space (default 10000)
--   BENCH_KEY_PREFIX  key prefix (default bench/); keys are the prefix and
--                     eight digits, as raftkv bench writes them
--   BENCH_VALUE_SIZE  PUT body size in bytes (default 256)
--   BENCH_SEED        seeds the key choice (default 1)
--   BENCH_WRK_OUT     file that done() writes the results to, for
--                     scripts/bench.sh to merge: one "summary" line, then
--                     one "lat <microseconds> <count>" line per distinct
--                     latency (wrk records latency at 1 us resolution)

bench = {}
bench.keys = tonumber(os.getenv("BENCH_KEYS") or "10000")
bench.prefix = "/v1/kv/" .. (os.getenv("BENCH_KEY_PREFIX") or "bench/")
bench.value_size = tonumber(os.getenv("BENCH_VALUE_SIZE") or "256")
math.randomseed(tonumber(os.getenv("BENCH_SEED") or "1"))

-- bench.path returns the path of a key drawn uniformly from the key space.
function bench.path()
   return string.format("%s%08d", bench.prefix, math.random(0, bench.keys - 1))
end

-- bench.value returns value_size printable bytes.
function bench.value()
   local letters = "abcdefghijklmnopqrstuvwxyz"
   local t = {}
   for i = 1, bench.value_size do
      local j = (i * 7) % #letters + 1
      t[i] = letters:sub(j, j)
   end
   return table.concat(t)
end

function done(summary, latency, requests)
   local path = os.getenv("BENCH_WRK_OUT")
   if not path then
      return
   end
   local f = assert(io.open(path, "w"))
   local e = summary.errors
   f:write(string.format("summary requests=%d duration_us=%d status=%d connect=%d read=%d write=%d timeout=%d\n",
      summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout))
   for i = 1, #latency do
      local v, c = latency(i)
      f:write(string.format("lat %d %d\n", v, c))
   end
   f:close()
end
