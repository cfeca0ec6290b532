#!/usr/bin/env bash
# Lambda benchmark: warm invoke latency and throughput of a Rust `provided.al2023`
# function (AWS's lambda_runtime crate) and a python function, through the whole
# edge and Invoke path, next to a bare loopback HTTP round trip measured the same way
# (wrk); then cold-start time per runtime next to a bare `python3 -c pass`.
#
#   bench/lambda.sh
#   BENCH_ROUNDS=3 BENCH_SECS=10 BENCH_COLD=20 bench/lambda.sh
bench=lambda.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cold_runs=${BENCH_COLD:-10}
# Many environments at once: one connection each.
many=16

build
build_rust_function

start_bare
start_nimbus --lambda-keep-alive 3600

# Deploys the functions; then, for each runtime, forces cold starts by changing the
# configuration and reports the median Init Duration (from the REPORT line) and the
# median client-side time of the cold invoke.
PYTHONPATH=$root/bench/py "$python" - "$credentials" "$nimbus_url" "$target_dir/e2e-functions/release/rust_hello" \
    "$cold_runs" >"$tmp/cold" <<'PY'
import sys

from lambda_bench import client, cold_invokes, deploy, functions, median, real_python, timed_runs

credentials_file, url, rust_binary, runs = sys.argv[1:]
runs = int(runs)
lambda_client = client(credentials_file, url)
deployed = functions(rust_binary, ["rust", "python", "node"])
deploy(lambda_client, deployed)
for name in deployed:
    init, total = cold_invokes(lambda_client, name, runs)
    print(f"COLD {name} {median(init):.2f} {median(total):.2f}")
starts = timed_runs([real_python(), "-c", "pass"], runs)
print(f"COLD python3-c-pass {median(starts):.2f} {median(starts):.2f}")
PY

for round in $(seq "$rounds"); do
    for name in rust python; do
        sign "$name" lambda "/2015-03-31/functions/$name/invocations" "{}" "application/json"
    done
    check_signed rust '"function":"rust"'
    check_signed python '"ok": true' 
    bare=$(measure bare "$bare_url" "$tmp/report.lua" "$bare_pid" "$many")
    rust=$(measure rust "$nimbus_url" "$tmp/rust.lua" "$nimbus_pid" "$many")
    py=$(measure python "$nimbus_url" "$tmp/python.lua" "$nimbus_pid" "$many")
    echo "$bare" >>"$tmp/bare"
    echo "$rust" >>"$tmp/rust-warm"
    echo "$py" >>"$tmp/python-warm"
    echo "round $round/$rounds: bare $bare, rust $rust, python $py (p50 µs, p99 µs, req/s, server CPU µs/req)" >&2
done

# Single-environment throughput is the one-connection run's req/s: one invocation at
# a time through one warm environment.
awk -v b="$(medians "$tmp/bare")" -v r="$(medians "$tmp/rust-warm")" -v p="$(medians "$tmp/python-warm")" \
    -v rounds="$rounds" -v secs="$secs" -v many="$many" -v threads="$threads" -v idle="$idle" 'BEGIN {
    split(b, bare, " "); split(r, rust, " "); split(p, py, " ")
    printf "\nwarm invoke            p50 µs   p99 µs   req/s (%d conns)   p50 / bare\n", many
    printf "%-20s %8d %8d %18d %12s\n", "bare loopback HTTP", bare[1], bare[2], bare[3], "1.00x"
    printf "%-20s %8d %8d %18d %11.2fx\n", "rust provided.al2023", rust[1], rust[2], rust[3], rust[1] / bare[1]
    printf "%-20s %8d %8d %18d %11.2fx\n", "python3.12", py[1], py[2], py[3], py[1] / bare[1]
    printf "\nmedians of %d rounds, %d s per run after a warm-up run; latency over 1 connection", rounds, secs
    printf " (one environment), %s; req/s over %d connections (%d environments), %d wrk threads\n", idle, many, many, threads
    printf "goals: warm p50 within 3x the bare round trip and p99 under 1 ms; >= 10000 invocations/s (rust)\n"
}'
echo
printf "%-20s %16s %18s\n" "cold start" "init ms (median)" "cold invoke ms"
while read -r _ name init total; do
    printf "%-20s %16s %18s\n" "$name" "$init" "$total"
done <"$tmp/cold"
echo "goals: provided under 5 ms; python no slower than a bare python3 start"
