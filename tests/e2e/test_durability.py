"""State survives restarts and SIGKILL: nothing acknowledged is lost, nothing
half-written shows."""

import base64
import concurrent.futures
import hashlib
import io
import json
import os
import threading
import time
import zipfile

import requests

from conftest import ROLE, create_function, eventually, zip_function
from images import MANIFEST as OCI_MANIFEST, sha256 as digest
from signing import sign


def test_restart_keeps_root_credentials(fresh_nimbus):
    first = fresh_nimbus()
    keys = first.root_keys()
    first.kill()
    second = fresh_nimbus()
    assert second.root_keys() == keys
    assert second.client("sts").get_caller_identity()["Account"] == "000000000000"


def test_sigkill_during_writes_loses_nothing_acknowledged(fresh_nimbus):
    server = fresh_nimbus()
    clients = [server.client("sts") for _ in range(4)]

    def issue_session(worker, n):
        return clients[worker].get_session_token(DurationSeconds=900)["Credentials"]

    acknowledged, _ = write_until_killed(server, issue_session, at_least=21)
    restarted = fresh_nimbus()
    body = b"Action=GetCallerIdentity&Version=2011-06-15"
    with requests.Session() as http:
        for issued in acknowledged:
            keys = (issued["AccessKeyId"], issued["SecretAccessKey"], issued["SessionToken"])
            response = http.post(restarted.endpoint + "/", data=body, headers=sign(restarted.endpoint + "/", body, keys=keys))
            assert response.status_code == 200, f"{issued['AccessKeyId']} was acknowledged but lost: {response.text}"
    assert requests.get(restarted.endpoint + "/_nimbus/health", timeout=10).status_code == 200


# --- A crash test per write path: SIGKILL under load, restart on the same data dir,
# and every write the server acknowledged is there.


def write_until_killed(server, write, at_least, workers=4, patience=120.0):
    """Runs `write(worker, n)` on `workers` threads until `at_least` writes were
    acknowledged (however slow the machine), then SIGKILLs the server with writes in
    flight. Returns what each acknowledged write returned, and the writes that were
    in flight (sent, never answered), each as (worker, n)."""
    acknowledged, in_flight = [], []
    killing, stop = threading.Event(), threading.Event()

    def loop(worker):
        n = 0
        while not stop.is_set():
            try:
                acknowledged.append(write(worker, n))
            except Exception:
                if not killing.is_set():
                    raise  # a refused write, not the kill: the test says which
                # The server died under us: this write was never acknowledged.
                in_flight.append((worker, n))
                return
            n += 1

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        running = [pool.submit(loop, worker) for worker in range(workers)]
        deadline = time.monotonic() + patience
        while len(acknowledged) < at_least and time.monotonic() < deadline:
            if all(worker.done() for worker in running):
                break
            time.sleep(0.01)
        killing.set()
        server.kill()
        stop.set()
        for worker in running:
            worker.result()
    assert len(acknowledged) >= at_least, f"only {len(acknowledged)} writes were acknowledged"
    return acknowledged, in_flight


def test_sigkill_loses_no_acknowledged_s3_object(fresh_nimbus):
    server = fresh_nimbus()
    server.client("s3").create_bucket(Bucket="crash")
    clients = [server.client("s3") for _ in range(4)]

    def put(worker, n):
        key, body = f"w{worker}/{n}", os.urandom(1000 + n % 7 * 5000)
        clients[worker].put_object(Bucket="crash", Key=key, Body=body)
        return key, body

    acknowledged, _ = write_until_killed(server, put, at_least=21)
    s3 = fresh_nimbus().client("s3")
    for key, body in acknowledged:
        assert s3.get_object(Bucket="crash", Key=key)["Body"].read() == body, f"{key} lost or torn"


def code_zip(marker: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        # A fixed date: the test zips the same code again to recognise it.
        entry = zipfile.ZipInfo("app.py", date_time=(2020, 1, 1, 0, 0, 0))
        archive.writestr(entry, f"def handler(event, context):\n    return {marker!r}\n")
    return buffer.getvalue()


def code_sha256(code: bytes) -> str:
    return base64.b64encode(hashlib.sha256(code).digest()).decode()


def test_sigkill_loses_no_acknowledged_function_create_or_update(fresh_nimbus):
    server = fresh_nimbus()
    clients = [server.client("lambda") for _ in range(4)]

    def create_then_update(worker, n):
        # Even writes create a function, odd ones give it new code.
        name = f"crash-{worker}-{n // 2}"
        code = code_zip(f"{name} {n}")
        if n % 2 == 0:
            clients[worker].create_function(FunctionName=name, Runtime="python3.12", Role=ROLE,
                                            Handler="app.handler", Code={"ZipFile": code})
        else:
            # A function being created takes no new code until it is Active.
            while True:
                try:
                    clients[worker].update_function_code(FunctionName=name, ZipFile=code)
                    break
                except clients[worker].exceptions.ResourceConflictException:
                    time.sleep(0.02)
        return name, n, code

    acknowledged, in_flight = write_until_killed(server, create_then_update, at_least=11)
    latest = {}
    for name, n, code in acknowledged:
        if n >= latest.get(name, (-1,))[0]:
            latest[name] = (n, code)
    # An update in flight at the kill may have landed unacknowledged.
    landed_maybe = {f"crash-{worker}-{n // 2}": code_zip(f"crash-{worker}-{n // 2} {n}") for worker, n in in_flight}
    client = fresh_nimbus().client("lambda")
    for name, (_, code) in latest.items():
        stored = client.get_function(FunctionName=name)["Configuration"]["CodeSha256"]
        allowed = {code_sha256(code)} | ({code_sha256(landed_maybe[name])} if name in landed_maybe else set())
        assert stored in allowed, f"{name} lost its acknowledged code"


def test_sigkill_loses_no_acknowledged_image_push(fresh_nimbus):
    server = fresh_nimbus()
    server.client("ecr").create_repository(repositoryName="crash")
    token = server.client("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, password = base64.b64decode(token).decode().split(":", 1)
    base = f"{server.endpoint}/v2/crash"

    def push(worker, n):
        """A config, a layer and their manifest, as skopeo pushes them."""
        with requests.Session() as http:
            http.auth = (user, password)
            layer = os.urandom(4096)
            config = json.dumps({"architecture": "amd64", "os": "linux",
                                 "rootfs": {"type": "layers", "diff_ids": [digest(layer)]}}).encode()
            for blob in (config, layer):
                response = http.post(f"{base}/blobs/uploads/", params={"digest": digest(blob)}, data=blob, timeout=30)
                assert response.status_code == 201, response.text
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config),
                           "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(layer),
                            "size": len(layer)}]}).encode()
            tag = f"w{worker}-{n}"
            response = http.put(f"{base}/manifests/{tag}", data=manifest,
                                headers={"Content-Type": OCI_MANIFEST}, timeout=30)
            assert response.status_code == 201, response.text
            return tag, manifest, layer

    acknowledged, _ = write_until_killed(server, push, at_least=11)
    restarted = fresh_nimbus()
    with requests.Session() as http:
        http.auth = (user, password)
        base = f"{restarted.endpoint}/v2/crash"
        for tag, manifest, layer in acknowledged:
            response = http.get(f"{base}/manifests/{tag}", headers={"Accept": OCI_MANIFEST}, timeout=30)
            assert response.status_code == 200 and response.content == manifest, f"{tag} lost: {response.text}"
            response = http.get(f"{base}/blobs/{digest(layer)}", timeout=30)
            assert response.content == layer, f"the layer of {tag} lost"


def test_sigkill_loses_no_acknowledged_event_invoke(fresh_nimbus, callbacks):
    server = fresh_nimbus()
    create_function(server.client("lambda"), "queued", zip_function("py_callback"), Timeout=10,
                    Environment={"Variables": {"CALLBACK_URL": callbacks.url}})
    clients = [server.client("lambda") for _ in range(4)]

    def queue(worker, n):
        response = clients[worker].invoke(FunctionName="queued", InvocationType="Event",
                                          Payload=json.dumps({"worker": worker, "n": n}))
        assert response["StatusCode"] == 202
        time.sleep(0.05)  # a queue the restarted server works off in seconds
        return response["ResponseMetadata"]["RequestId"]

    acknowledged, _ = write_until_killed(server, queue, at_least=11, workers=2)
    fresh_nimbus()
    ran = lambda: {post["request_id"] for post in callbacks.posts}  # noqa: E731
    assert eventually(lambda: set(acknowledged) <= ran(), timeout=120), (
        f"{len(set(acknowledged) - ran())} of {len(acknowledged)} acknowledged events never ran")


def test_sigkill_loses_no_acknowledged_log_event_and_restarts_overwrite_none(fresh_nimbus):
    server = fresh_nimbus()
    logs = server.client("logs")
    logs.create_log_group(logGroupName="crash")
    logs.create_log_stream(logGroupName="crash", logStreamName="s")
    # Every event shares one millisecond, so only their keys tell them apart.
    stamp = int(time.time() * 1000)
    clients = [server.client("logs") for _ in range(4)]

    def put(worker, n):
        message = f"w{worker} {n}"
        clients[worker].put_log_events(logGroupName="crash", logStreamName="s",
                                       logEvents=[{"timestamp": stamp, "message": message}])
        return message

    acknowledged, _ = write_until_killed(server, put, at_least=21)
    logs = fresh_nimbus().client("logs")
    after = [f"after the restart {n}" for n in range(5)]
    logs.put_log_events(logGroupName="crash", logStreamName="s",
                        logEvents=[{"timestamp": stamp, "message": message} for message in after])
    stored = []
    for page in logs.get_paginator("filter_log_events").paginate(logGroupName="crash"):
        stored += [event["message"] for event in page["events"]]
    missing = set(acknowledged + after) - set(stored)
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:3]}"


def test_sigkill_loses_no_acknowledged_schedule(fresh_nimbus):
    server = fresh_nimbus()
    clients = [server.client("scheduler") for _ in range(4)]

    def create(worker, n):
        name = f"crash-{worker}-{n}"
        clients[worker].create_schedule(
            Name=name, ScheduleExpression="rate(7 days)", FlexibleTimeWindow={"Mode": "OFF"},
            Target={"Arn": "arn:aws:lambda:us-east-1:000000000000:function:nowhere", "RoleArn": ROLE,
                    "Input": json.dumps({"n": n})},
        )
        return name, n

    acknowledged, _ = write_until_killed(server, create, at_least=21)
    scheduler = fresh_nimbus().client("scheduler")
    for name, n in acknowledged:
        assert json.loads(scheduler.get_schedule(Name=name)["Target"]["Input"]) == {"n": n}


def test_sigkill_loses_no_task_output_written_before_it(fresh_nimbus, tmp_path):
    """A task's output is the write its container made; every line of it reaches
    the log stream though nimbus dies while shipping it."""
    from test_ecs import push_web_image, task_definition, wait

    server = fresh_nimbus()
    ecs = server.client("ecs")
    ecs.create_cluster()
    image = push_web_image(server, tmp_path)
    group = "/ecs/chatty"
    counting = "i=0; while true; do echo line $i; i=$((i+1)); usleep 500; done"
    definition = task_definition(ecs, image, ["sh", "-c", counting], group=group)
    [task] = ecs.run_task(taskDefinition=definition)["tasks"]
    wait(ecs, "running", task["taskArn"])
    time.sleep(2)
    server.kill()  # SIGKILL while lines are on their way to the store

    restarted = fresh_nimbus()
    ecs = restarted.client("ecs")
    ecs.stop_task(task=task["taskArn"])
    wait(ecs, "stopped", task["taskArn"])
    stream = f"web/web/{task['taskArn'].rsplit('/', 1)[1]}"
    logs = restarted.client("logs")
    numbers = set()
    for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group, logStreamNames=[stream]):
        numbers |= {int(event["message"].split()[1]) for event in page["events"]
                    if event["message"].startswith("line ")}
    assert len(numbers) > 100, f"only {len(numbers)} lines shipped"
    missing = set(range(max(numbers) + 1)) - numbers
    assert not missing, f"{len(missing)} lines lost, e.g. {sorted(missing)[:5]}"
