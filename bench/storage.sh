#!/usr/bin/env bash
# Storage backends benchmark: the same work on the embedded defaults (SQLite + files)
# and on PostgreSQL + Garage (throwaway servers from tests/e2e/backends.py), side by
# side: warm invoke (and how many backend calls it made: none is the goal), S3 PUT/GET
# of 1 MB and 64 MB objects through boto3 next to the same client talking to Garage
# directly, CreateFunction and RunTask per second, and registry push/pull of the
# bench image (bench/registry.sh, nimbus's line).
#
#   bench/storage.sh
#   BENCH_ROUNDS=5 bench/storage.sh
bench=storage.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rounds=${BENCH_ROUNDS:-3}
((EUID == 0)) || die "needs root: tasks run in sandboxes and skopeo in a mount namespace"
apt_need skopeo
apt_need umoci

build
for mode in embedded external; do
    BENCH_BACKENDS=$mode start_nimbus
    echo "measuring on the $mode backends..." >&2
    PYTHONPATH=$root/bench/py "$python" - "$credentials" "$nimbus_url" "$rounds" "$tmp" "$mode" \
        >"$tmp/$mode.json" <<'PY' || die "$mode: the measurements failed (log: $(tail -n 20 "$tmp/nimbus.log"))"
import configparser
import json
import os
import sys
import time
import urllib.request

import boto3
from botocore.config import Config

from images import push_busybox
from lambda_bench import PYTHON_APP, median, zipped

credentials_file, url, rounds, scratch, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
profile = configparser.ConfigParser()
profile.read(credentials_file)
keys = profile["nimbus"]
config = Config(retries={"max_attempts": 1}, read_timeout=300)
session = boto3.Session(aws_access_key_id=keys["aws_access_key_id"], aws_secret_access_key=keys["aws_secret_access_key"],
                        region_name="us-east-1")
s3, lam = session.client("s3", endpoint_url=url, config=config), session.client("lambda", endpoint_url=url, config=config)
ecs, ecr = session.client("ecs", endpoint_url=url, config=config), session.client("ecr", endpoint_url=url, config=config)
figures = {}


def timed(action):
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def backend_calls():
    metrics = urllib.request.urlopen(url + "_nimbus/metrics").read().decode()
    return sum(float(line.split()[-1]) for line in metrics.splitlines()
               if line.startswith("nimbus_backend_call_seconds_count"))


def s3_rates(client, bucket, prefix, label):
    for size_mb, count in ((1, 20), (64, 2)):
        data = os.urandom(size_mb << 20)
        puts, gets = [], []
        for round_ in range(rounds):
            for n in range(count):
                key = f"{prefix}{size_mb}/{round_}/{n}"
                puts.append(timed(lambda: client.put_object(Bucket=bucket, Key=key, Body=data)))
                gets.append(timed(lambda: client.get_object(Bucket=bucket, Key=key)["Body"].read()))
        figures[f"{label} PUT {size_mb} MB (MB/s)"] = size_mb / median(puts)
        figures[f"{label} GET {size_mb} MB (MB/s)"] = size_mb / median(gets)


s3.create_bucket(Bucket="bench")
s3_rates(s3, "bench", "", "nimbus S3")
if mode == "external":
    garage = boto3.client("s3", endpoint_url=os.environ["NIMBUS_TEST_S3"].split("endpoint=")[1].split("&")[0],
                          region_name="garage", config=config,
                          aws_access_key_id=os.environ["NIMBUS_TEST_S3_ACCESS_KEY_ID"],
                          aws_secret_access_key=os.environ["NIMBUS_TEST_S3_SECRET_ACCESS_KEY"])
    s3_rates(garage, "nimbus", f"bench-direct-{time.time_ns()}/", "Garage direct")

# Warm invoke: after one cold start, every invoke reuses the environment.
lam.create_function(FunctionName="warm", Runtime="python3.12", Handler="app.handler", Role="arn:aws:iam::000000000000:role/bench",
                    Code={"ZipFile": zipped([("app.py", PYTHON_APP, 0o644)])})
lam.get_waiter("function_active_v2").wait(FunctionName="warm", WaiterConfig={"Delay": 0.1})
lam.invoke(FunctionName="warm", Payload=b"{}")
before = backend_calls()
times = sorted(timed(lambda: lam.invoke(FunctionName="warm", Payload=b"{}")) * 1000 for _ in range(rounds * 100))
figures["warm invoke p50 (ms)"] = median(times)
figures["warm invoke p99 (ms)"] = times[round(0.99 * (len(times) - 1))]
figures["backend calls per warm invoke"] = (backend_calls() - before) / len(times)

# CreateFunction: each stores its zip as a blob and its record.
code = zipped([("app.py", PYTHON_APP, 0o644)])
count = rounds * 10
started = time.perf_counter()
for n in range(count):
    lam.create_function(FunctionName=f"f{n}", Runtime="python3.12", Handler="app.handler", Role="arn:aws:iam::000000000000:role/bench",
                        Code={"ZipFile": code})
figures["CreateFunction per second"] = count / (time.perf_counter() - started)


# RunTask: the calls themselves (each task is accepted and placed), a static busybox
# image from the registry, no network.
image = push_busybox(ecr, url, f"{scratch}/{mode}")
ecs.create_cluster()
definition = ecs.register_task_definition(family="bench", networkMode="none", containerDefinitions=[{
    "name": "sleeper", "image": image, "memory": 32, "command": ["/bin/busybox", "sleep", "600"],
    "stopTimeout": 2}])["taskDefinition"]["taskDefinitionArn"]
[first] = ecs.run_task(taskDefinition=definition)["tasks"]
arns = [first["taskArn"]]
count = rounds * 5
started = time.perf_counter()
for _ in range(count):
    arns += [t["taskArn"] for t in ecs.run_task(taskDefinition=definition)["tasks"]]
figures["RunTask per second"] = count / (time.perf_counter() - started)
for arn in arns:
    ecs.stop_task(task=arn)
while not all(t["lastStatus"] == "STOPPED" for t in ecs.describe_tasks(tasks=arns)["tasks"]):
    time.sleep(0.1)
json.dump(figures, sys.stdout)
PY
    stop_nimbus
done

# Registry push/pull of the bench image: nimbus's line of bench/registry.sh per backend.
for mode in embedded external; do
    echo "registry push/pull on the $mode backends..." >&2
    BENCH_BACKENDS=$mode BENCH_ROUNDS=$rounds "$root/bench/registry.sh" >"$tmp/registry-$mode.txt" ||
        die "bench/registry.sh on the $mode backends failed"
done

"$python" - "$tmp" <<'PY'
import json
import sys

tmp = sys.argv[1]
embedded, external = (json.load(open(f"{tmp}/{mode}.json")) for mode in ("embedded", "external"))
registry = {}
for mode in ("embedded", "external"):
    text = open(f"{tmp}/registry-{mode}.txt").read()
    [line] = [l for l in text.splitlines() if l.startswith("nimbus ") and "/" not in l]
    push, pull = line.split()[1:3]
    registry[mode] = (float(push), float(pull))
    size = [l for l in text.splitlines() if "MB image" in l][0].split(",")[0].strip()
print(f"\n{'figure':<40} {'SQLite + files':>16} {'PostgreSQL + Garage':>20}")
for name, value in embedded.items():
    print(f"{name:<40} {value:>16.1f} {external[name]:>20.1f}")
for name, value in external.items():
    if name not in embedded:
        print(f"{name:<40} {'':>16} {value:>20.1f}")
print(f"{'registry push, ' + size + ' (MB/s)':<40} {registry['embedded'][0]:>16.0f} {registry['external'][0]:>20.0f}")
print(f"{'registry pull, ' + size + ' (MB/s)':<40} {registry['embedded'][1]:>16.0f} {registry['external'][1]:>20.0f}")
PY
