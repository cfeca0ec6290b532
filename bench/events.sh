#!/usr/bin/env bash
# EventBridge benchmark, nimbus next to moto's EventBridge (PyPI) run the same way on
# this machine:
#   - PutEvents p50, one entry, boto3 over one connection;
#   - PutEvents entries/s, batches of 10 from 8 boto3 threads;
#   - PutEvents -> SQS target: from a put leaving to a receive waiting on the rule's
#     queue returning (p50);
#   - PutEvents -> Lambda (nimbus only: moto's Lambda targets need Docker): a warm
#     python function reporting back over HTTP, from the put leaving (p50).
#
#   bench/events.sh
#   BENCH_ROUNDS=5 bench/events.sh
bench=events.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rounds=${BENCH_ROUNDS:-3}

build
start_nimbus
start_moto

echo "measuring PutEvents and deliveries..." >&2
PYTHONPATH=$root/bench/py "$python" - "$credentials" "$nimbus_url" "$moto_url" "$rounds" <<'PY'
import concurrent.futures
import configparser
import json
import sys
import time

import boto3
from botocore.config import Config

from lambda_bench import callback_server, median, zipped

credentials_file, nimbus_url, moto_url, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
profile = configparser.ConfigParser()
profile.read(credentials_file)
keys = profile["nimbus"]
config = Config(retries={"max_attempts": 1}, max_pool_connections=32)


def client(service, url):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", config=config,
                        aws_access_key_id=keys["aws_access_key_id"], aws_secret_access_key=keys["aws_secret_access_key"])


def entry(source="bench", n=0):
    return {"Source": source, "DetailType": "Bench", "Detail": json.dumps({"n": n})}


def put_p50(events, samples=200):
    times = []
    for n in range(samples):
        started = time.perf_counter()
        events.put_events(Entries=[entry("nobody", n)])
        times.append((time.perf_counter() - started) * 1e6)
    return median(times)


def put_rate(events, batches=200, threads=8):
    def put(n):
        events.put_events(Entries=[entry("nobody", n * 10 + i) for i in range(10)])
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, range(batches)))
    return batches * 10 / (time.perf_counter() - started)


def to_queue(events, sqs, samples=10):
    name = f"bench-{time.monotonic_ns()}"
    rule_arn = events.put_rule(Name=name, EventPattern=json.dumps({"source": [name]}))["RuleArn"]
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sqs:SendMessage",
            "Resource": arn, "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}}]})})
    events.put_targets(Rule=name, Targets=[{"Id": "q", "Arn": arn}])
    times = []
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        for n in range(samples):
            polled = pool.submit(lambda: sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10))
            time.sleep(0.3)
            sent = time.perf_counter()
            events.put_events(Entries=[entry(name, n)])
            messages = polled.result().get("Messages", [])
            if not messages:
                sys.exit(f"an event never reached {url}")
            times.append((time.perf_counter() - sent) * 1000)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])
    return median(times)


figures = {}
for name, url in (("nimbus", nimbus_url), ("moto", moto_url)):
    events, sqs = client("events", url), client("sqs", url)
    figures[(name, "p50")] = median([put_p50(events) for _ in range(rounds)])
    figures[(name, "rate")] = median([put_rate(events) for _ in range(rounds)])
    figures[(name, "queue")] = median([to_queue(events, sqs) for _ in range(rounds)])

print(f"{'':40} {'nimbus':>10} {'moto':>10} {'nimbus/moto':>12}")
n, m = figures[("nimbus", "p50")], figures[("moto", "p50")]
print(f"{'PutEvents p50, 1 entry (us)':40} {n:>10.0f} {m:>10.0f} {m / n:>11.1f}x")
n, m = figures[("nimbus", "rate")], figures[("moto", "rate")]
print(f"{'PutEvents entries/s, 8 threads x 10':40} {n:>10.0f} {m:>10.0f} {n / m:>11.1f}x")
n, m = figures[("nimbus", "queue")], figures[("moto", "queue")]
print(f"{'PutEvents -> SQS target, p50 (ms)':40} {n:>10.1f} {m:>10.1f} {m / n:>11.1f}x")

# PutEvents -> a warm python function, which posts to a callback on the host.
events, lam = client("events", nimbus_url), client("lambda", nimbus_url)
arrived = []
callback = callback_server(lambda body: arrived.append(time.perf_counter()))
app = (b"import os, urllib.request\n"
       b"def handler(event, context):\n"
       b"    urllib.request.urlopen(urllib.request.Request(os.environ['CALLBACK'], data=b'1', method='POST'), timeout=10)\n")
lam.create_function(FunctionName="on-event", Runtime="python3.12", Handler="app.handler",
                    Code={"ZipFile": zipped([("app.py", app, 0o644)])}, Role="arn:aws:iam::000000000000:role/bench",
                    Environment={"Variables": {"CALLBACK": callback}})
lam.get_waiter("function_active_v2").wait(FunctionName="on-event", WaiterConfig={"Delay": 0.1})
rule_arn = events.put_rule(Name="to-function", EventPattern=json.dumps({"source": ["to-function"]}))["RuleArn"]
function_arn = lam.get_function(FunctionName="on-event")["Configuration"]["FunctionArn"]
lam.add_permission(FunctionName="on-event", StatementId="events", Action="lambda:InvokeFunction",
                   Principal="events.amazonaws.com", SourceArn=rule_arn)
events.put_targets(Rule="to-function", Targets=[{"Id": "fn", "Arn": function_arn}])
latencies = []
for n in range(1 + rounds * 10):
    before = len(arrived)
    sent = time.perf_counter()
    events.put_events(Entries=[entry("to-function", n)])
    deadline = sent + 60
    while len(arrived) == before:
        if time.perf_counter() > deadline:
            sys.exit("an event never reached the function")
        time.sleep(0.0005)
    if n:  # the first starts the environment
        latencies.append((arrived[-1] - sent) * 1000)
print(f"\nPutEvents -> Lambda (nimbus, warm python, asynchronous invoke): p50 {median(latencies):.1f} ms "
      f"over {len(latencies)} events")
print(f"medians of {rounds} rounds; boto3 is the client for both servers")
PY
