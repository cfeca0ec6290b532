#!/usr/bin/env bash
# Scheduler benchmark: CreateSchedule latency through boto3, and how late a schedule
# fires: one-time `at(...)` schedules, each due at a whole second, whose warm python
# function reports back over HTTP; the delay is from the due second to the function
# running. (AWS documents at-time precision as "within one minute"; a flexible window
# adds its own jitter on purpose and is off here.)
#
#   bench/scheduler.sh
#   BENCH_ROUNDS=10 bench/scheduler.sh
bench=scheduler.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

build
start_nimbus
PYTHONPATH=$root/bench/py "$python" - "$credentials" "$nimbus_url" "$rounds" <<'PY'
import configparser
import json
import sys
import time
from datetime import datetime, timezone

import boto3

from lambda_bench import callback_server, median, zipped

credentials_file, url, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
profile = configparser.ConfigParser()
profile.read(credentials_file)
keys = profile["nimbus"]
session = boto3.Session(aws_access_key_id=keys["aws_access_key_id"], aws_secret_access_key=keys["aws_secret_access_key"],
                        region_name="us-east-1")
lam = session.client("lambda", endpoint_url=url)
scheduler = session.client("scheduler", endpoint_url=url)

arrived = {}
callback = callback_server(lambda body: arrived.__setitem__(body.decode(), time.time()))
app = (b"import os, urllib.request\n"
       b"def handler(event, context):\n"
       b"    urllib.request.urlopen(urllib.request.Request(os.environ['CALLBACK'], data=event['due'].encode(), method='POST'), timeout=10)\n")
lam.create_function(FunctionName="on-time", Runtime="python3.12", Handler="app.handler", Code={"ZipFile": zipped([("app.py", app, 0o644)])},
                    Role="arn:aws:iam::000000000000:role/bench",
                    Environment={"Variables": {"CALLBACK": callback}})
lam.get_waiter("function_active_v2").wait(FunctionName="on-time", WaiterConfig={"Delay": 0.1})
arn = lam.get_function(FunctionName="on-time")["Configuration"]["FunctionArn"]
lam.invoke(FunctionName="on-time", Payload=b'{"due": "warm-up"}')
# Schedules fire as their role, which Scheduler must be trusted to assume and which
# must be allowed to invoke the function.
iam = session.client("iam", endpoint_url=url)
iam.create_role(RoleName="bench-scheduler", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "scheduler.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
iam.put_role_policy(RoleName="bench-scheduler", PolicyName="invoke", PolicyDocument=json.dumps({"Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": arn}]}))


def create(name, expression, due):
    started = time.perf_counter()
    scheduler.create_schedule(Name=name, ScheduleExpression=expression, FlexibleTimeWindow={"Mode": "OFF"},
                              ActionAfterCompletion="DELETE",
                              Target={"Arn": arn, "RoleArn": "arn:aws:iam::000000000000:role/bench-scheduler", "Input": f'{{"due": "{due}"}}'})
    return (time.perf_counter() - started) * 1000


count = rounds * 5
first = int(time.time()) + 3
creates, dues = [], []
for n in range(count):
    due = first + n
    text = datetime.fromtimestamp(due, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    creates.append(create(f"at-{n}", f"at({text})", text))
    dues.append((text, due))
deadline = time.time() + count + 30
while len(arrived) < count + 1 and time.time() < deadline:
    time.sleep(0.01)
if len(arrived) < count + 1:
    sys.exit(f"only {len(arrived) - 1} of {count} schedules fired")
delays = sorted((arrived[text] - due) * 1000 for text, due in dues)
creates.sort()
p99 = lambda values: values[min(len(values) - 1, round(0.99 * (len(values) - 1)))]
print(f"{'measure':<34} {'p50 ms':>8} {'p99 ms':>8}")
print(f"{'CreateSchedule (boto3)':<34} {median(creates):>8.1f} {p99(creates):>8.1f}")
print(f"{'due second -> function running':<34} {median(delays):>8.1f} {p99(delays):>8.1f}")
print(f"{count} one-time schedules, one per second, a warm python function; AWS: within one minute")
PY
