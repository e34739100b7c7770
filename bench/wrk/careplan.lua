-- wrk script for `make bench` (bench/load.py runs it). Configured by environment variables:
--   BENCH_METHOD  GET or POST (default POST)
--   BENCH_PATH    the request path; "%s" is replaced by the thread's plan id
--   BENCH_PLANS   comma-separated plan ids, one per wrk thread (run with -t = -c: each
--                 connection has its own thread, so each connection writes to its own plan);
--                 more plans than connections: each connection takes every connections-th plan
--                 and writes to them in turn
--   BENCH_TOKEN   bearer token (optional)
--   BENCH_BODY    "information": a new InformationGiven event per request (about 300 bytes;
--                 information_id unique per run and thread: BENCH_RUN, thread, counter); "none": no body
--   BENCH_RUN     a token unique to this wrk run (a plan may get several runs)
--   BENCH_EVENTS  events per request (default 1: one event object; more: a JSON list of them)
--   BENCH_CONNECTIONS  wrk's -c (and -t), for the pacing below
--   BENCH_RATE    requests per second across all connections (default 0: as fast as each
--                 connection can). Paced: each connection keeps its own schedule of one request
--                 every connections/BENCH_RATE seconds (wrk's delay(), timed with the monotonic
--                 clock through LuaJIT's ffi), so a slow answer is caught up on, not lost: the
--                 rate achieved falls short of BENCH_RATE only when the server cannot keep up.
--   BENCH_ANSWERS a file name prefix (optional): each thread appends to PREFIX<thread> one line per
--                 answer of 201, "<CLOCK_MONOTONIC ms> <event_id> ...", the event ids the answer
--                 names (needs BENCH_RATE's clock: give a rate to use it)
-- done() prints one JSON line: requests, duration, errors (and the statuses >= 400 among them),
-- latency percentiles in microseconds.

local method = os.getenv("BENCH_METHOD") or "POST"
local path_template = os.getenv("BENCH_PATH") or "/"
local token = os.getenv("BENCH_TOKEN")
local body_kind = os.getenv("BENCH_BODY") or "information"
local run_id = os.getenv("BENCH_RUN") or "0"
local events_per_request = tonumber(os.getenv("BENCH_EVENTS") or "1")
local rate = tonumber(os.getenv("BENCH_RATE") or "0")
local connections = tonumber(os.getenv("BENCH_CONNECTIONS") or "1")

-- Pacing (BENCH_RATE): connections and threads are one to one (-t = -c), so this Lua state's
-- schedule is its connection's.
local interval_ms, next_due, now_ms = nil, nil, nil
if rate > 0 then
  local ffi = require("ffi")
  ffi.cdef[[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clock_id, bench_timespec *tp);
  ]]
  local ts = ffi.new("bench_timespec")
  now_ms = function()
    ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
end

local plan_ids = {}
for id in string.gmatch(os.getenv("BENCH_PLANS") or "", "[^,]+") do
  plan_ids[#plan_ids + 1] = id
end

local next_plan = 0
local threads = {}

-- Runs in the main Lua state once per thread, before the run: hand each thread its plan.
function setup(thread)
  next_plan = next_plan + 1
  thread:set("plan", plan_ids[((next_plan - 1) % math.max(#plan_ids, 1)) + 1] or "")
  thread:set("thread_no", next_plan)
  local mine = {}
  for j = next_plan, #plan_ids, connections do
    mine[#mine + 1] = plan_ids[j]
  end
  thread:set("my_plans", table.concat(mine, ","))
  threads[#threads + 1] = thread
end

-- Per thread: how many answers of each status >= 400 (wrk itself only counts them).
failed = {}

local answers_prefix = os.getenv("BENCH_ANSWERS")
if answers_prefix == "" then
  answers_prefix = nil
end
local answers = nil

function response(status, headers, body)
  if status >= 400 then
    failed[status] = (failed[status] or 0) + 1
  elseif status == 201 and answers_prefix and now_ms then
    local at = now_ms()
    answers = answers or io.open(answers_prefix .. (thread_no or 0), "a")
    local ids = {}
    for id in string.gmatch(body, '"event_id"%s*:%s*"([%x%-]+)"') do
      ids[#ids + 1] = id
    end
    answers:write(string.format("%.3f %s\n", at, table.concat(ids, " ")))
    answers:flush()
  end
end

local headers = { ["Content-Type"] = "application/json" }
if token and token ~= "" then
  headers["Authorization"] = "Bearer " .. token
end

function init(args)
  if rate > 0 then
    interval_ms = connections * 1000 / rate
    -- spread the connections' schedules over one interval instead of all at once
    next_due = now_ms() + interval_ms * ((thread_no or 1) - 1) / connections
  end
end

function delay()
  if not interval_ms then
    return 0
  end
  next_due = next_due + interval_ms
  local wait = next_due - now_ms()
  if wait < 0 then
    return 0
  end
  return wait
end

local description = "Informert muntlig og skriftlig om retten til individuell plan og koordinator, " ..
  "og om hva planen kan brukes til; brosjyre gitt."
local counter = 0
local path

local turn, rotation = 0, nil

function request()
  if not rotation then
    rotation = {}
    for id in string.gmatch(my_plans or "", "[^,]+") do
      rotation[#rotation + 1] = id
    end
  end
  if #rotation > 1 then
    turn = turn % #rotation + 1
    path = string.gsub(path_template, "%%s", rotation[turn])
  elseif not path then
    path = string.gsub(path_template, "%%s", plan or "")
  end
  local body = nil
  if body_kind == "information" then
    local items = {}
    for i = 1, events_per_request do
      counter = counter + 1
      items[i] = string.format(
        '{"type": "InformationGiven", "information_id": "w%s-%d-%d", "topic": "rights", "form": "both", ' ..
        '"description": "%s", "adapted_how": "tolk til stede, enkel norsk"}',
        run_id, thread_no or 0, counter, description)
    end
    if events_per_request == 1 then
      body = items[1]
    else
      body = "[" .. table.concat(items, ", ") .. "]"
    end
  end
  return wrk.format(method, path, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  local totals, statuses = {}, {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("failed") or {}) do
      totals[status] = (totals[status] or 0) + n
    end
  end
  for status, n in pairs(totals) do
    statuses[#statuses + 1] = string.format('"%d": %d', status, n)
  end
  io.write(string.format(
    'BENCH-JSON {"requests": %d, "duration_us": %d, "bytes": %d, "statuses": {' .. table.concat(statuses, ", ") .. '}, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p95": %d, "p99": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(95), latency:percentile(99)))
end
