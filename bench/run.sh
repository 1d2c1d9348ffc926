#!/usr/bin/env bash
# Side-by-side benchmark: nginx and the gateway proxying the same upstream, with
# the same load from wrk, in one run on this machine. Writes bench/REPORT.md.
#
#   bench/run.sh            # needs nginx, wrk and redis-server (apt-get install -y nginx-light wrk redis-server)
#
# Environment: DURATION (default 10s), CONNECTIONS (default 64), THREADS (default 2).
#   ONLY=auth         run only the authorization rows (the empty pipeline,
#                     key-auth, ext-auth with its decision cached, and
#                     basic-auth with an argon2id password verified before).
#   ONLY=validation   run only the request-validation speed bars (the empty
#                     pipeline, and the API of bench/validation.yaml served with
#                     `validate = false` and `validate = true`, GET and POST):
#                     prints their section to stdout and leaves REPORT.md alone.
#   ONLY=compression  run only the compression rows (a 100 KB JSON response,
#                     gzip at the default level against the same route
#                     uncompressed, nginx's gzip beside nginx plain): prints
#                     their section to stdout and leaves REPORT.md alone.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
WORK=$(mktemp -d)
cleanup() {
  for job in $(jobs -p); do kill "$job" 2>/dev/null || true; done
  for name in upstream proxy proxygz redis bare; do
    if [ -f "$WORK/$name.pid" ]; then kill "$(cat "$WORK/$name.pid")" 2>/dev/null || true; fi
  done
  sleep 0.2
  rm -rf "$WORK"
}
trap cleanup EXIT

for tool in nginx wrk redis-server; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install -y nginx-light wrk redis-server)" >&2; exit 1; }
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UPSTREAM_PORT=$(free_port); NGINX_PORT=$(free_port); GATEWAY_PORT=$(free_port); REDIS_PORT=$(free_port)
BARE_PORT=$(free_port)

cargo build --release -p gateway --bin gateway --example bare_proxy >&2
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
GATEWAY=$TARGET/release/gateway

nginx_conf() { # $1 name, $2 server block
  cat > "$WORK/$1.conf" <<CONF
worker_processes 2;
pid $WORK/$1.pid;
error_log $WORK/$1.error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/$1-body;
  proxy_temp_path $WORK/$1-proxy;
  fastcgi_temp_path $WORK/$1-fastcgi;
  uwsgi_temp_path $WORK/$1-uwsgi;
  scgi_temp_path $WORK/$1-scgi;
  $2
}
CONF
}

# A 10 KB XML document (an RSS feed) for the XML-to-JSON rows, in a directory
# of its own: the gateways watch the one their configs are in, and nginx
# opening the file there at every request would wake each of them.
mkdir "$WORK/www"
python3 - "$WORK/www/data.xml" <<'PY'
import sys
items = "".join(
    f'<item id="{i}"><title>Item number {i}</title><link>https://example.com/items/{i}</link>'
    f'<description>Description of item {i}, with a little text.</description><price currency="EUR">{i}.99</price></item>'
    for i in range(48))
doc = f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Bench feed</title>{items}</channel></rss>'
open(sys.argv[1], "w").write(doc)
PY
XML_BYTES=$(stat -c %s "$WORK/www/data.xml")
# A 100 KB JSON document for the compression rows: records of varied values,
# as an API's list answer has (about 6x smaller gzipped, not a run of one byte).
python3 - "$WORK/www/data.json" <<'PY'
import json, random, sys
rng = random.Random(20)
words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike".split()
records, size = [], 0
while size < 100 * 1024:
    record = {"id": rng.randrange(10**9), "name": " ".join(rng.choice(words) for _ in range(3)),
              "price": round(rng.uniform(1, 1000), 2), "active": rng.random() < 0.5,
              "tags": rng.sample(words, 3), "sku": f"SKU-{rng.randrange(10**6):06d}"}
    records.append(record)
    size += len(json.dumps(record)) + 2
open(sys.argv[1], "w").write(json.dumps(records))
PY
JSON_BYTES=$(stat -c %s "$WORK/www/data.json")
# nginx workers run as an unprivileged user: let them read it.
chmod 755 "$WORK" "$WORK/www"; chmod 644 "$WORK/www/data.xml" "$WORK/www/data.json"

# The fixed upstream both proxies forward to: nginx answering from memory
# (and the XML document from its page cache).
nginx_conf upstream "server { listen 127.0.0.1:$UPSTREAM_PORT; keepalive_requests 100000;
    location / { return 200 'hello from upstream\n'; }
    location = /data.xml { default_type application/xml; alias $WORK/www/data.xml; }
    location = /data.json { default_type application/json; alias $WORK/www/data.json; }
    location = /authz { return 200 '{}'; } }"
# The peer: nginx as a keep-alive reverse proxy.
nginx_conf proxy "upstream up { server 127.0.0.1:$UPSTREAM_PORT; keepalive 128; }
  server { listen 127.0.0.1:$NGINX_PORT; keepalive_requests 100000;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
# The compression rows' peer: the same proxy with gzip at the default level.
NGINXGZ_PORT=$(free_port)
nginx_conf proxygz "upstream up { server 127.0.0.1:$UPSTREAM_PORT; keepalive 128; }
  server { listen 127.0.0.1:$NGINXGZ_PORT; keepalive_requests 100000;
    gzip on; gzip_comp_level 6; gzip_types application/json; gzip_proxied any; gzip_vary on;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
nginx -c "$WORK/upstream.conf"
nginx -c "$WORK/proxy.conf"
nginx -c "$WORK/proxygz.conf"
# The shared store for the Redis rows, on loopback like everything else.
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" > /dev/null &
echo $! > "$WORK/redis.pid"
# The floor: hyper's server and pooled client on the gateway's runtime layout,
# with nothing else (bench/bare_proxy.rs).
"$TARGET/release/examples/bare_proxy" "127.0.0.1:$BARE_PORT" "127.0.0.1:$UPSTREAM_PORT" 2 &
echo $! > "$WORK/bare.pid"

API_KEY=bench-key-0123456789
# basic-auth's password and its argon2id hash, as an operator makes it.
PASSWORD=bench-password-0123456789
PASSWORD_HASH=$(printf '%s\n' "$PASSWORD" | "$GATEWAY" hash-password)
HS_SECRET=bench-hs256-secret-0123456789abcdef
# An HS256 token for the jwt run, made with the Python standard library.
JWT=$(python3 - "$HS_SECRET" <<'PY'
import base64, hashlib, hmac, json, sys
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"sub": "user-42", "aud": "bench", "exp": 4102444800}).encode())
sig = hmac.new(sys.argv[1].encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
print(f"{head}.{body}.{b64(sig)}")
PY
)

gateway_conf() { # $1 file, $2 number of headers plugins, or "key" / "keyrl" / "jwt" / "rl" / "rlr" / "hit" / "xml" / "xmlpass" / "val" / "noval" / "gz" / "extauth" / "basic", $3 port
  {
    echo "[server]"
    echo "listen = \"127.0.0.1:$3\""
    if [ "$2" = rlr ]; then
      echo "[redis]"
      echo "url = \"redis://127.0.0.1:$REDIS_PORT\""
    fi
    echo "[upstreams.up]"
    echo "targets = [\"127.0.0.1:$UPSTREAM_PORT\"]"
    if [ "$2" = key ] || [ "$2" = keyrl ]; then
      for i in $(seq 1 1000); do
        echo "[[consumers]]"
        echo "name = \"c$i\""
        echo "keys = [{ plaintext = \"consumer-key-$i-0000\" }]"
      done
      echo "[[consumers]]"
      echo "name = \"bench\""
      echo "keys = [{ plaintext = \"$API_KEY\" }]"
    fi
    if [ "$2" = basic ]; then
      # 1001 consumers with argon2id passwords (one hash, as the cost of a
      # check does not depend on which), as many as key-auth's.
      for i in $(seq 1 1000); do
        echo "[[consumers]]"
        echo "name = \"c$i\""
        echo "passwords = [{ hash = \"$PASSWORD_HASH\" }]"
      done
      echo "[[consumers]]"
      echo "name = \"bench\""
      echo "passwords = [{ hash = \"$PASSWORD_HASH\" }]"
    fi
    if [ "$2" = val ] || [ "$2" = noval ]; then
      # The API of bench/validation.yaml (copied next to the configs), its
      # requests checked against the document or not.
      echo "[apis.items]"
      echo "openapi = \"validation.yaml\""
      echo "upstream = \"up\""
      if [ "$2" = val ]; then echo "validate = true"; else echo "validate = false"; fi
    else
      echo "[[routes]]"
      echo "name = \"all\""
      echo "path = \"/{*rest}\""
      echo "upstream = \"up\""
    fi
    case "$2" in
      val|noval) ;;
      gz)
        # gzip only, at its default level (6), as nginx's gzip beside it.
        echo "[routes.compression]"
        echo "algorithms = [\"gzip\"]"
        ;;
      key)
        echo "[[routes.plugins]]"
        echo "plugin = \"key-auth\""
        ;;
      keyrl)
        echo "[[routes.plugins]]"
        echo "plugin = \"key-auth\""
        echo "[[routes.plugins]]"
        echo "plugin = \"rate-limit\""
        echo "config = { limits = [{ rate = \"1000000000/s\", by = [\"consumer\"] }] }"
        ;;
      rl|rlr)
        echo "[[routes.plugins]]"
        echo "plugin = \"rate-limit\""
        [ "$2" = rlr ] && echo "store = \"redis\""
        echo "config = { limits = [{ rate = \"1000000000/s\", by = [\"ip\"] }] }"
        ;;
      hit)
        echo "[[routes.plugins]]"
        echo "plugin = \"cache\""
        echo "config = { ttl = \"1h\" }"
        ;;
      xml|xmlpass)
        echo "[[routes.plugins]]"
        echo "plugin = \"xml-json\""
        echo "max_body = \"1MiB\""
        # Reads the body, as the converting one does, and converts nothing.
        if [ "$2" = xmlpass ]; then echo "config = { xml_types = [\"application/x-bench-none\"] }"; fi
        ;;
      extauth)
        # The authorizer is the upstream nginx (an allow to everything);
        # after the first request every decision is the cached one.
        echo "[[routes.plugins]]"
        echo "plugin = \"ext-auth\""
        echo "allowed_hosts = [\"127.0.0.1:$UPSTREAM_PORT\"]"
        echo "config = { endpoint = \"http://127.0.0.1:$UPSTREAM_PORT/authz\", cache_ttl = 3600 }"
        ;;
      basic)
        echo "[[routes.plugins]]"
        echo "plugin = \"basic-auth\""
        ;;
      jwt)
        echo "[[routes.plugins]]"
        echo "plugin = \"jwt\""
        echo "config = { algorithms = [\"HS256\"], hmac_secret = \"$HS_SECRET\", audience = \"bench\", claims_to_headers = { sub = \"x-user\" } }"
        ;;
      *)
        for i in $(seq 1 "$2"); do
          echo "[[routes.plugins]]"
          echo "plugin = \"headers\""
          echo "config = { request = { set = { \"x-plugin-$i\" = \"$i\" } } }"
        done
        ;;
    esac
  } > "$1"
}

wait_port() { for _ in $(seq 1 200); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

# Refuse to measure a setup that does not answer 200.
sanity() { # $1 url, $2 log file, $3 optional request header
  local status
  status=$(curl -s -o /dev/null -w '%{http_code}' ${3:+-H "$3"} "$1")
  if [ "$status" != 200 ]; then echo "bench: $1 answered $status" >&2; cat "$2" >&2; exit 1; fi
}

# wrk output -> "rps p50_us p99_us non2xx"; $2 an optional request header
run_wrk() {
  local header=(); [ -n "${2:-}" ] && header=(-H "$2")
  wrk -t"$THREADS" -c"$CONNECTIONS" -d2s "${header[@]}" "$1" >/dev/null   # warm-up
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "${header[@]}" "$1" > "$WORK/wrk.out"
  python3 - "$WORK/wrk.out" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def us(v):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    if not m:
        sys.exit(f"cannot parse wrk latency {v!r} in:\n{text}")
    n, u = float(m.group(1)), m.group(2)
    return n * {"us": 1, "ms": 1000, "s": 1e6, "m": 6e7}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = us(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = us(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
sock = re.search(r"Socket errors: (.*)", text)
print(f"{rps:.0f} {p50:.0f} {p99:.0f} {errors.group(1) if errors else 0}")
PY
}

# The gateway's CPU time per request (user + system, from /proc) under a
# moderate load: the end-to-end cost of a pipeline, free of scheduling noise.
cpu_ticks() { # $@ pids -> user + system ticks of all of them
  local pid total=0
  for pid in "$@"; do total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done
  echo "$total"
}
cpu_per_request() { # $1 url, $2 pids (space-separated), $3 optional header, $4 optional wrk script
  local header=(); [ -n "${3:-}" ] && header=(-H "$3")
  local script=(); [ -n "${4:-}" ] && script=(-s "$4")
  local before after
  # shellcheck disable=SC2086
  before=$(cpu_ticks $2)
  wrk -t1 -c16 -d5s "${header[@]}" "${script[@]}" "$1" > "$WORK/wrkcpu.out"
  # shellcheck disable=SC2086
  after=$(cpu_ticks $2)
  python3 - "$WORK/wrkcpu.out" "$before" "$after" "$(getconf CLK_TCK)" "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
requests = int(re.search(r"(\d+) requests in", text).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if errors:
    sys.exit(f"bench: {sys.argv[5]} answered {errors.group(1)} non-2xx under load:\n{text}")
ticks = int(sys.argv[3]) - int(sys.argv[2])
print(f"{ticks / int(sys.argv[4]) * 1e6 / requests:.1f}")
PY
}
wrk_rps() { sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$WORK/wrkcpu.out"; }

# The micro-benchmark first, on a quiet machine.
MICRO=""
if [ -z "${ONLY:-}" ]; then
  MICRO=$(cargo bench -q -p gateway --bench plugin_call 2>/dev/null | grep '^plugin_call' || true)
fi

declare -A RESULT
declare -A PORT
declare -A HEADER
CONFIGS="0 1 5 key jwt rl rlr hit xml noval val"
case "${ONLY:-}" in
  "") ;;
  validation) CONFIGS="0 noval val" ;;
  compression) CONFIGS="0 gz" ;;
  auth) CONFIGS="0 key extauth basic" ;;
  *) echo "bench: ONLY=${ONLY} is not known (validation, compression, auth)" >&2; exit 2 ;;
esac
declare -A URLPATH
URLPATH[xml]="/data.xml"
# The request-validation rows: one API (bench/validation.yaml) served without
# and with validation; a GET with a path parameter and two query parameters,
# and a POST with a 305-byte JSON body (through a wrk script).
cp bench/validation.yaml "$WORK/validation.yaml"
VAL_GET="/items/42?limit=10&tag=a&tag=b"
URLPATH[noval]=$VAL_GET
URLPATH[val]=$VAL_GET
VAL_BODY='{"name":"Desk lamp with a long enough name","sku":"LMP-042","price":{"amount":49.9,"currency":"EUR"},"tags":["lighting","desk","office"],"active":true,"lines":[{"sku":"BLB-001","quantity":2,"note":"warm white bulbs"},{"sku":"CBL-010","quantity":1,"note":"two metre cable"},{"sku":"SCR-100","quantity":8}]}'
printf 'wrk.method = "POST"\nwrk.body = [[%s]]\nwrk.headers["Content-Type"] = "application/json"\n' "$VAL_BODY" > "$WORK/post.lua"
# The compression rows: the 100 KB JSON document, asked for with gzip.
URLPATH[gz]=/data.json
HEADER[gz]="accept-encoding: gzip"
HEADER[key]="x-api-key: $API_KEY"
HEADER[jwt]="authorization: Bearer $JWT"
HEADER[extauth]="authorization: Bearer bench-opaque-token"
HEADER[basic]="authorization: Basic $(printf 'bench:%s' "$PASSWORD" | base64 -w0)"
GW_PIDS=()
declare -A GWPID
for n in $CONFIGS; do
  PORT[$n]=$(free_port)
  gateway_conf "$WORK/gw$n.toml" "$n" "${PORT[$n]}"
  RUST_LOG=warn "$GATEWAY" run --config "$WORK/gw$n.toml" > /dev/null 2> "$WORK/gw$n.log" &
  GW_PIDS+=($!)
  GWPID[$n]=$!
done
for n in $CONFIGS; do
  wait_port "${PORT[$n]}"
  sanity "http://127.0.0.1:${PORT[$n]}${URLPATH[$n]:-/}" "$WORK/gw$n.log" "${HEADER[$n]:-}"
done
# Validation on means refusals: the validating gateway answers 400 to a query
# parameter over its maximum and to a body without its required `lines`, the
# other lets both through; both take the POST the rounds send.
expect() { # $1 status, $2 log file, $3... curl arguments
  local want=$1 log=$2 status; shift 2
  status=$(curl -s -o /dev/null -w '%{http_code}' "$@")
  if [ "$status" != "$want" ]; then echo "bench: curl $* answered $status, not $want" >&2; cat "$log" >&2; exit 1; fi
}
for n in noval val; do
  [ -n "${PORT[$n]:-}" ] || continue   # ONLY=compression runs neither
  url="http://127.0.0.1:${PORT[$n]}/items"
  if [ "$n" = val ]; then refused=400; else refused=200; fi
  expect 200 "$WORK/gw$n.log" -X POST -H 'content-type: application/json' --data "$VAL_BODY" "$url"
  expect "$refused" "$WORK/gw$n.log" "$url/42?limit=500&tag=a"
  expect "$refused" "$WORK/gw$n.log" -X POST -H 'content-type: application/json' \
    --data '{"name":"x","sku":"LMP-042","price":{"amount":1,"currency":"EUR"}}' "$url"
done
# One round of the validation speed bars (CPU per request, and requests/s of
# the same wrk run): the API without and with validation, GET and POST.
declare -A BAR VBAR VRPS
validation_round() {
  local n
  for n in noval val; do
    VBAR[get$n]+=" $(cpu_per_request "http://127.0.0.1:${PORT[$n]}$VAL_GET" "${GWPID[$n]}")"
    VRPS[get$n]+=" $(wrk_rps)"
    VBAR[post$n]+=" $(cpu_per_request "http://127.0.0.1:${PORT[$n]}/items" "${GWPID[$n]}" "" "$WORK/post.lua")"
    VRPS[post$n]+=" $(wrk_rps)"
  done
}
# Their section of the report, into $WORK/validation.md.
validation_report() {
  python3 - > "$WORK/validation.md" <<PY
import statistics
bar = {k: [float(x) for x in v.split()] for k, v in {"gw0": "${BAR[gw0]}", "getnoval": "${VBAR[getnoval]}", "getval": "${VBAR[getval]}", "postnoval": "${VBAR[postnoval]}", "postval": "${VBAR[postval]}"}.items()}
rps = {k: [float(x) for x in v.split()] for k, v in {"getnoval": "${VRPS[getnoval]}", "getval": "${VRPS[getval]}", "postnoval": "${VRPS[postnoval]}", "postval": "${VRPS[postval]}"}.items()}
med = {k: statistics.median(v) for k, v in bar.items()}
rmed = {k: statistics.median(v) for k, v in rps.items()}
print("### Request validation")
print()
print("The API of \`bench/validation.yaml\` (OpenAPI 3.1: \`GET /items/{id}\` with an integer path parameter with bounds, an")
print("integer query parameter with a maximum and an array of strings in exploded form; \`POST /items\` with a JSON body of")
print("six properties, a nested array of objects and a \`\$ref\` to a component), served by two gateways, with \`validate = false\`")
print("and with \`validate = true\`, measured in the same alternating rounds as the setups above. The GET is")
print("\`${VAL_GET}\`, the POST a valid ${#VAL_BODY}-byte JSON body (wrk with a script). CPU per request (us), and")
print("requests/s of the same wrk runs (1 thread, 16 connections, 5 s: not saturating, the CPU is the measure):")
print()
print("| setup | CPU rounds (us) | CPU median (us) | requests/s rounds | requests/s median |")
print("|---|---|---|---|---|")
print(f"| gateway, empty pipeline (catch-all route, GET /) | {', '.join(f'{x:.1f}' for x in bar['gw0'])} | {med['gw0']:.1f} | - | - |")
for label, key in [("API, GET, not validated", "getnoval"), ("API, GET, validated", "getval"), ("API, POST, not validated", "postnoval"), ("API, POST, validated", "postval")]:
    print(f"| {label} | {', '.join(f'{x:.1f}' for x in bar[key])} | {med[key]:.1f} | {', '.join(f'{x:.0f}' for x in rps[key])} | {rmed[key]:.0f} |")
print()
print("| ratio | CPU per request | requests/s |")
print("|---|---|---|")
print(f"| GET, validated over not validated | {med['getval'] / med['getnoval']:.2f}x | {rmed['getval'] / rmed['getnoval']:.2f}x |")
print(f"| POST, validated over not validated | {med['postval'] / med['postnoval']:.2f}x | {rmed['postval'] / rmed['postnoval']:.2f}x |")
print(f"| GET not validated (an API's route and its \`openapi-public\` entry) over the empty pipeline | {med['getnoval'] / med['gw0']:.2f}x | - |")
print()
print(f"Validation adds {med['getval'] - med['getnoval']:.1f} us of CPU per GET and {med['postval'] - med['postnoval']:.1f} us per POST. That is one plugin call per")
print("request (the \`openapi-validation\` entry, the built-in \`request-validator\` in the Wasm sandbox; the request's head")
print("crosses into the plugin) plus evaluating the operation's schemas (compiled once per instance): the parameters")
print("read by their style, converted and checked. On the POST the gateway also buffers the body for the plugin")
print("(without validation it streams through), the body crosses into the sandbox and is parsed as JSON and checked")
print("against its schema there. The one-connection latency probe (\`bench/latency.rs\`) sends GETs only: the POST is")
print("measured by CPU and requests/s here, the GET's added latency is in the first table. The document has no")
print("\`security\`, so both gateways run an \`openapi-public\` entry (a \`headers\` plugin removing the consumer headers) on")
print("every operation: the baseline already makes one plugin call per request, which is why it costs more than the")
print("empty pipeline, and validation is a second one.")
PY
}
# The compression rows: the 100 KB JSON document through the gateway without
# and with gzip, and through nginx without and with gzip, every request
# asking for gzip. $1: the compressing gateway's port, $2: its pid.
declare -A CBAR CRPS
compression_round() {
  local ae="accept-encoding: gzip" nginx nginxgz
  nginx=$(pgrep -P "$(cat "$WORK/proxy.pid")" | tr '\n' ' ')
  nginxgz=$(pgrep -P "$(cat "$WORK/proxygz.pid")" | tr '\n' ' ')
  CBAR[plain]+=" $(cpu_per_request "http://127.0.0.1:${PORT[0]}/data.json" "${GWPID[0]}" "$ae")"
  CRPS[plain]+=" $(wrk_rps)"
  CBAR[gz]+=" $(cpu_per_request "http://127.0.0.1:$1/data.json" "$2" "$ae")"
  CRPS[gz]+=" $(wrk_rps)"
  CBAR[nginx]+=" $(cpu_per_request "http://127.0.0.1:$NGINX_PORT/data.json" "$nginx" "$ae")"
  CRPS[nginx]+=" $(wrk_rps)"
  CBAR[nginxgz]+=" $(cpu_per_request "http://127.0.0.1:$NGINXGZ_PORT/data.json" "$nginxgz" "$ae")"
  CRPS[nginxgz]+=" $(wrk_rps)"
}
# Refuse to measure a compressing setup that does not compress, or changes
# the document. $1: url.
check_gzip() {
  local headers
  headers=$(curl -s -o "$WORK/gz.out" -D - -H 'accept-encoding: gzip' "$1" | tr -d '\r' | tr 'A-Z' 'a-z')
  echo "$headers" | grep -q '^content-encoding: gzip' || { echo "bench: $1 did not answer gzip: $headers" >&2; exit 1; }
  gunzip -c "$WORK/gz.out" | cmp -s - "$WORK/www/data.json" || { echo "bench: $1 changed the document" >&2; exit 1; }
  GZ_BYTES=$(stat -c %s "$WORK/gz.out")
}
# Their section of the report, into $WORK/compression.md.
compression_report() {
  python3 - > "$WORK/compression.md" <<PY
import statistics
bar = {k: [float(x) for x in v.split()] for k, v in {"plain": "${CBAR[plain]}", "gz": "${CBAR[gz]}", "nginx": "${CBAR[nginx]}", "nginxgz": "${CBAR[nginxgz]}"}.items()}
rps = {k: [float(x) for x in v.split()] for k, v in {"plain": "${CRPS[plain]}", "gz": "${CRPS[gz]}", "nginx": "${CRPS[nginx]}", "nginxgz": "${CRPS[nginxgz]}"}.items()}
med = {k: statistics.median(v) for k, v in bar.items()}
rmed = {k: statistics.median(v) for k, v in rps.items()}
print("### Response compression")
print()
print("A ${JSON_BYTES}-byte JSON document (records of varied values) from the upstream, every request asking for")
print("\`Accept-Encoding: gzip\`: the gateway's catch-all route without compression, and with \`[routes.compression]")
print("algorithms = [\"gzip\"]\` (level 6, the default), ${GZ_BYTES} bytes on the wire; nginx proxying the same document")
print("without and with \`gzip on; gzip_comp_level 6\`. CPU per request (us) of the proxy's processes, and requests/s of")
print("the same wrk runs (1 thread, 16 connections, 5 s), in alternating rounds:")
print()
print("| setup | CPU rounds (us) | CPU median (us) | requests/s rounds | requests/s median |")
print("|---|---|---|---|---|")
for label, key in [("gateway, uncompressed", "plain"), ("gateway, gzip", "gz"), ("nginx, uncompressed", "nginx"), ("nginx, gzip", "nginxgz")]:
    print(f"| {label} | {', '.join(f'{x:.1f}' for x in bar[key])} | {med[key]:.1f} | {', '.join(f'{x:.0f}' for x in rps[key])} | {rmed[key]:.0f} |")
print()
print("| ratio | CPU per request |")
print("|---|---|")
print(f"| gateway, gzip over uncompressed (the bar: at most 1.5x) | {med['gz'] / med['plain']:.2f}x |")
print(f"| nginx, gzip over uncompressed | {med['nginxgz'] / med['nginx']:.2f}x |")
print(f"| gateway gzip over nginx gzip | {med['gz'] / med['nginxgz']:.2f}x |")
print()
print(f"gzip adds {med['gz'] - med['plain']:.0f} us of CPU per request to the gateway and {med['nginxgz'] - med['nginx']:.0f} us to nginx: deflate")
print("at level 6 over ${JSON_BYTES} bytes (zlib-rs in the gateway, through \`async-compression\` and \`flate2\`; zlib in nginx),")
print("streamed (the body is never held whole).")
PY
}
if [ "${ONLY:-}" = compression ]; then
  check_gzip "http://127.0.0.1:${PORT[gz]}/data.json"
  check_gzip "http://127.0.0.1:$NGINXGZ_PORT/data.json"
  for round in 1 2 3; do
    compression_round "${PORT[gz]}" "${GWPID[gz]}"
  done
  compression_report
  cat "$WORK/compression.md"
  exit 0
fi
if [ "${ONLY:-}" = auth ]; then
  # A cached ext-auth decision against key-auth (1001 consumers), CPU per
  # request in alternating rounds.
  declare -A ABAR
  for round in 1 2 3; do
    for n in 0 key extauth basic; do
      ABAR[$n]+=" $(cpu_per_request "http://127.0.0.1:${PORT[$n]}/" "${GWPID[$n]}" "${HEADER[$n]:-}")"
    done
  done
  python3 - <<PY
import statistics
bar = {k: [float(x) for x in v.split()] for k, v in {"gw0": "${ABAR[0]}", "key": "${ABAR[key]}", "extauth": "${ABAR[extauth]}", "basic": "${ABAR[basic]}"}.items()}
med = {k: statistics.median(v) for k, v in bar.items()}
print("### Authorization")
print()
print("| setup | CPU rounds (us) | CPU median (us) |")
print("|---|---|---|")
for label, key in [("gateway, empty pipeline", "gw0"), ("gateway, key-auth (1001 consumers)", "key"), ("gateway, ext-auth, decision cached", "extauth"), ("gateway, basic-auth (1001 consumers, argon2id, verified before)", "basic")]:
    print(f"| {label} | {', '.join(f'{x:.1f}' for x in bar[key])} | {med[key]:.1f} |")
print()
print("| ratio | CPU per request |")
print("|---|---|")
print(f"| cached ext-auth over key-auth (the bar: at most 1.3x) | {med['extauth'] / med['key']:.2f}x |")
print(f"| basic-auth after the first request over key-auth (the bar: at most 1.3x) | {med['basic'] / med['key']:.2f}x |")
PY
  exit 0
fi
if [ "${ONLY:-}" = validation ]; then
  for round in 1 2 3; do
    BAR[gw0]+=" $(cpu_per_request "http://127.0.0.1:${PORT[0]}/" "${GWPID[0]}")"
    validation_round
  done
  validation_report
  cat "$WORK/validation.md"
  exit 0
fi
if ! curl -s "http://127.0.0.1:${PORT[xml]}/data.xml" | python3 -c 'import json, sys; json.load(sys.stdin)'; then
  echo "bench: the xml-json gateway did not answer JSON" >&2; exit 1
fi
# xml-json reading the response and converting nothing: what the body's trip
# into the plugin costs without the conversion. Only in the XML rounds below.
XMLPASS_PORT=$(free_port)
gateway_conf "$WORK/gwxmlpass.toml" xmlpass "$XMLPASS_PORT"
RUST_LOG=warn "$GATEWAY" run --config "$WORK/gwxmlpass.toml" > /dev/null 2> "$WORK/gwxmlpass.log" &
XMLPASS_PID=$!
wait_port "$XMLPASS_PORT"
if ! curl -s "http://127.0.0.1:$XMLPASS_PORT/data.xml" | cmp -s - "$WORK/www/data.xml"; then
  echo "bench: the pass-through xml-json gateway changed the body" >&2; exit 1
fi

# The gateway's own rate-limit script (read from its source), loaded into
# Redis: the Redis rows time one EVALSHA of it, the round trip a Redis-backed
# check makes, beside the gateways.
GCRA_SHA=$(python3 - "$REDIS_PORT" gateway/src/plugin/capabilities/redis.rs <<'PY'
import hashlib, re, socket, sys
script = re.search(r'const GCRA: &str = r"(.*?)";', open(sys.argv[2]).read(), re.S).group(1)
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(f"*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n${len(script.encode())}\r\n".encode() + script.encode() + b"\r\n")
reply = b""
while reply.count(b"\r\n") < 2:
    reply += s.recv(4096)
sha = reply.split(b"\r\n")[1].decode()
assert sha == hashlib.sha1(script.encode()).hexdigest(), reply
print(sha)
PY
)

# Saturation: one setup at a time (the others sit idle).
sanity "http://127.0.0.1:$NGINX_PORT/" "$WORK/proxy.error.log"
RESULT[nginx]=$(run_wrk "http://127.0.0.1:$NGINX_PORT/")
sanity "http://127.0.0.1:$BARE_PORT/" /dev/null
RESULT[bare]=$(run_wrk "http://127.0.0.1:$BARE_PORT/")
for n in $CONFIGS; do
  RESULT[gw$n]=$(run_wrk "http://127.0.0.1:${PORT[$n]}${URLPATH[$n]:-/}" "${HEADER[$n]:-}")
done
RESULT[gw0xml]=$(run_wrk "http://127.0.0.1:${PORT[0]}/data.xml")

# Unloaded latency: each setup paired with its baseline (the empty pipeline;
# nginx for the empty pipeline; the unconverted XML response for xml-json),
# one keep-alive connection each and one request to each in turn
# (bench/latency.rs), so that drift in the machine's speed hits both alike.
# The difference in medians is what the pipeline adds to a request.
PROBES=${PROBES:-4000}
cargo bench -q -p gateway --bench latency --no-run 2>/dev/null
target() { # $1 name -> name|url[|header]
  case "$1" in
    nginx) echo "nginx|http://127.0.0.1:$NGINX_PORT/" ;;
    bare) echo "bare|http://127.0.0.1:$BARE_PORT/" ;;
    gw0xml) echo "gw0xml|http://127.0.0.1:${PORT[0]}/data.xml" ;;
    gw*) local n=${1#gw}; echo "$1|http://127.0.0.1:${PORT[$n]}${URLPATH[$n]:-/}${HEADER[$n]:+|${HEADER[$n]}}" ;;
  esac
}
declare -A SINGLE   # name -> median (us) in its pair
declare -A ADDED    # name -> median minus its baseline's median in the same pair
pair() { # $1 baseline, $2 setup
  local out base setup
  out=$(cargo bench -q -p gateway --bench latency -- "$PROBES" "$(target "$1")" "$(target "$2")")
  base=$(echo "$out" | awk -v n="$1" '$1 == n {print $2}')
  setup=$(echo "$out" | awk -v n="$2" '$1 == n {print $2}')
  [ -n "$base" ] && [ -n "$setup" ] || { echo "bench: no latency for $1/$2: $out" >&2; exit 1; }
  SINGLE[$2]=$setup
  ADDED[$2]=$(python3 -c "print(f'{$setup - $base:.1f}')")
  [ -n "${SINGLE[$1]:-}" ] || SINGLE[$1]=$base
}
pair nginx gw0
pair nginx bare
for n in $CONFIGS; do
  case "$n" in
    0) ;;
    xml) pair gw0xml gwxml ;;
    val) pair gwnoval gwval ;;
    *) pair gw0 "gw$n" ;;
  esac
done
[ -n "${SINGLE[gw0xml]:-}" ] || pair gw0 gw0xml
# XML to JSON, five rounds of one rotation over four setups: the upstream
# nginx serving the XML itself (the machine's speed at the time), the XML
# proxied as is, read by xml-json and left alone, and converted. The
# machine's speed drifts by up to 3x between runs (other tenants); each round
# is paired within itself, and all five are reported.
XML_ROUNDS=""
for round in 1 2 3 4 5; do
  out=$(cargo bench -q -p gateway --bench latency -- "$PROBES" "upstream|http://127.0.0.1:$UPSTREAM_PORT/data.xml" \
    "$(target gw0xml)" "gwxmlpass|http://127.0.0.1:$XMLPASS_PORT/data.xml" "$(target gwxml)")
  XML_ROUNDS="$XML_ROUNDS $(echo "$out" | awk '$1 == "upstream" {u=$2} $1 == "gw0xml" {a=$2} $1 == "gwxmlpass" {b=$2} $1 == "gwxml" {c=$2} END {print u "," a "," b "," c}')"
done
kill "$XMLPASS_PID"; wait "$XMLPASS_PID" 2>/dev/null || true
# The conversion alone, the same code natively and in Wasm (the gateway's
# engine settings), on the bench's document: what the sandbox costs.
cargo build -q --release --target wasm32-wasip2 -p plugin-xml-json --example convert_bench \
  --target-dir "$TARGET/plugins" 2>/dev/null
cargo build -q --release -p plugin-xml-json --example convert_bench -p gateway --example wasm_run 2>/dev/null
CONVERT_NATIVE=""; CONVERT_WASM=""
for round in 1 2 3; do
  CONVERT_NATIVE="$CONVERT_NATIVE $("$TARGET/release/examples/convert_bench" | sed -n 's/.*median \([0-9]*\) ns.*/\1/p')"
  CONVERT_WASM="$CONVERT_WASM $("$TARGET/release/examples/wasm_run" "$TARGET/plugins/wasm32-wasip2/release/examples/convert_bench.wasm" | sed -n 's/.*median \([0-9]*\) ns.*/\1/p')"
done
# The Redis backend against the local one and against one round trip of the
# script it runs (and a PING), all four in one rotation.
REDIS_OUT=$(cargo bench -q -p gateway --bench latency -- "$PROBES" "$(target gwrl)" "$(target gwrlr)" \
  "evalsha|redis://127.0.0.1:$REDIS_PORT|EVALSHA $GCRA_SHA 1 bench:rtt 1 1000000000" \
  "ping|redis://127.0.0.1:$REDIS_PORT|PING")
redis_median() { echo "$REDIS_OUT" | awk -v n="$1" '$1 == n {print $2}'; }
REDIS_LOCAL=$(redis_median gwrl); REDIS_REMOTE=$(redis_median gwrlr)
REDIS_EVAL=$(redis_median evalsha); REDIS_PING=$(redis_median ping)
[ -n "$REDIS_LOCAL" ] && [ -n "$REDIS_REMOTE" ] && [ -n "$REDIS_EVAL" ] && [ -n "$REDIS_PING" ] \
  || { echo "bench: no Redis latency: $REDIS_OUT" >&2; exit 1; }
# The same three back to back: each alone on its connection for a run, the
# three runs in turn, three times; the median run of each.
EVALSHA_TARGET="evalsha|redis://127.0.0.1:$REDIS_PORT|EVALSHA $GCRA_SHA 1 bench:rtt 1 1000000000"
declare -A ALONE
for round in 1 2 3; do
  for spec in "$(target gwrl)" "$(target gwrlr)" "$EVALSHA_TARGET"; do
    out=$(cargo bench -q -p gateway --bench latency -- 2000 "$spec")
    ALONE[${out%% *}]="${ALONE[${out%% *}]:-} ${out#* }"
  done
done
alone_median() { python3 -c "import statistics, sys; print(statistics.median(map(float, sys.argv[1:])))" ${ALONE[$1]}; }
ALONE_LOCAL=$(alone_median gwrl); ALONE_REMOTE=$(alone_median gwrlr); ALONE_EVAL=$(alone_median evalsha)
declare -A CPU
# nginx's workers are the proxy's cost (its master only supervises).
CPU[nginx]=$(cpu_per_request "http://127.0.0.1:$NGINX_PORT/" "$(pgrep -P "$(cat "$WORK/proxy.pid")" | tr '\n' ' ')")
CPU[bare]=$(cpu_per_request "http://127.0.0.1:$BARE_PORT/" "$(cat "$WORK/bare.pid")")
i=0
for n in $CONFIGS; do
  CPU[gw$n]=$(cpu_per_request "http://127.0.0.1:${PORT[$n]}${URLPATH[$n]:-/}" "${GW_PIDS[$i]}" "${HEADER[$n]:-}")
  i=$((i + 1))
done

# The speed bars: CPU per request of the setups they compare, in three
# alternating rounds (the median of each), so a swing of the machine's speed
# hits every setup alike. key-auth then rate-limit by consumer is a gateway of
# its own, measured only here. The request-validation rows (validation_round)
# are in the same rounds.
KEYRL_PORT=$(free_port)
gateway_conf "$WORK/gwkeyrl.toml" keyrl "$KEYRL_PORT"
RUST_LOG=warn "$GATEWAY" run --config "$WORK/gwkeyrl.toml" > /dev/null 2> "$WORK/gwkeyrl.log" &
KEYRL_PID=$!
wait_port "$KEYRL_PORT"
sanity "http://127.0.0.1:$KEYRL_PORT/" "$WORK/gwkeyrl.log" "x-api-key: $API_KEY"
# The compression rows' gateway, also measured only here.
GZ_PORT=$(free_port)
gateway_conf "$WORK/gwgz.toml" gz "$GZ_PORT"
RUST_LOG=warn "$GATEWAY" run --config "$WORK/gwgz.toml" > /dev/null 2> "$WORK/gwgz.log" &
GZ_PID=$!
wait_port "$GZ_PORT"
check_gzip "http://127.0.0.1:$GZ_PORT/data.json"
check_gzip "http://127.0.0.1:$NGINXGZ_PORT/data.json"
for round in 1 2 3; do
  BAR[nginx]+=" $(cpu_per_request "http://127.0.0.1:$NGINX_PORT/" "$(pgrep -P "$(cat "$WORK/proxy.pid")" | tr '\n' ' ')")"
  BAR[gw0]+=" $(cpu_per_request "http://127.0.0.1:${PORT[0]}/" "${GWPID[0]}")"
  BAR[gw5]+=" $(cpu_per_request "http://127.0.0.1:${PORT[5]}/" "${GWPID[5]}")"
  BAR[keyrl]+=" $(cpu_per_request "http://127.0.0.1:$KEYRL_PORT/" "$KEYRL_PID" "x-api-key: $API_KEY")"
  validation_round
  compression_round "$GZ_PORT" "$GZ_PID"
done
validation_report
compression_report
kill "$KEYRL_PID"; wait "$KEYRL_PID" 2>/dev/null || true
kill "$GZ_PID"; wait "$GZ_PID" 2>/dev/null || true

for pid in "${GW_PIDS[@]}"; do kill "$pid"; wait "$pid" 2>/dev/null || true; done

# Deadline bar: how long a looping plugin takes to be stopped (deadline 50ms).
MISBEHAVE=$(ls -t "$TARGET"/release/build/gateway-*/out/misbehave_plugin.wasm | head -1)
cat > "$WORK/loop.toml" <<CONF
[server]
listen = "127.0.0.1:$GATEWAY_PORT"
[[routes]]
name = "loop"
path = "/loop"
[[routes.plugins]]
plugin = "$MISBEHAVE"
deadline = "50ms"
config = { mode = "loop" }
CONF
RUST_LOG=error "$GATEWAY" run --config "$WORK/loop.toml" > /dev/null 2>&1 &
GW_PID=$!
wait_port "$GATEWAY_PORT"
LOOP_MS=$(python3 - "$GATEWAY_PORT" <<'PY'
import sys, time, urllib.request, urllib.error, statistics
port = sys.argv[1]
samples = []
for _ in range(20):
    t = time.perf_counter()
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/loop")
    except urllib.error.HTTPError as e:
        assert e.code == 500, e.code
    samples.append((time.perf_counter() - t) * 1000)
print(f"{statistics.median(samples):.1f} {max(samples):.1f}")
PY
)
kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true

# Reload bar: time from writing a config (20 routes, 5 plugins each; one
# header value changed, so nothing is recompiled) to the new config serving.
RELOAD_MS=$(python3 - "$GATEWAY" "$WORK" "$UPSTREAM_PORT" <<'PY'
import os, statistics, subprocess, sys, time, urllib.error, urllib.request
gateway, work, upstream = sys.argv[1], sys.argv[2], sys.argv[3]
path = os.path.join(work, "reload.toml")
def config(version):
    out = ['[server]', 'listen = "127.0.0.1:0"', '[upstreams.up]', f'targets = ["127.0.0.1:{upstream}"]']
    for r in range(20):
        out += ['[[routes]]', f'name = "r{r}"', f'path = "/r{r}"', 'upstream = "up"']
        for p in range(5):
            out += ['[[routes.plugins]]', 'plugin = "headers"',
                    f'config = {{ response = {{ set = {{ "x-version-{p}" = "{version}" }} }} }}']
    return "\n".join(out) + "\n"
def write(version):
    with open(path + ".tmp", "w") as f:
        f.write(config(version))
    os.rename(path + ".tmp", path)
write(0)
proc = subprocess.Popen([gateway, "run", "--config", path], stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "error"})
url = proc.stdout.readline().decode().strip().rsplit(" ", 1)[-1] + "/r7"
samples = []
for version in range(1, 31):
    time.sleep(0.3)
    start = time.perf_counter()
    write(version)
    while True:
        try:
            reply = urllib.request.urlopen(url)
        except urllib.error.HTTPError as answered:
            reply = answered
        if reply.headers.get("x-version-4") == str(version):
            break
        time.sleep(0.001)
    samples.append((time.perf_counter() - start) * 1000)
proc.terminate(); proc.wait()
print(f"{statistics.median(samples):.1f} {max(samples):.1f}")
PY
)

python3 - "$WORK" <<PY > bench/REPORT.md
import sys
res = {k: v.split() for k, v in {"nginx": "${RESULT[nginx]}", "bare": "${RESULT[bare]}", "gw0": "${RESULT[gw0]}", "gw1": "${RESULT[gw1]}", "gw5": "${RESULT[gw5]}", "gwkey": "${RESULT[gwkey]}", "gwjwt": "${RESULT[gwjwt]}", "gwrl": "${RESULT[gwrl]}", "gwrlr": "${RESULT[gwrlr]}", "gwhit": "${RESULT[gwhit]}", "gwxml": "${RESULT[gwxml]}", "gw0xml": "${RESULT[gw0xml]}", "gwnoval": "${RESULT[gwnoval]}", "gwval": "${RESULT[gwval]}"}.items()}
cpu = {"nginx": float("${CPU[nginx]}"), "bare": float("${CPU[bare]}"), "gw0": float("${CPU[gw0]}"), "gw1": float("${CPU[gw1]}"), "gw5": float("${CPU[gw5]}"), "gwkey": float("${CPU[gwkey]}"), "gwjwt": float("${CPU[gwjwt]}"), "gwrl": float("${CPU[gwrl]}"), "gwrlr": float("${CPU[gwrlr]}"), "gwhit": float("${CPU[gwhit]}"), "gwxml": float("${CPU[gwxml]}"), "gwnoval": float("${CPU[gwnoval]}"), "gwval": float("${CPU[gwval]}")}
added = {"gw0": float("${ADDED[gw0]}"), "gw1": float("${ADDED[gw1]}"), "gw5": float("${ADDED[gw5]}"), "gwkey": float("${ADDED[gwkey]}"), "gwjwt": float("${ADDED[gwjwt]}"), "gwrl": float("${ADDED[gwrl]}"), "gwrlr": float("${ADDED[gwrlr]}"), "gwhit": float("${ADDED[gwhit]}"), "gwxml": float("${ADDED[gwxml]}"), "gwnoval": float("${ADDED[gwnoval]}"), "gwval": float("${ADDED[gwval]}")}
single = {"nginx": float("${SINGLE[nginx]}"), "bare": float("${SINGLE[bare]}"), "gw0": float("${SINGLE[gw0]}"), "gw1": float("${SINGLE[gw1]}"), "gw5": float("${SINGLE[gw5]}"), "gwkey": float("${SINGLE[gwkey]}"), "gwjwt": float("${SINGLE[gwjwt]}"), "gwrl": float("${SINGLE[gwrl]}"), "gwrlr": float("${SINGLE[gwrlr]}"), "gwhit": float("${SINGLE[gwhit]}"), "gwxml": float("${SINGLE[gwxml]}"), "gw0xml": float("${SINGLE[gw0xml]}"), "gwnoval": float("${SINGLE[gwnoval]}"), "gwval": float("${SINGLE[gwval]}")}
nginx_rps = float(res["nginx"][0])
base_p50 = float(res["gw0"][1])
rows = [("nginx (proxy_pass, keepalive)", "nginx"), ("bare hyper proxy (bench/bare_proxy.rs: hyper-util server and client only)", "bare"), ("gateway, empty pipeline", "gw0"), ("gateway, 1 plugin", "gw1"), ("gateway, 5 plugins", "gw5"), ("gateway, key-auth (1001 consumers)", "gwkey"), ("gateway, jwt (HS256, audience, claim to header)", "gwjwt"), ("gateway, rate-limit (one limit by IP, local)", "gwrl"), ("gateway, rate-limit (one limit by IP, Redis)", "gwrlr"), ("gateway, cache hit (nothing proxied)", "gwhit"), ("gateway, empty pipeline, ${XML_BYTES}-byte XML response", "gw0xml"), ("gateway, xml-json (${XML_BYTES}-byte XML response to JSON)", "gwxml"), ("gateway, API of bench/validation.yaml, GET, validate = false", "gwnoval"), ("gateway, API of bench/validation.yaml, GET, validate = true", "gwval")]
print("# Benchmark report")
print()
print("Generated by \`bench/run.sh\` on $(nproc) cores, $(date -u +%Y-%m-%d). Load: wrk, ${THREADS} threads, ${CONNECTIONS} keep-alive")
print("connections, ${DURATION} per run after a 2 s warm-up. Both proxies forward to the same nginx upstream")
print("answering from memory; nginx runs 2 workers, the gateway 2 worker threads (one per core); access logs off on both.")
print("Load generator, proxies and upstream share the machine, so absolute numbers are low; the ratios are the result.")
print("The bare hyper proxy is the floor of the gateway's stack: hyper-util's server and pooled client on the same")
print("runtime layout, with no router, pipeline, limits or header handling.")
print()
print("| setup | requests/s | ratio to nginx | p50 latency (us) | p99 latency (us) | non-2xx | p50 on 1 connection (us), paired with its baseline |")
print("|---|---|---|---|---|---|---|")
for label, key in rows:
    rps, p50, p99, errs = res[key]
    print(f"| {label} | {rps} | {float(rps)/nginx_rps:.2f}x | {p50} | {p99} | {errs} | {single[key]:.1f} |")
print()
gw1 = added["gw1"]
gw5 = added["gw5"] / 5
print(f"Median latency added per plugin, end to end on one connection (each setup paired with the empty pipeline): {gw1:.1f} us with 1 plugin, {gw5:.1f} us per plugin with 5")
print("(the \`headers\` plugin setting one request header; the micro-benchmark below is the cost of the call alone,")
print("the rest is the request's data crossing into and out of the plugin with cold caches).")
print()
print(f"Built-ins, median added on one connection over the empty pipeline: key-auth {added['gwkey']:.1f} us, jwt {added['gwjwt']:.1f} us, rate-limit {added['gwrl']:.1f} us (local), {added['gwrlr']:.1f} us (Redis).")
print(f"Request validation (\`${VAL_GET}\` on the API of \`bench/validation.yaml\`), median added on one connection over the same API not validated: {added['gwval']:.1f} us")
print(f"({single['gwval'] - added['gwval']:.1f} us not validated, {single['gwval']:.1f} us validated); under load {float(res['gwval'][0]):.0f} against {float(res['gwnoval'][0]):.0f} requests/s ({float(res['gwval'][0]) / float(res['gwnoval'][0]):.2f}x).")
print()
over = float("$REDIS_REMOTE") - float("$REDIS_LOCAL")
print(f"Redis: a Redis-backed check makes one round trip (one EVALSHA of the GCRA script). In one rotation on one connection each,")
print(f"the Redis-backed gateway took $REDIS_REMOTE us, the local one $REDIS_LOCAL us ({over:.1f} us more), and that EVALSHA from a client")
print(f"$REDIS_EVAL us (PING: $REDIS_PING us): the Redis backend costs {over / float('$REDIS_EVAL'):.2f} of its round trips over the local backend.")
alone = float("$ALONE_REMOTE") - float("$ALONE_LOCAL")
print(f"Back to back instead (each alone on its connection, median of three runs): Redis-backed $ALONE_REMOTE us, local $ALONE_LOCAL us")
print(f"({alone:.1f} us more), EVALSHA $ALONE_EVAL us: {alone / float('$ALONE_EVAL'):.2f} round trips. In the rotation the Redis path's code")
print("(the redis client, the suspended plugin call) is cold at every request; back to back it stays warm.")
print()
print(f"Cache: a hit is answered in {single['gwhit']:.1f} us on one connection against {single['gwhit'] - added['gwhit']:.1f} us for the same request proxied with an empty pipeline, in the same paired run ({(single['gwhit'] - added['gwhit']) / single['gwhit']:.2f}x faster), and at {float(res['gwhit'][0]):.0f} against {float(res['gw0'][0]):.0f} requests/s under load ({float(res['gwhit'][0]) / float(res['gw0'][0]):.2f}x); the upstream answers from memory.")
print()
print(f"XML to JSON: converting the ${XML_BYTES}-byte XML response adds {added['gwxml']:.1f} us at the median on one connection (paired with the same response proxied unconverted: {single['gwxml'] - added['gwxml']:.1f} us; converted: {single['gwxml']:.1f} us).")
print()
rounds = [tuple(map(float, r.split(","))) for r in "$XML_ROUNDS".split()]
print("Five more rounds, each one rotation over four setups on one connection: the upstream nginx serving the XML")
print("itself (how fast the machine is running at the time), the gateway proxying it as is, xml-json reading it and")
print("leaving it alone (the body crosses into the plugin), and converting it. Medians in us:")
print()
print("| round | nginx serving it | proxied as is | body read, not converted | converted | reading adds | converting adds |")
print("|---|---|---|---|---|---|---|")
for i, (served, plain, read, converted) in enumerate(rounds, 1):
    print(f"| {i} | {served:.1f} | {plain:.1f} | {read:.1f} | {converted:.1f} | {read - plain:.1f} | {converted - plain:.1f} |")
import statistics
adds = sorted(c - p for _, p, _, c in rounds)
print()
print(f"Converting adds {statistics.median(adds):.1f} us at the median round ({adds[0]:.1f} to {adds[-1]:.1f}); the bar is 100 us.")
native = sorted(int(x) for x in "$CONVERT_NATIVE".split())
wasm = sorted(int(x) for x in "$CONVERT_WASM".split())
print(f"The conversion alone (\`plugins/xml-json/examples/convert_bench.rs\`, 3 runs, median ns per call): natively {native}, in Wasm")
print(f"with the gateway's engine settings (\`bench/wasm_run.rs\`) {wasm}: {statistics.median(wasm) / statistics.median(native):.2f}x.")
print()
print("## Gateway CPU time per request")
print()
print("User + system CPU of the proxy's processes per request (from /proc) under 16 keep-alive connections for 5 s:")
print("the end-to-end cost of each pipeline with scheduling noise taken out.")
print()
print("| setup | CPU per request (us) | added over the empty pipeline (us) |")
print("|---|---|---|")
for label, key in rows:
    if key in cpu:
        over = "-" if key in ("nginx", "bare") else f"{cpu[key] - cpu['gw0']:.1f}"
        print(f"| {label} | {cpu[key]:.1f} | {over} |")
print()
print(f"Per headers plugin: {cpu['gw1'] - cpu['gw0']:.1f} us with 1, {(cpu['gw5'] - cpu['gw0']) / 5:.1f} us each with 5.")
print()
print("## Speed bars")
print()
print("CPU per request as above, in three alternating rounds over the four setups below and the request-validation ones")
print("further down; medians (us) and their ratios.")
print()
import statistics
bar = {k: [float(x) for x in v.split()] for k, v in {"nginx": "${BAR[nginx]}", "gw0": "${BAR[gw0]}", "gw5": "${BAR[gw5]}", "keyrl": "${BAR[keyrl]}"}.items()}
med = {k: statistics.median(v) for k, v in bar.items()}
print("| setup | rounds (us) | median (us) |")
print("|---|---|---|")
for label, key in [("nginx (proxy_pass, keepalive)", "nginx"), ("gateway, empty pipeline", "gw0"), ("gateway, 5 headers plugins", "gw5"), ("gateway, key-auth (1001 consumers) then rate-limit by consumer", "keyrl")]:
    print(f"| {label} | {', '.join(f'{x:.1f}' for x in bar[key])} | {med[key]:.1f} |")
print()
print("| bar | measured | at most |")
print("|---|---|---|")
print(f"| key-auth + rate-limit over the empty pipeline | {med['keyrl'] / med['gw0']:.2f}x | 1.30x |")
print(f"| five headers plugins over the empty pipeline | {med['gw5'] / med['gw0']:.2f}x | 1.35x |")
print(f"| empty pipeline over nginx | {med['gw0'] / med['nginx']:.2f}x | 1.40x |")
print()
print(f"Of the {cpu['gw0'] - cpu['nginx']:.1f} us the empty pipeline costs over nginx per request, {cpu['bare'] - cpu['nginx']:.1f} us is hyper's own")
print(f"(the bare proxy against nginx) and {cpu['gw0'] - cpu['bare']:.1f} us is the gateway's (routing, limits, forwarding headers, request id, metrics).")
print()
print(open(f"{sys.argv[1]}/validation.md").read())
print(open(f"{sys.argv[1]}/compression.md").read())
print("## One plugin call through the host (\`cargo bench -p gateway --bench plugin_call\`)")
print()
print("Each case twice: calls back to back (caches hot), then single calls after 16 MiB of other data was written")
print("(caches cold, as between two requests of a busy gateway; this is what a call costs end to end).")
print()
print("\`\`\`")
print("""$MICRO""")
print("\`\`\`")
print()
loop = "$LOOP_MS".split()
print("## Deadline")
print()
print(f"A plugin in an infinite loop with \`deadline = \"50ms\"\`: the request is answered 500 after a median of {loop[0]} ms")
print(f"(worst of 20: {loop[1]} ms), i.e. {float(loop[1])/50:.2f}x the deadline at worst.")
print()
reload_ms = "$RELOAD_MS".split()
print("## Reload")
print()
print(f"Time from writing a config of 20 routes with 5 plugins each (one header value changed, so no plugin is recompiled)")
print(f"to the new config answering: median {reload_ms[0]} ms, worst {reload_ms[1]} ms over 30 reloads (40 ms of it is the")
print("watcher's debounce).")
PY
cat bench/REPORT.md
