#!/usr/bin/env bash
# SQS benchmark, nimbus next to moto's SQS server (PyPI; ElasticMQ does not install
# here) run the same way on this machine, with bare hyper's loopback round trip as
# the floor:
#   - SendMessage: one signed request replayed by wrk over 1 and 16 connections
#     (latency p50 over one, messages/s over sixteen);
#   - Receive + Delete: messages/s draining 500 preloaded messages, batches of 10, by 1 and
#     by 16 boto3 consumers (client-bound: the same client against both servers);
#   - long-poll wake-up: a receive waiting with WaitTimeSeconds=10, the time from a
#     send leaving to that receive returning;
#   - SQS -> Lambda (nimbus only: moto's event source mappings need Docker): a warm
#     python function fed by an event source mapping, from a send to the function
#     reporting back over HTTP, and the messages/s it drains from a backlog of 2000.
#
#   bench/sqs.sh
#   BENCH_ROUNDS=5 bench/sqs.sh
bench=sqs.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rounds=${BENCH_ROUNDS:-3}

build
start_bare
start_nimbus
start_moto

# The queue each server's SendMessage replays go to.
"$python" - "$credentials" "$nimbus_url" "$moto_url" <<'PY'
import configparser
import sys

import boto3

profile = configparser.ConfigParser()
profile.read(sys.argv[1])
keys = profile["nimbus"]
for url in sys.argv[2:]:
    boto3.client("sqs", endpoint_url=url, region_name="us-east-1", aws_access_key_id=keys["aws_access_key_id"],
                 aws_secret_access_key=keys["aws_secret_access_key"]).create_queue(QueueName="wrk")
PY
body='{"QueueUrl":"http://127.0.0.1/000000000000/wrk","MessageBody":"hello from wrk"}'
sign send sqs / "$body" application/x-amz-json-1.0
# The target header is not signed by botocore's SigV4 here; add it to the replays.
sed -i "1a wrk.headers[\"X-Amz-Target\"] = \"AmazonSQS.SendMessage\"" "$tmp/send.lua"
echo "header = \"X-Amz-Target: AmazonSQS.SendMessage\"" >>"$tmp/send.curl"
check_signed send MessageId
# moto checks no signatures, and counts the account from the key: the same replay.
cp "$tmp/send.lua" "$tmp/moto-send.lua"

: >"$tmp/bare.txt" >"$tmp/nimbus.txt" >"$tmp/moto.txt"
cat >"$tmp/bare.lua" <<'LUA'
LUA
cat "$tmp/report.lua" >>"$tmp/bare.lua"
for _ in $(seq "$rounds"); do
    measure bare "$bare_url" "$tmp/bare.lua" "$bare_pid" 16 >>"$tmp/bare.txt"
    measure nimbus "$nimbus_url" "$tmp/send.lua" "$nimbus_pid" 16 >>"$tmp/nimbus.txt"
    measure moto "$moto_url" "$tmp/moto-send.lua" "$moto_pid" 16 >>"$tmp/moto.txt"
done
read -r bare_p50 _ bare_rps _ < <(medians "$tmp/bare.txt")
read -r nimbus_p50 _ nimbus_rps _ < <(medians "$tmp/nimbus.txt")
read -r moto_p50 _ moto_rps _ < <(medians "$tmp/moto.txt")

echo "measuring receives, long polls and SQS -> Lambda..." >&2
PYTHONPATH=$root/bench/py "$python" - "$credentials" "$nimbus_url" "$moto_url" "$rounds" \
    "$bare_p50" "$bare_rps" "$nimbus_p50" "$nimbus_rps" "$moto_p50" "$moto_rps" <<'PY'
import concurrent.futures
import configparser
import sys
import threading
import time

import boto3
from botocore.config import Config

from lambda_bench import callback_server, median, zipped

credentials_file, nimbus_url, moto_url, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
bare_p50, bare_rps, nimbus_p50, nimbus_rps, moto_p50, moto_rps = map(float, sys.argv[5:11])
profile = configparser.ConfigParser()
profile.read(credentials_file)
keys = profile["nimbus"]
config = Config(retries={"max_attempts": 1}, max_pool_connections=32)


def client(service, url):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", config=config,
                        aws_access_key_id=keys["aws_access_key_id"], aws_secret_access_key=keys["aws_secret_access_key"])


def drain_rate(name, sqs, consumers, messages=500):
    url = sqs.create_queue(QueueName=f"drain-{consumers}-{time.monotonic_ns()}")["QueueUrl"]
    for start in range(0, messages, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{start + i}"} for i in range(10)])
    taken = [0]
    lock = threading.Lock()

    def consume():
        while True:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return
            sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
            with lock:
                taken[0] += len(got)

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(consumers) as pool:
        for future in [pool.submit(consume) for _ in range(consumers)]:
            future.result()
    elapsed = time.perf_counter() - started
    # Standard queues deliver at least once: a peer may hand a message out twice.
    duplicates[name] = duplicates.get(name, 0) + taken[0] - messages
    return messages / elapsed


def wake_up(sqs, samples=10):
    url = sqs.create_queue(QueueName=f"wake-{time.monotonic_ns()}")["QueueUrl"]
    times = []
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        for _ in range(samples):
            polled = pool.submit(lambda: sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10))
            time.sleep(0.3)
            sent = time.perf_counter()
            sqs.send_message(QueueUrl=url, MessageBody="wake")
            [message] = polled.result()["Messages"]
            times.append((time.perf_counter() - sent) * 1000)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return median(times)


figures = {}
duplicates = {}
for name, url in (("nimbus", nimbus_url), ("moto", moto_url)):
    sqs = client("sqs", url)
    for consumers in (1, 16):
        figures[(name, consumers)] = median([drain_rate(name, sqs, consumers) for _ in range(rounds)])
    figures[(name, "wake")] = median([wake_up(sqs) for _ in range(rounds)])

print(f"{'':34} {'bare':>10} {'nimbus':>10} {'moto':>10} {'nimbus/moto':>12}")
print(f"{'SendMessage p50, 1 conn (us)':34} {bare_p50:>10.0f} {nimbus_p50:>10.0f} {moto_p50:>10.0f} {moto_p50 / nimbus_p50:>11.1f}x")
print(f"{'SendMessage msgs/s, 16 conns':34} {bare_rps:>10.0f} {nimbus_rps:>10.0f} {moto_rps:>10.0f} {nimbus_rps / moto_rps:>11.1f}x")
for consumers in (1, 16):
    n, m = figures[("nimbus", consumers)], figures[("moto", consumers)]
    print(f"{f'Receive+Delete msgs/s, {consumers} consumers':34} {'':>10} {n:>10.0f} {m:>10.0f} {n / m:>11.1f}x")
n, m = figures[("nimbus", "wake")], figures[("moto", "wake")]
print(f"{'long-poll wake-up (ms)':34} {'':>10} {n:>10.1f} {m:>10.1f} {m / n:>11.1f}x")

# SQS -> Lambda: a warm python function behind an event source mapping reports each
# batch over HTTP (sandboxes reach the host's address, not its loopback).
sqs, lam = client("sqs", nimbus_url), client("lambda", nimbus_url)
iam = client("iam", nimbus_url)
iam.put_role_policy(RoleName="bench", PolicyName="queues", PolicyDocument=
                    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sqs:*","Resource":"*"}]}')
arrived = []
callback = callback_server(lambda body: arrived.append((time.perf_counter(), int(body))))
app = (b"import os, urllib.request\n"
       b"def handler(event, context):\n"
       b"    n = str(len(event['Records'])).encode()\n"
       b"    urllib.request.urlopen(urllib.request.Request(os.environ['CALLBACK'], data=n, method='POST'), timeout=10)\n")
lam.create_function(FunctionName="consumer", Runtime="python3.12", Handler="app.handler",
                    Code={"ZipFile": zipped([("app.py", app, 0o644)])}, Role="arn:aws:iam::000000000000:role/bench",
                    Environment={"Variables": {"CALLBACK": callback}})
lam.get_waiter("function_active_v2").wait(FunctionName="consumer", WaiterConfig={"Delay": 0.1})
url = sqs.create_queue(QueueName="to-lambda")["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
uuid_ = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="consumer", BatchSize=10)["UUID"]
while lam.get_event_source_mapping(UUID=uuid_)["State"] != "Enabled":
    time.sleep(0.05)
time.sleep(1.5)


def delivered(count, timeout=60):
    deadline = time.perf_counter() + timeout
    while sum(n for _, n in arrived) < count:
        if time.perf_counter() > deadline:
            sys.exit("messages never reached the function")
        time.sleep(0.0005)


latencies = []
for n in range(1 + rounds * 10):
    before = sum(c for _, c in arrived)
    sent = time.perf_counter()
    sqs.send_message(QueueUrl=url, MessageBody=str(n))
    delivered(before + 1)
    if n:  # the first warms the environment
        latencies.append((arrived[-1][0] - sent) * 1000)
# A backlog: 2000 messages queued while the mapping is disabled, drained once it is
# enabled again (the pollers grow with the backlog).
lam.update_event_source_mapping(UUID=uuid_, Enabled=False)
while lam.get_event_source_mapping(UUID=uuid_)["State"] != "Disabled":
    time.sleep(0.05)
time.sleep(1.5)
before = sum(c for _, c in arrived)
for start in range(0, 2000, 10):
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(10)])
lam.update_event_source_mapping(UUID=uuid_, Enabled=True)
started = time.perf_counter()
delivered(before + 2000)
rate = 2000 / (time.perf_counter() - started)
print(f"\nSQS -> Lambda (nimbus, warm python, event source mapping, batches of up to 10):")
print(f"  send -> function running: p50 {median(latencies):.1f} ms over {len(latencies)} messages")
print(f"  a backlog of 2000 messages drained once the mapping is enabled: {rate:.0f} messages/s")
print(f"medians of {rounds} rounds; Receive+Delete and the wake-up are client-bound (boto3, the same for both)")
print(f"messages received more than once while draining: nimbus {duplicates.get('nimbus', 0)}, "
      f"moto {duplicates.get('moto', 0)}")
PY
