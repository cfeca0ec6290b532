#!/usr/bin/env bash
# Cluster benchmark: three nodes in network namespaces of their own on PostgreSQL and
# Garage (tests/e2e/cluster.py, as the cluster suite runs them), side by side:
#   - warm invoke p50 served on the node that received it vs handed to the node that
#     holds the function's idle environment (the hop's cost as a ratio);
#   - RunTask count 10 to all ten RUNNING, placed over three instances vs one;
#   - an IAM change made through one node: the time until another node enforces it
#     (PostgreSQL's notification wakes the nodes; the change counters are the check);
#   - a node SIGKILLed: the time until its service tasks are recorded stopped and
#     until the service is back at its count on the other two.
#
#   bench/cluster.sh
#   BENCH_ROUNDS=5 bench/cluster.sh
bench=cluster.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rounds=${BENCH_ROUNDS:-3}
((EUID == 0)) || die "needs root: network namespaces, sandboxes and tasks"
apt_need skopeo
apt_need umoci

build
external_backends
echo "measuring three nodes..." >&2
PYTHONPATH=$root/bench/py:$root/tests/e2e "$python" - "$bin/nimbus" "$rounds" "$tmp" <<'PY' || die "the measurements failed"
import configparser
import json
import os
import signal
import sys
import time
from pathlib import Path

import boto3
from botocore.config import Config

from cluster import NODES, Deployment
from images import push_busybox
from lambda_bench import PYTHON_APP, median, zipped

binary, rounds, scratch = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
environment = {k: v for k, v in os.environ.items() if k.startswith("NIMBUS_TEST_")}
deployment = Deployment(scratch / "cluster", environment, binary)
(scratch / "cluster").mkdir()
figures = {}
config = Config(retries={"max_attempts": 1}, read_timeout=300)


def timed(action):
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def wait_until(condition, timeout=180):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            sys.exit("timed out")
        time.sleep(0.05)


try:
    deployment.create()
    for i in range(NODES):
        deployment.start(i)
    profile = configparser.ConfigParser()
    profile.read(deployment.nodes[0].data_dir / "credentials")
    keys = profile["nimbus"]
    session = boto3.Session(aws_access_key_id=keys["aws_access_key_id"],
                            aws_secret_access_key=keys["aws_secret_access_key"], region_name="us-east-1")
    clients = lambda service: [session.client(service, endpoint_url=deployment.endpoint(i), config=config)
                               for i in range(NODES)]
    lams, ecss = clients("lambda"), clients("ecs")

    # Warm invokes through each node.
    session.client("iam", endpoint_url=deployment.endpoint(0), config=config).create_role(
        RoleName="bench", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
    lams[0].create_function(FunctionName="warm", Runtime="python3.12", Handler="app.handler",
                            Role="arn:aws:iam::000000000000:role/bench",
                            Code={"ZipFile": zipped([("app.py", PYTHON_APP, 0o644)])})
    lams[0].get_waiter("function_active_v2").wait(FunctionName="warm", WaiterConfig={"Delay": 0.1})
    # One environment, on node 0: once the nodes have read where it is warm, an invoke
    # through node 1 (which has none) is handed to node 0.
    lams[0].invoke(FunctionName="warm", Payload=b"{}")
    time.sleep(1.5)
    for label, lam in (("served on the receiving node", lams[0]), ("forwarded to the warm node", lams[1])):
        times = [timed(lambda: lam.invoke(FunctionName="warm", Payload=b"{}")) * 1000 for _ in range(rounds * 100)]
        figures[f"warm invoke p50, {label} (ms)"] = median(times)
    figures["the hop's cost (forwarded / local)"] = (figures["warm invoke p50, forwarded to the warm node (ms)"]
                                                     / figures["warm invoke p50, served on the receiving node (ms)"])

    # A change made through node 0 in force on node 2: a user's Deny, then its removal.
    iam = session.client("iam", endpoint_url=deployment.endpoint(0), config=config)
    iam.create_user(UserName="bench")
    iam.put_user_policy(UserName="bench", PolicyName="allow", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="bench")["AccessKey"]
    user_s3 = boto3.Session(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                            region_name="us-east-1").client("s3", endpoint_url=deployment.endpoint(2), config=config)

    def allowed():
        try:
            user_s3.list_buckets()
            return True
        except user_s3.exceptions.ClientError:
            return False

    wait_until(allowed)
    spans = []
    for _ in range(rounds * 3):
        started = time.perf_counter()
        iam.put_user_policy(UserName="bench", PolicyName="deny", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "s3:*", "Resource": "*"}]}))
        wait_until(lambda: not allowed())
        spans.append((time.perf_counter() - started) * 1000)
        iam.delete_user_policy(UserName="bench", PolicyName="deny")
        wait_until(allowed)
    figures["an IAM change through node 0 in force on node 2 (ms)"] = median(spans)

    # Placement: ten tasks to RUNNING over three instances, then pinned to one.
    ecr = session.client("ecr", endpoint_url=deployment.endpoint(0), config=config)
    push_busybox(ecr, deployment.endpoint(0), str(scratch / "image"))
    image = "000000000000.dkr.ecr.us-east-1.amazonaws.com/bench:v1"
    ecs = ecss[0]
    ecs.create_cluster(clusterName="bench")
    wait_until(lambda: len(ecs.list_container_instances(cluster="bench")["containerInstanceArns"]) == NODES)
    one = ecs.describe_container_instances(cluster="bench", containerInstances=ecs.list_container_instances(
        cluster="bench")["containerInstanceArns"][:1])["containerInstances"][0]["ec2InstanceId"]
    definition = ecs.register_task_definition(family="sleep", networkMode="none", containerDefinitions=[{
        "name": "app", "image": image, "memory": 16, "command": ["/bin/busybox", "sleep", "600"],
        "stopTimeout": 2}])["taskDefinition"]["taskDefinitionArn"]
    for label, constraints in (("three instances", []),
                               ("one instance", [{"type": "memberOf", "expression": f"ec2InstanceId == {one}"}])):
        spans = []
        for _ in range(rounds):
            started = time.perf_counter()
            tasks = ecs.run_task(cluster="bench", taskDefinition=definition, count=10,
                                 placementConstraints=constraints)["tasks"]
            arns = [t["taskArn"] for t in tasks]
            assert len(arns) == 10
            wait_until(lambda: all(t["lastStatus"] == "RUNNING"
                                   for t in ecs.describe_tasks(cluster="bench", tasks=arns)["tasks"]))
            spans.append(time.perf_counter() - started)
            for arn in arns:
                ecs.stop_task(cluster="bench", task=arn)
            wait_until(lambda: all(t["lastStatus"] == "STOPPED"
                                   for t in ecs.describe_tasks(cluster="bench", tasks=arns)["tasks"]))
        figures[f"RunTask count 10 to RUNNING, {label} (s)"] = median(spans)
        figures[f"tasks started per second, {label}"] = 10 / median(spans)

    # A node lost: its six-task service's share recorded stopped, then replaced.
    ecs.create_service(cluster="bench", serviceName="spread", taskDefinition=definition, desiredCount=6,
                       placementStrategy=[{"type": "spread", "field": "attribute:ecs.availability-zone"}])

    def running():
        arns = ecs.list_tasks(cluster="bench", serviceName="spread")["taskArns"]
        tasks = ecs.describe_tasks(cluster="bench", tasks=arns)["tasks"] if arns else []
        return [t for t in tasks if t["lastStatus"] == "RUNNING"]

    wait_until(lambda: len(running()) == 6)
    on_lost = [t["taskArn"] for t in running() if t.get("availabilityZone") == "us-east-1c"]
    deployment.nodes[2].kill(signal.SIGKILL)
    killed = time.perf_counter()
    wait_until(lambda: all(t["lastStatus"] == "STOPPED"
                           for t in ecs.describe_tasks(cluster="bench", tasks=on_lost)["tasks"]))
    figures["node loss to its tasks recorded STOPPED (s)"] = time.perf_counter() - killed
    wait_until(lambda: len([t for t in running() if t["availabilityZone"] != "us-east-1c"]) == 6)
    figures["node loss to the service back at 6 RUNNING (s)"] = time.perf_counter() - killed
    ecs.update_service(cluster="bench", service="spread", desiredCount=0)
    deployment.start(2)
finally:
    deployment.remove()

width = max(map(len, figures))
for name, value in figures.items():
    print(f"{name:<{width}}  {value:10.2f}")
PY
