#!/usr/bin/env bash
# Edge benchmark: STS GetCallerIdentity through the full nimbus edge (SigV4 verified
# on every request) next to a bare hyper "ok" server, both measured with wrk.
# Measurements alternate between the two servers over several rounds and the table
# shows the medians, so drift in a noisy machine hits both sides alike.
#
#   bench/edge.sh
#   BENCH_ROUNDS=3 BENCH_SECS=10 BENCH_WARMUP_SECS=2 bench/edge.sh
bench=edge.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
conns=64

build
start_bare
start_nimbus

for round in $(seq "$rounds"); do
    # Re-signed each round, so a long run never outlives the 15-minute replay window.
    sign gci sts / "Action=GetCallerIdentity&Version=2011-06-15" "application/x-www-form-urlencoded; charset=utf-8"
    check_signed gci '<Arn>'
    bare=$(measure bare "$bare_url" "$tmp/report.lua" "$bare_pid" "$conns")
    nimbus=$(measure nimbus "$nimbus_url" "$tmp/gci.lua" "$nimbus_pid" "$conns")
    echo "$bare" >>"$tmp/bare"
    echo "$nimbus" >>"$tmp/nimbus"
    echo "round $round/$rounds: bare $bare, nimbus $nimbus (p50 µs, p99 µs, req/s, server CPU µs/req)" >&2
done

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
