#!/usr/bin/env bash
# CloudWatch Logs benchmark: PutLogEvents ingestion through boto3 (full batches of
# 10,000 100-byte events, one stream, one request at a time), then FilterLogEvents
# over the million events stored with a term pattern matching 1% of them, next to
# `grep -c` of the same lines in a plain file on the same disk.
#
#   bench/logs.sh
#   BENCH_EVENTS=200000 bench/logs.sh
bench=logs.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

build
start_nimbus
PYTHONPATH=$root/bench/py "$python" - "$credentials" "$nimbus_url" "${BENCH_EVENTS:-1000000}" "$tmp" <<'PY'
import configparser
import subprocess
import sys
import time

import boto3
from botocore.config import Config

credentials_file, url, total, scratch = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
profile = configparser.ConfigParser()
profile.read(credentials_file)
keys = profile["nimbus"]
logs = boto3.client("logs", endpoint_url=url, region_name="us-east-1", aws_access_key_id=keys["aws_access_key_id"],
                    aws_secret_access_key=keys["aws_secret_access_key"],
                    config=Config(retries={"max_attempts": 1}, read_timeout=300))
logs.create_log_group(logGroupName="/bench")
logs.create_log_stream(logGroupName="/bench", logStreamName="s")

BATCH = 8_000  # 8,000 × (100 + 26 bytes) fits the 1 MiB batch limit


def message(n):
    level = "ERROR" if n % 100 == 0 else "INFO"
    return f"{level} request {n:09d} served in {n % 997:3d} ms by worker-{n % 16:02d} ".ljust(100, ".")


base = int(time.time() * 1000) - 3_600_000
lines = [message(n) for n in range(total)]
started = time.perf_counter()
for start in range(0, total, BATCH):
    logs.put_log_events(logGroupName="/bench", logStreamName="s", logEvents=[
        {"timestamp": base + n // 1000, "message": lines[n]} for n in range(start, min(start + BATCH, total))])
ingest = time.perf_counter() - started
megabytes = total * 100 / 1e6
print(f"PutLogEvents: {total} events in {ingest:.1f} s: {total / ingest:,.0f} events/s, {megabytes / ingest:.1f} MB/s"
      f" (batches of {BATCH}; AWS allows 5 batches/s per stream, ~40,000 such events/s)")

path = f"{scratch}/plain.log"
with open(path, "w") as out:
    out.write("\n".join(lines) + "\n")
started = time.perf_counter()
found, token = 0, None
while True:
    kwargs = {"logGroupName": "/bench", "filterPattern": "ERROR"}
    if token:
        kwargs["nextToken"] = token
    page = logs.filter_log_events(**kwargs)
    found += len(page["events"])
    token = page.get("nextToken")
    if not token:
        break
filtered = time.perf_counter() - started
started = time.perf_counter()
grepped = int(subprocess.run(["grep", "-c", "ERROR", path], capture_output=True, text=True).stdout)
grep_time = time.perf_counter() - started
assert found == grepped == total // 100, (found, grepped)
print(f"FilterLogEvents 'ERROR' over {total} events: {filtered:.2f} s ({total / filtered / 1e6:.2f} M events/s), "
      f"{found} found; grep -c on a plain file: {grep_time:.3f} s")
PY
