# shellcheck shell=bash
# Shared by the benchmarks (sourced, not run): tools, builds, servers on free ports,
# requests signed once with botocore and replayed by wrk, and medians.
#
# The sourcing script sets `bench` (its name, for messages) before sourcing.

set -euo pipefail
shopt -s inherit_errexit

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${BENCH_ROUNDS:-5}
secs=${BENCH_SECS:-5}
warmup=${BENCH_WARMUP_SECS:-1}
threads=2

die() {
    echo "$bench: $*" >&2
    exit 1
}

# apt_need COMMAND [PACKAGE]: installs PACKAGE (default: COMMAND) with apt when
# COMMAND is missing.
apt_need() {
    command -v "$1" >/dev/null && return
    echo "installing ${2:-$1}..." >&2
    apt-get install -y "${2:-$1}" >/dev/null || { apt-get update >/dev/null && apt-get install -y "${2:-$1}" >/dev/null; }
}

command -v curl >/dev/null || die "curl is required"
command -v python3 >/dev/null || die "python3 is required"
apt_need wrk
python=python3
if ! python3 -c 'import boto3' 2>/dev/null; then
    venv=$HOME/.cache/nimbus/bench-venv
    [[ -x $venv/bin/python ]] || python3 -m venv "$venv"
    "$venv/bin/python" -c 'import boto3' 2>/dev/null || "$venv/bin/pip" install --quiet boto3
    python=$venv/bin/python
fi

target_dir=${CARGO_TARGET_DIR:-$root/target}
bin=$target_dir/release

tmp=$(mktemp -d)
pids=()
backends=$root/tests/e2e/backends.py
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ ! -d $tmp/backends ]] || python3 "$backends" stop "$tmp/backends" || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# With BENCH_BACKENDS=external every server start_nimbus starts keeps its records in
# a PostgreSQL database and its blobs under a Garage prefix of its own (the test
# suite's throwaway servers, started on first use, or those NIMBUS_TEST_* name).
backend_args=()
external_backends() {
    if [[ -z ${NIMBUS_TEST_POSTGRES:-} ]]; then
        echo "starting PostgreSQL and Garage..." >&2
        eval "$(python3 "$backends" start "$tmp/backends")"
    fi
    export NIMBUS_BLOBS_ACCESS_KEY_ID=$NIMBUS_TEST_S3_ACCESS_KEY_ID
    export NIMBUS_BLOBS_SECRET_ACCESS_KEY=$NIMBUS_TEST_S3_SECRET_ACCESS_KEY
    local name database
    name=bench_$(date +%s%N)
    database=$(PYTHONPATH=$root/tests/e2e python3 -c \
        'import sys, backends; print(backends.create_database(sys.argv[1], sys.argv[2]))' \
        "$NIMBUS_TEST_POSTGRES" "$name")
    backend_args=(--metadata "$database" --blobs "${NIMBUS_TEST_S3/\?//$name?}")
}

build() {
    echo "building release binaries..." >&2
    cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p nimbus -p nimbus-bench
}

# start_moto: moto's server (PyPI, installed once) on a free port, the peer of the
# SQS and EventBridge benchmarks; sets moto_url and moto_pid.
start_moto() {
    local venv=$HOME/.cache/nimbus/moto-venv
    if [[ ! -x $venv/bin/moto_server ]]; then
        echo "installing moto's server (once)..." >&2
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet "moto[server]" || die "cannot install moto from PyPI"
    fi
    local port
    port=$(free_port)
    moto_url=http://127.0.0.1:$port/
    "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$tmp/moto.log" 2>&1 &
    moto_pid=$!
    pids+=("$moto_pid")
    wait_ready "${moto_url}moto-api/"
}

# build_rust_function: the e2e suite's `lambda_runtime` function, built to
# $target_dir/e2e-functions/release/rust_hello.
build_rust_function() {
    echo "building the Rust function..." >&2
    cargo build --release --quiet --manifest-path "$root/tests/e2e/functions/rust_hello/Cargo.toml" \
        --target-dir "$target_dir/e2e-functions"
}

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

# start_bare: bare hyper on a free port; sets bare_url and bare_pid.
start_bare() {
    local port
    port=$(free_port)
    bare_url=http://127.0.0.1:$port/
    "$bin/bare-hyper" "$port" &
    bare_pid=$!
    pids+=("$bare_pid")
    wait_ready "$bare_url"
}

# start_nimbus ARGS...: nimbus ($bin_nimbus if set) on a free port with a fresh data dir (and fresh
# external backends, see external_backends); sets nimbus_url, nimbus_pid and
# credentials (the root keys' file). Functions may reach this host's address, where
# the benchmarks' callback servers listen (the egress policy closes it otherwise).
start_nimbus() {
    local port
    local host
    host=$("$python" -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(("192.0.2.1", 9)); print(s.getsockname()[0])')
    export NIMBUS_EGRESS_ALLOW=${NIMBUS_EGRESS_ALLOW:-$host/32}
    port=$(free_port)
    nimbus_url=http://127.0.0.1:$port/
    credentials=$tmp/data/credentials
    [[ ${BENCH_BACKENDS:-embedded} != external ]] || external_backends
    "${bin_nimbus:-$bin/nimbus}" server --data-dir "$tmp/data" --listen "127.0.0.1:$port" "${backend_args[@]}" "$@" \
        >"$tmp/nimbus.out" 2>"$tmp/nimbus.log" &
    nimbus_pid=$!
    pids+=("$nimbus_pid")
    wait_ready "${nimbus_url}_nimbus/health"
    # The execution role the benchmarks' functions name (role/bench), trusting Lambda.
    "$python" - "$credentials" "$nimbus_url" <<'PY'
import configparser
import json
import sys

import boto3

profile = configparser.ConfigParser()
profile.read(sys.argv[1])
keys = profile["nimbus"]
iam = boto3.client("iam", endpoint_url=sys.argv[2], region_name="us-east-1",
                   aws_access_key_id=keys["aws_access_key_id"], aws_secret_access_key=keys["aws_secret_access_key"])
iam.create_role(RoleName="bench", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
PY
}

# stop_nimbus: stops the server start_nimbus started, gracefully, and removes its data.
stop_nimbus() {
    kill -TERM "$nimbus_pid"
    wait "$nimbus_pid" || true
    rm -rf "$tmp/data"
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

# sign NAME SERVICE PATH BODY CONTENT_TYPE: writes $tmp/NAME.lua (wrk) and
# $tmp/NAME.curl (curl config) holding one POST to nimbus signed with botocore and
# the root keys. nimbus accepts a replay of it for 15 minutes and verifies its
# signature every time, so each replay pays the whole SigV4 check.
sign() {
    "$python" - "$credentials" "$nimbus_url" "$tmp/$1" "$2" "$3" "$4" "$5" <<'PY'
import configparser
import json
import sys

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

credentials_file, url, out, service, path, body, content_type = sys.argv[1:]
profile = configparser.ConfigParser()
profile.read(credentials_file)
keys = profile["nimbus"]
url = url.rstrip("/") + path
request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": content_type})
credentials = Credentials(keys["aws_access_key_id"], keys["aws_secret_access_key"])
SigV4Auth(credentials, service, "us-east-1").add_auth(request)
headers = dict(request.headers.items())
# JSON strings of ASCII text are valid Lua and curl-config strings.
with open(out + ".lua", "w") as lua:
    lua.write(f'wrk.method = "POST"\nwrk.path = {json.dumps(path)}\nwrk.body = {json.dumps(body)}\n')
    for name, value in headers.items():
        lua.write(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}\n")
with open(out + ".curl", "w") as curl:
    curl.write(f"url = {json.dumps(url)}\ndata-binary = {json.dumps(body)}\n")
    for name, value in headers.items():
        curl.write(f"header = {json.dumps(f'{name}: {value}')}\n")
PY
    cat "$tmp/report.lua" >>"$tmp/$1.lua"
}

# check_signed NAME PATTERN: sends the signed request once with curl; it must answer
# 200 with PATTERN in the body.
check_signed() {
    local code
    code=$(curl -sS -K "$tmp/$1.curl" -o "$tmp/$1.out" -w '%{http_code}')
    [[ $code == 200 ]] || die "signed $1 request returned HTTP $code: $(cat "$tmp/$1.out")"
    grep -q "$2" "$tmp/$1.out" || die "no $2 in the $1 response: $(cat "$tmp/$1.out")"
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
# one-connection latency of every server. with_cpu_poll runs "$@" under a PM QoS
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

# measure NAME URL LUA PID CONNS: prints "p50_us p99_us req_per_s server_cpu_us_per_req",
# latency over one connection, the rest over CONNS.
measure() {
    local latency throughput p50 p99 rps cpu
    latency=$(with_cpu_poll wrk_run "$1" "$2" "$3" "$4" 1 1)
    throughput=$(wrk_run "$1" "$2" "$3" "$4" "$threads" "$5")
    read -r p50 p99 _ _ <<<"$latency"
    read -r _ _ rps cpu <<<"$throughput"
    echo "$p50 $p99 $rps $cpu"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# medians FILE: the median of each of the four columns `measure` prints.
medians() {
    for column in 1 2 3 4; do cut -d' ' -f"$column" "$1" | median; done | paste -sd' '
}
