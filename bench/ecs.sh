#!/usr/bin/env bash
# ECS benchmark: RunTask to RUNNING with a cached image (a static busybox built with
# umoci, pushed with skopeo), next to `podman run -d` of the same image, without a
# network and in bridge mode with an ephemeral host port; tasks started per second
# (RunTask with count 10); memory per running task (nimbus's growth plus the monitor
# and runtime processes that stay with each container).
#
#   bench/ecs.sh
#   BENCH_ROUNDS=10 bench/ecs.sh
bench=ecs.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

build
start_nimbus
PYTHONPATH=$root/bench/py "$python" - "$credentials" "$nimbus_url" "$rounds" "$tmp" "$nimbus_pid" <<'PY'
import configparser
import os
import shutil
import subprocess
import sys
import time

import boto3

from images import push_busybox
from lambda_bench import median

credentials_file, url, rounds, scratch, nimbus_pid = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
profile = configparser.ConfigParser()
profile.read(credentials_file)
keys = profile["nimbus"]
session = boto3.Session(aws_access_key_id=keys["aws_access_key_id"], aws_secret_access_key=keys["aws_secret_access_key"],
                        region_name="us-east-1")
ecs, ecr = session.client("ecs", endpoint_url=url), session.client("ecr", endpoint_url=url)

image = push_busybox(ecr, url, scratch)
layout = f"{scratch}/layout"
ecs.create_cluster()
definition = ecs.register_task_definition(family="bench", networkMode="none", containerDefinitions=[{
    "name": "sleeper", "image": image, "memory": 32, "command": ["/bin/busybox", "sleep", "600"],
    "stopTimeout": 2}])["taskDefinition"]["taskDefinitionArn"]
bridged = ecs.register_task_definition(family="bench-bridge", networkMode="bridge", containerDefinitions=[{
    "name": "sleeper", "image": image, "memory": 32, "command": ["/bin/busybox", "sleep", "600"],
    "stopTimeout": 2, "portMappings": [{"containerPort": 8080, "hostPort": 0}]}])["taskDefinition"]["taskDefinitionArn"]


def running(arns):
    while True:
        tasks = ecs.describe_tasks(tasks=arns)["tasks"]
        if all(t["lastStatus"] == "RUNNING" for t in tasks):
            return
        if any(t["lastStatus"] == "STOPPED" for t in tasks):
            sys.exit(f"a task stopped: {tasks[0].get('stoppedReason')}")
        time.sleep(0.002)


def stop(arns):
    for arn in arns:
        ecs.stop_task(task=arn)
    while not all(t["lastStatus"] == "STOPPED" for t in ecs.describe_tasks(tasks=arns)["tasks"]):
        time.sleep(0.05)


# The first task unpacks the image; it is not counted.
[first] = ecs.run_task(taskDefinition=definition)["tasks"]
running([first["taskArn"]])
stop([first["taskArn"]])
def starts(arn):
    times = []
    for _ in range(rounds * 2):
        started = time.perf_counter()
        [task] = ecs.run_task(taskDefinition=arn)["tasks"]
        running([task["taskArn"]])
        times.append((time.perf_counter() - started) * 1000)
        stop([task["taskArn"]])
    return times


nimbus_times, nimbus_bridge_times = starts(definition), starts(bridged)

podman_times, podman_bridge_times = [], []
if shutil.which("podman"):
    base = ["podman"]
    # podman names the image after the layout's path, which must be lowercase.
    lower = f"/tmp/nimbus-bench-ecs-{os.getpid()}"
    shutil.copytree(layout, lower)
    pulled = subprocess.run(base + ["pull", "-q", f"oci:{lower}:v1"], capture_output=True, text=True, timeout=300)
    shutil.rmtree(lower)
    if pulled.returncode:
        sys.exit(f"podman pull: {pulled.stderr}")
    image = pulled.stdout.split()[-1]
    for network, times in [(["--network", "none"], podman_times), (["-p", "8080"], podman_bridge_times)]:
        for _ in range(rounds * 2):
            started = time.perf_counter()
            out = subprocess.run(base + ["run", "-d", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768",
                                         *network, image, "/bin/busybox", "sleep", "600"],
                                 capture_output=True, text=True, timeout=120)
            if out.returncode:
                sys.exit(out.stderr)
            times.append((time.perf_counter() - started) * 1000)
            subprocess.run(base + ["rm", "-f", "-t", "0", out.stdout.strip()], capture_output=True, timeout=120)


def rss_kb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def runtime_rss():
    total = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if cmd and (cmd[0].endswith(b"runc") and b"run" in cmd or b"container-monitor" in cmd):
                total += rss_kb(pid)
    return total


before = rss_kb(nimbus_pid) + runtime_rss()
started = time.perf_counter()
tasks = [t["taskArn"] for t in ecs.run_task(taskDefinition=definition, count=10)["tasks"]]
running(tasks)
batch = time.perf_counter() - started
after = rss_kb(nimbus_pid) + runtime_rss()
stop(tasks)

print(f"{'measure':<40} {'nimbus':>10} {'podman run -d':>14} {'ratio':>7}")
for label, ours, theirs in [("start to running, no network, p50 ms", nimbus_times, podman_times),
                            ("start to running, bridge + port, p50 ms", nimbus_bridge_times, podman_bridge_times)]:
    nimbus_p50 = median(ours)
    if theirs:
        podman_p50 = median(theirs)
        print(f"{label:<40} {nimbus_p50:>10.1f} {podman_p50:>14.1f} {nimbus_p50 / podman_p50:>6.2f}x")
    else:
        print(f"{label:<40} {nimbus_p50:>10.1f} {'n/a':>14}")
print(f"{'10 tasks at once: tasks/s':<40} {10 / batch:>10.1f}")
print(f"{'memory per running task (MB)':<40} {(after - before) / 10 / 1024:>10.1f}")
print(f"{len(nimbus_times)} single starts each; the image cached; the batch without a network")
PY
