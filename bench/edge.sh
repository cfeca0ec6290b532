#!/usr/bin/env bash
# Edge benchmark: STS GetCallerIdentity through the full nimbus edge (SigV4 verified
# on every request) next to a bare hyper "ok" server, both measured with wrk.
# Measurements alternate between the two servers over several rounds and the table
# shows the medians, so drift in a noisy machine hits both sides alike.
#
#   bench/edge.sh
#   BENCH_ROUNDS=3 BENCH_SECS=10 BENCH_WARMUP_SECS=2 bench/edge.sh
set -euo pipefail
shopt -s inherit_errexit

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${BENCH_ROUNDS:-5}
secs=${BENCH_SECS:-5}
warmup=${BENCH_WARMUP_SECS:-1}
conns=64
threads=2

die() {
    echo "edge.sh: $*" >&2
    exit 1
}

command -v curl >/dev/null || die "curl is required"
command -v python3 >/dev/null || die "python3 is required"
if ! command -v wrk >/dev/null; then
    echo "installing wrk..." >&2
    apt-get install -y wrk >/dev/null || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
python=python3
if ! python3 -c 'import botocore' 2>/dev/null; then
    venv=$HOME/.cache/nimbus/bench-venv
    [[ -x $venv/bin/python ]] || python3 -m venv "$venv"
    "$venv/bin/python" -c 'import botocore' 2>/dev/null || "$venv/bin/pip" install --quiet boto3
    python=$venv/bin/python
fi

echo "building release binaries..." >&2
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p nimbus -p nimbus-bench
bin=${CARGO_TARGET_DIR:-$root/target}/release

tmp=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_ready() {
    for _ in $(seq 100); do
        curl -fs -o /dev/null "$1" && return
        sleep 0.1
    done
    die "no answer from $1"
}

# wrk calls done() once with the totals of all its threads.
cat >"$tmp/report.lua" <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %.0f %.0f %.0f %d %d %d\n",
    latency:percentile(50), latency:percentile(99),
    summary.requests / summary.duration * 1e6, summary.requests,
    e.status, e.connect + e.read + e.write + e.timeout))
end
LUA

# sign_gci: writes $tmp/gci.lua (wrk) and $tmp/gci.curl (curl config) holding one
# GetCallerIdentity request signed with botocore. nimbus accepts a replay of it for
# 15 minutes and verifies its signature every time.
sign_gci() {
    "$python" - "$tmp/data/credentials" "$nimbus_url" "$tmp/gci" <<'PY'
import configparser
import json
import sys

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

credentials_file, url, out = sys.argv[1:]
profile = configparser.ConfigParser()
profile.read(credentials_file)
keys = profile["nimbus"]
body = "Action=GetCallerIdentity&Version=2011-06-15"
request = AWSRequest(
    method="POST",
    url=url,
    data=body,
    headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
)
credentials = Credentials(keys["aws_access_key_id"], keys["aws_secret_access_key"])
SigV4Auth(credentials, "sts", "us-east-1").add_auth(request)
headers = dict(request.headers.items())
# JSON strings of ASCII text are valid Lua and curl-config strings.
with open(out + ".lua", "w") as lua:
    lua.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n')
    for name, value in headers.items():
        lua.write(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}\n")
with open(out + ".curl", "w") as curl:
    curl.write(f"url = {json.dumps(url)}\ndata-binary = {json.dumps(body)}\n")
    for name, value in headers.items():
        curl.write(f"header = {json.dumps(f'{name}: {value}')}\n")
PY
    cat "$tmp/report.lua" >>"$tmp/gci.lua"
    local code
    code=$(curl -sS -K "$tmp/gci.curl" -o "$tmp/gci.xml" -w '%{http_code}')
    [[ $code == 200 ]] || die "signed GetCallerIdentity returned HTTP $code: $(cat "$tmp/gci.xml")"
    grep -q '<Arn>' "$tmp/gci.xml" || die "no <Arn> in GetCallerIdentity response: $(cat "$tmp/gci.xml")"
}

# CPU time (user + system) of process $1, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
clk_tck=$(getconf CLK_TCK)

# wrk_run NAME URL LUA PID THREADS CONNS: one measured run after a warm-up; prints
# "p50_us p99_us req_per_s server_cpu_us_per_req", failing on any error or
# non-2xx/3xx response.
wrk_run() {
    local name=$1 url=$2 lua=$3 pid=$4 threads=$5 conns=$6 out line before after
    local p50 p99 rps requests status socket
    kill -0 "$pid" 2>/dev/null || die "$name server (pid $pid) is not running"
    wrk -t"$threads" -c"$conns" -d"${warmup}s" -s "$lua" "$url" >/dev/null
    before=$(cpu_ticks "$pid")
    out=$(wrk -t"$threads" -c"$conns" -d"${secs}s" -s "$lua" "$url")
    after=$(cpu_ticks "$pid")
    line=$(grep '^RESULT' <<<"$out") || die "$name: no result from wrk: $out"
    read -r _ p50 p99 rps requests status socket <<<"$line"
    ((status == 0 && socket == 0)) ||
        die "$name: $status non-2xx/3xx responses, $socket socket errors over $conns connection(s)"
    awk -v ticks=$((after - before)) -v hz="$clk_tck" -v n="$requests" -v r="$p50 $p99 $rps" \
        'BEGIN { printf "%s %.1f\n", r, ticks * 1e6 / hz / n }'
}

# An idle vCPU here halts, and waking it takes tens of µs, which would swamp the
# one-connection latency of both servers. with_cpu_poll runs "$@" under a PM QoS
# request of 0 µs, so idle CPUs poll instead; the request lapses when the calling
# subshell exits. BENCH_CPU_POLL=0 turns it off.
if [[ ${BENCH_CPU_POLL:-1} == 1 && -w /dev/cpu_dma_latency ]]; then
    cpu_poll=1
    idle="idle CPUs polling (cpu_dma_latency 0)"
else
    cpu_poll=0
    idle="idle CPUs may halt"
fi
with_cpu_poll() {
    if ((cpu_poll)); then
        exec 3>/dev/cpu_dma_latency
        printf 0 >&3
    fi
    "$@"
}

# measure NAME URL LUA PID: prints "p50_us p99_us req_per_s server_cpu_us_per_req",
# latency over one connection, the rest over $conns.
measure() {
    local latency throughput p50 p99 rps cpu
    latency=$(with_cpu_poll wrk_run "$@" 1 1)
    throughput=$(wrk_run "$@" "$threads" "$conns")
    read -r p50 p99 _ _ <<<"$latency"
    read -r _ _ rps cpu <<<"$throughput"
    echo "$p50 $p99 $rps $cpu"
}

bare_port=$(free_port)
bare_url=http://127.0.0.1:$bare_port/
"$bin/bare-hyper" "$bare_port" &
bare_pid=$!
pids+=("$bare_pid")
wait_ready "$bare_url"
nimbus_port=$(free_port)
nimbus_url=http://127.0.0.1:$nimbus_port/
"$bin/nimbus" server --data-dir "$tmp/data" --listen "127.0.0.1:$nimbus_port" >"$tmp/nimbus.out" 2>"$tmp/nimbus.log" &
nimbus_pid=$!
pids+=("$nimbus_pid")
wait_ready "${nimbus_url}_nimbus/health"

for round in $(seq "$rounds"); do
    sign_gci
    bare=$(measure bare "$bare_url" "$tmp/report.lua" "$bare_pid")
    nimbus=$(measure nimbus "$nimbus_url" "$tmp/gci.lua" "$nimbus_pid")
    echo "$bare" >>"$tmp/bare"
    echo "$nimbus" >>"$tmp/nimbus"
    echo "round $round/$rounds: bare $bare, nimbus $nimbus (p50 µs, p99 µs, req/s, server CPU µs/req)" >&2
done

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
medians() {
    for column in 1 2 3 4; do cut -d' ' -f"$column" "$1" | median; done | paste -sd' '
}

awk -v b="$(medians "$tmp/bare")" -v n="$(medians "$tmp/nimbus")" \
    -v rounds="$rounds" -v secs="$secs" -v conns="$conns" -v threads="$threads" -v idle="$idle" 'BEGIN {
    split(b, bare, " "); split(n, nim, " ")
    # "µs" is two bytes wide to printf.
    printf "\n%-26s %9s %9s %18s %16s\n", "target", "p50 µs", "p99 µs", "req/s (" conns " conns)", "CPU µs/req"
    printf "%-26s %8d %8d %18d %15.1f\n", "bare hyper \"ok\"", bare[1], bare[2], bare[3], bare[4]
    printf "%-26s %8d %8d %18d %15.1f\n", "nimbus GetCallerIdentity", nim[1], nim[2], nim[3], nim[4]
    thr = nim[3] / bare[3]
    printf "%-26s %7.2fx %7.2fx %17.2fx %14.2fx\n", "nimbus / bare", nim[1] / bare[1], nim[2] / bare[2], thr, nim[4] / bare[4]
    printf "\nmedians of %d rounds, %d s per run after a warm-up run\n", rounds, secs
    printf "latency: 1 connection, %s\n", idle
    printf "req/s and server CPU (user + system) per request: %d connections, %d wrk threads\n", conns, threads
    printf "brief reference, bare hyper on this machine class: 28 µs p50, 60 µs p99, 104k req/s\n"
    printf "goal: nimbus keeps >= 0.5x of bare hyper req/s, warm latency within a small factor: %s\n",
        (thr >= 0.5 ? "throughput met" : "throughput NOT met")
}'
