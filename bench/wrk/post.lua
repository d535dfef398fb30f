-- POST a fixed JSON body to /predict and print a JSON summary when the run ends.
-- Usage: wrk -s bench/wrk/post.lua URL -- BODY_FILE
-- The last line wrk prints is one JSON object: requests, duration_us, bytes, errors and
-- latency percentiles in microseconds (wrk's latency histogram).

function init(args)
   local path = args[1]
   if path == nil then
      error("usage: wrk -s post.lua URL -- BODY_FILE")
   end
   local file = assert(io.open(path, "rb"))
   wrk.body = file:read("*a")
   file:close()
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["Accept"] = "application/json"
end

function done(summary, latency, requests)
   local e = summary.errors
   local parts = {
      string.format('"requests":%d', summary.requests),
      string.format('"duration_us":%d', summary.duration),
      string.format('"bytes":%d', summary.bytes),
      string.format('"connect_errors":%d', e.connect),
      string.format('"read_errors":%d', e.read),
      string.format('"write_errors":%d', e.write),
      string.format('"status_errors":%d', e.status),
      string.format('"timeouts":%d', e.timeout),
      string.format('"latency_mean_us":%.1f', latency.mean),
      string.format('"latency_max_us":%d', latency.max),
   }
   for _, p in ipairs({50, 90, 99}) do
      parts[#parts + 1] = string.format('"p%d_us":%d', p, latency:percentile(p))
   end
   io.write("{" .. table.concat(parts, ",") .. "}\n")
end
