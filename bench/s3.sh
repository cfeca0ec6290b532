#!/usr/bin/env bash
# S3 benchmark: PUT and GET throughput of 1 MB and 64 MB objects through boto3 (one
# request at a time, the SDK's default payload signing), next to a plain copy of the
# same bytes on the same disk (write + fsync, then read back); then the latency from
# an object landing to its function running (a bucket notification to a warm python
# function that reports back over HTTP).
#
#   bench/s3.sh
#   BENCH_ROUNDS=10 bench/s3.sh
bench=s3.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

build
start_nimbus
PYTHONPATH=$root/bench/py "$python" - "$credentials" "$nimbus_url" "$rounds" "$tmp" <<'PY'
import configparser
import os
import sys
import time

import boto3
from botocore.config import Config

from lambda_bench import callback_server, median, zipped

credentials_file, url, rounds, scratch = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
profile = configparser.ConfigParser()
profile.read(credentials_file)
keys = profile["nimbus"]
s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                  aws_access_key_id=keys["aws_access_key_id"], aws_secret_access_key=keys["aws_secret_access_key"],
                  config=Config(retries={"max_attempts": 1}))
s3.create_bucket(Bucket="bench")


def timed(action):
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def plain_copy(data, path):
    with open(path, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def plain_read(path):
    with open(path, "rb") as source:
        source.read()


print(f"{'object':>8} {'PUT MB/s':>10} {'GET MB/s':>10} {'copy MB/s':>10} {'read MB/s':>10} {'PUT/copy':>9} {'GET/read':>9}")
for size_mb, count in ((1, 20), (64, 2)):
    data = os.urandom(size_mb << 20)
    puts, gets, copies, reads = [], [], [], []
    for round_ in range(rounds):
        for n in range(count):
            key = f"{size_mb}/{round_}/{n}"
            puts.append(timed(lambda: s3.put_object(Bucket="bench", Key=key, Body=data)))
            gets.append(timed(lambda: s3.get_object(Bucket="bench", Key=key)["Body"].read()))
            path = os.path.join(scratch, f"copy-{size_mb}-{n}")
            copies.append(timed(lambda: plain_copy(data, path)))
            reads.append(timed(lambda: plain_read(path)))
    rate = lambda times: size_mb / median(times)
    print(f"{size_mb:>6}MB {rate(puts):>10.0f} {rate(gets):>10.0f} {rate(copies):>10.0f} {rate(reads):>10.0f}"
          f" {rate(puts) / rate(copies):>8.2f}x {rate(gets) / rate(reads):>8.2f}x")
print(f"medians over {rounds} rounds; one request at a time; copy = write + fsync of the same bytes, read = read back")

# From an object landing to its function running: the function posts to this
# script's own HTTP server, on the host's address (sandboxes cannot reach the host's
# loopback). The first upload warms the environment and is not counted.
arrived = []
callback = callback_server(lambda body: arrived.append(time.perf_counter()))
app = (b"import os, urllib.request\n"
       b"def handler(event, context):\n"
       b"    urllib.request.urlopen(urllib.request.Request(os.environ['CALLBACK'], data=b'{}', method='POST'), timeout=10)\n")
lam = boto3.client("lambda", endpoint_url=url, region_name="us-east-1",
                   aws_access_key_id=keys["aws_access_key_id"], aws_secret_access_key=keys["aws_secret_access_key"])
lam.create_function(FunctionName="on-upload", Runtime="python3.12", Handler="app.handler", Code={"ZipFile": zipped([("app.py", app, 0o644)])},
                    Role="arn:aws:iam::000000000000:role/bench",
                    Environment={"Variables": {"CALLBACK": callback}})
lam.get_waiter("function_active_v2").wait(FunctionName="on-upload", WaiterConfig={"Delay": 0.1})
arn = lam.get_function(FunctionName="on-upload")["Configuration"]["FunctionArn"]
lam.add_permission(FunctionName="on-upload", StatementId="s3", Action="lambda:InvokeFunction",
                   Principal="s3.amazonaws.com", SourceArn="arn:aws:s3:::bench")
s3.put_bucket_notification_configuration(Bucket="bench", NotificationConfiguration={"LambdaFunctionConfigurations": [
    {"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"], "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "events/"}]}}}]})
# Timed from the PUT being sent: the event is committed with the object, so the
# function may start before the PUT's response is back at the client.
latencies, puts = [], []
for n in range(1 + rounds * 10):
    before = len(arrived)
    sent = time.perf_counter()
    s3.put_object(Bucket="bench", Key=f"events/{n}", Body=b"x")
    landed = time.perf_counter()
    deadline = landed + 30
    while len(arrived) == before and time.perf_counter() < deadline:
        time.sleep(0.0005)
    if len(arrived) == before:
        sys.exit("a bucket event never reached its function")
    if n:
        latencies.append((arrived[-1] - sent) * 1000)
        puts.append((landed - sent) * 1000)
latencies.sort()
print(f"\nPUT sent -> function running (warm python, {len(latencies)} uploads): "
      f"p50 {median(latencies):.1f} ms, p99 {latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]:.1f} ms"
      f" (the PUT alone: p50 {median(puts):.1f} ms)")
PY
