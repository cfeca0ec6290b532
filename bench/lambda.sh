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
echo "building the Rust function..." >&2
cargo build --release --quiet --manifest-path "$root/tests/e2e/functions/rust_hello/Cargo.toml" \
    --target-dir "$target_dir/e2e-functions"

start_bare
start_nimbus --lambda-keep-alive 3600

# Deploys the functions; then, for each runtime, forces cold starts by changing the
# configuration and reports the median Init Duration (from the REPORT line) and the
# median client-side time of the cold invoke.
"$python" - "$credentials" "$nimbus_url" "$target_dir/e2e-functions/release/rust_hello" "$cold_runs" >"$tmp/cold" <<'PY'
import base64
import configparser
import io
import json
import re
import statistics
import subprocess
import sys
import time
import zipfile

import boto3
from botocore.config import Config

credentials_file, url, rust_binary, runs = sys.argv[1:]
profile = configparser.ConfigParser()
profile.read(credentials_file)
keys = profile["nimbus"]
client = boto3.client(
    "lambda", endpoint_url=url, region_name="us-east-1",
    aws_access_key_id=keys["aws_access_key_id"], aws_secret_access_key=keys["aws_secret_access_key"],
    config=Config(retries={"max_attempts": 1}),
)


def zipped(files):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data, mode in files:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            archive.writestr(info, data)
    return buffer.getvalue()


with open(rust_binary, "rb") as binary:
    rust = zipped([("bootstrap", binary.read(), 0o755)])
python = zipped([("app.py", b"def handler(event, context):\n    return {'ok': True}\n", 0o644)])
node = zipped([("index.js", b"exports.handler = async () => ({ ok: true });\n", 0o644)])
functions = {
    "rust": ("provided.al2023", "bootstrap", rust),
    "python": ("python3.12", "app.handler", python),
    "node": ("nodejs20.x", "index.handler", node),
}
for name, (runtime, handler, code) in functions.items():
    client.create_function(
        FunctionName=name, Runtime=runtime, Handler=handler, Code={"ZipFile": code},
        Role="arn:aws:iam::000000000000:role/bench",
    )
    client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.1})

for name in functions:
    init, total = [], []
    for run in range(int(runs)):
        client.update_function_configuration(FunctionName=name, Environment={"Variables": {"RUN": str(run)}})
        client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.1})
        started = time.perf_counter()
        response = client.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
        total.append((time.perf_counter() - started) * 1000)
        assert "FunctionError" not in response, response["Payload"].read()
        log = base64.b64decode(response["LogResult"]).decode()
        init.append(float(re.search(r"Init Duration: ([0-9.]+) ms", log).group(1)))
    print(f"COLD {name} {statistics.median(init):.2f} {statistics.median(total):.2f}")

# The reference: a bare start of the interpreter itself (not of a wrapper such as a
# pyenv shim in front of it).
real_python = subprocess.run(
    ["python3", "-c", "import sys; print(sys.executable)"], check=True, capture_output=True, text=True
).stdout.strip()
starts = []
for _ in range(int(runs)):
    started = time.perf_counter()
    subprocess.run([real_python, "-c", "pass"], check=True)
    starts.append((time.perf_counter() - started) * 1000)
print(f"COLD python3-c-pass {statistics.median(starts):.2f} {statistics.median(starts):.2f}")
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
