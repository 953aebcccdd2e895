-- wrk script of benchmarks/serving.py: POST the same request mix to the BentoML service or to `mlflow models serve`.
--
--   wrk -t1 -c8 -d15s --latency -s benchmarks/wrk/predict.lua http://127.0.0.1:PORT -- BODIES_FILE bento|mlflow
--
-- The second argument picks the body format: "bento" posts {"user_id": .., "n": ..[, "profile": {..}]} to /predict,
-- "mlflow" posts {"dataframe_records": [{"user_id": .., "n": ..[, "age": .., ...]}]} to /invocations. The floor
-- (benchmarks/floor_service.py) takes the "bento" format.
-- BODIES_FILE holds one request per line: a known user's JSON body (already in the server's format), or
-- "@USER_ID N" for an unknown user, whose body gets a fresh random sign-up profile (age, gender, occupation, 5-digit
-- zip) each time, so repeating the file never replays a profile (the service caches answers per profile). Each
-- thread cycles through the lines from its own offset; RECSYS_WRK_SEED (environment) seeds the profiles, so two
-- servers driven with the same seed get the same requests.
-- done() prints one line "RECSYS_WRK {json}": requests, errors, status-code tally (429s separately) and
-- latency percentiles in microseconds, incl. p95 (wrk --latency prints only 50/75/90/99).

local FORMATS = {
   bento = { route = "/predict",
             unknown = '{"user_id": %d, "n": %d, "profile": {"age": %d, "gender": "%s", "occupation": "%s", '
                       .. '"zip": "%05d"}}' },
   mlflow = { route = "/invocations",
              unknown = '{"dataframe_records": [{"user_id": %d, "n": %d, "age": %d, "gender": "%s", '
                        .. '"occupation": "%s", "zip": "%05d"}]}' },
}
local ROUTE, UNKNOWN

local threads = {}
local counter = 0

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

local OCCUPATIONS = { "administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
                      "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer",
                      "retired", "salesman", "scientist", "student", "technician", "writer" }
local GENDERS = { "M", "F" }
local HEADERS = { ["Content-Type"] = "application/json" }

local requests = {}  -- a formatted request (known user) or {user_id, n} (unknown user)
local index = 0
statuses = {}

function init(args)
   local format = FORMATS[args[2] or "bento"]
   if format == nil then
      error("unknown body format " .. tostring(args[2]) .. " (bento or mlflow)")
   end
   ROUTE, UNKNOWN = format.route, format.unknown
   local path = args[1]
   local f = assert(io.open(path, "r"), "cannot open bodies file " .. tostring(path))
   for line in f:lines() do
      local user, n = line:match("^@(%d+)%s+(%d+)")
      if user then
         table.insert(requests, { tonumber(user), tonumber(n) })
      elseif #line > 0 then
         table.insert(requests, wrk.format("POST", ROUTE, HEADERS, line))
      end
   end
   f:close()
   assert(#requests > 0, "no bodies in " .. path)
   index = (id * 7919) % #requests
   math.randomseed((tonumber(os.getenv("RECSYS_WRK_SEED") or "1") or 1) * 1000 + id)
end

function request()
   index = index % #requests + 1
   local r = requests[index]
   if type(r) == "string" then
      return r
   end
   local body = string.format(UNKNOWN, r[1], r[2], math.random(16, 70), GENDERS[math.random(2)],
                              OCCUPATIONS[math.random(#OCCUPATIONS)], math.random(1000, 99999))
   return wrk.format("POST", ROUTE, HEADERS, body)
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests_)
   local tally = {}
   for _, thread in ipairs(threads) do
      local s = thread:get("statuses")
      if s then
         for code, n in pairs(s) do
            tally[code] = (tally[code] or 0) + n
         end
      end
   end
   local codes = {}
   for code, n in pairs(tally) do
      table.insert(codes, string.format('"%d": %d', code, n))
   end
   local e = summary.errors
   io.write(string.format(
      'RECSYS_WRK {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"statuses": {%s}, "latency_us": {"min": %d, "mean": %.1f, "stdev": %.1f, "max": %d, ' ..
      '"p50": %d, "p75": %d, "p90": %d, "p95": %d, "p99": %d, "p999": %d}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout, table.concat(codes, ", "),
      latency.min, latency.mean, latency.stdev, latency.max,
      latency:percentile(50), latency:percentile(75), latency:percentile(90), latency:percentile(95),
      latency:percentile(99), latency:percentile(99.9)))
end
