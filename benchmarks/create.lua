-- wrk's script for the harness's `capacity` scenario: POST /rooms/ with the body
-- `loadgen create` sends, and one JSON line at the end in the generator's shape.
-- Usage: wrk -t1 -c16 -d5s -s benchmarks/create.lua http://HOST:PORT/rooms/
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"name":"c0","owner_name":"o0","expiry_seconds":60}'

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local errors = summary.errors
  local failed = errors.connect + errors.read + errors.write + errors.timeout + errors.status
  local rooms = summary.requests - errors.status
  io.write(string.format(
    '{"scenario":"capacity","conc":16,"secs":%.1f,"rooms":%d,"errors":%d,"rooms_per_s":%d,' ..
    '"p50_ms":%.2f,"p99_ms":%.2f}\n',
    secs, rooms, failed, math.floor(rooms / secs + 0.5),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
