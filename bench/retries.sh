#!/usr/bin/env bash
# The retry bar: an upstream of two targets, one answering 503 to everything,
# and 1000 GETs through the gateway, with a route retry policy (the defaults:
# 2 retries of 502/503/504, budget 20% or 3 in flight). Reports the share of
# requests that succeeded, the requests the failing target received, and the
# retries made and refused (from the gateway's metrics), at several client
# concurrencies; then the same with outlier detection on the upstream.
#
#   bench/retries.sh        # needs nginx (apt-get install -y nginx-light)
#
# Environment: REQUESTS (default 1000), CONCURRENCY (default "1 8 32").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REQUESTS=${REQUESTS:-1000}
CONCURRENCY=${CONCURRENCY:-1 8 32}
WORK=$(mktemp -d)
cleanup() {
  for job in $(jobs -p); do kill "$job" 2>/dev/null || true; done
  for pid in "$WORK"/*.pid; do [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
command -v nginx >/dev/null || { echo "bench: nginx is missing (apt-get install -y nginx-light)" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
cargo build --release -p gateway --bin gateway >&2
GATEWAY=${CARGO_TARGET_DIR:-$ROOT/target}/release/gateway
OK_PORT=$(free_port); BAD_PORT=$(free_port)

# Two targets: one answers 200, the other 503; each logs what it receives.
chmod 755 "$WORK"
cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx.error.log warn;
events { worker_connections 1024; }
http {
  client_body_temp_path $WORK/body; proxy_temp_path $WORK/proxy;
  fastcgi_temp_path $WORK/fastcgi; uwsgi_temp_path $WORK/uwsgi; scgi_temp_path $WORK/scgi;
  log_format bare '\$request';
  server { listen 127.0.0.1:$OK_PORT; keepalive_requests 100000; access_log $WORK/ok.log bare;
    location / { return 200 'ok\n'; } }
  server { listen 127.0.0.1:$BAD_PORT; keepalive_requests 100000; access_log $WORK/bad.log bare;
    location / { return 503 'down\n'; } }
}
CONF
nginx -c "$WORK/nginx.conf"

# $1 name, $2 extra upstream lines, $3 port, $4 admin port, $5 the route's
# retry table -> a gateway config with an admin listener.
gateway_conf() {
  cat > "$WORK/$1.toml" <<CONF
[server]
listen = "127.0.0.1:$3"
access_log_sample = 0.0

[admin]
listen = "127.0.0.1:$4"

[upstreams.api]
targets = ["127.0.0.1:$OK_PORT", "127.0.0.1:$BAD_PORT"]
max_fails = 0
$2

[[routes]]
name = "api"
path = "/{*rest}"
upstream = "api"
retry = ${5:-{\}}
CONF
}

# One measurement: a fresh gateway, $REQUESTS GETs at concurrency $2.
measure() { # $1 label, $2 concurrency, $3 extra upstream lines, $4 the retry table
  local port admin pid
  port=$(free_port); admin=$(free_port)
  gateway_conf gw "$3" "$port" "$admin" "${4:-}"
  : > "$WORK/ok.log"; : > "$WORK/bad.log"
  nginx -c "$WORK/nginx.conf" -s reopen
  RUST_LOG=warn "$GATEWAY" run --config "$WORK/gw.toml" > /dev/null 2> "$WORK/gw.log" &
  pid=$!
  wait_port "$port"
  python3 - "$port" "$admin" "$REQUESTS" "$2" "$1" "$WORK/ok.log" "$WORK/bad.log" <<'PY'
import concurrent.futures, http.client, re, sys, time, urllib.request
port, admin, total, concurrency, label, ok_log, bad_log = sys.argv[1:8]
total, concurrency = int(total), int(concurrency)
def worker(count):
    conn, good = http.client.HTTPConnection("127.0.0.1", int(port)), 0
    for _ in range(count):
        conn.request("GET", "/items")
        response = conn.getresponse()
        response.read()
        good += response.status == 200
    return good
shares = [total // concurrency + (i < total % concurrency) for i in range(concurrency)]
with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
    good = sum(pool.map(worker, shares))
time.sleep(0.3)  # nginx writes its access log lines after the answers
metrics = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics").read().decode()
def metric(name):
    m = re.search(rf'^gateway_{name}_total{{upstream="api"}} (\S+)', metrics, re.M)
    return int(float(m.group(1))) if m else 0
lines = lambda path: sum(1 for _ in open(path))
print(f"| {label} | {concurrency} | {good}/{total} ({100 * good / total:.1f}%) | {lines(bad_log)} | {lines(ok_log)} | "
      f"{metric('upstream_retries')} | {metric('upstream_retries_refused')} |")
PY
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

echo "### Retries with one of two targets failing"
echo
echo "$REQUESTS GETs through one gateway (release build) to an upstream of two nginx targets, one answering 503 to"
echo "everything; the route has \`retry = {}\` (2 retries of 502/503/504, budget 20% or 3 in flight)."
echo
echo "| setup | clients | succeeded | requests to the failing target | requests to the healthy target | retries | retries refused by the budget |"
echo "|---|---|---|---|---|---|---|"
for c in $CONCURRENCY; do measure "retries" "$c" ""; done
for c in $CONCURRENCY; do
  measure "retries, budget 100% of requests in flight" "$c" "" "{ budget = 1.0 }"
done
for c in $CONCURRENCY; do
  measure "retries + outlier detection (5 errors in a row)" "$c" "outlier_detection = { consecutive_errors = 5 }"
done
