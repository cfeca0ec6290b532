"""ECS's control plane through boto3 and the aws CLI: clusters and task definitions
with ECS's validation (the Fargate size table, ports, memory). Tasks and services are
not built yet."""

import json
import os
import uuid
from pathlib import Path

import botocore.exceptions
import pytest


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


@pytest.fixture(scope="module")
def ecs(nimbus):
    client = nimbus.client("ecs")
    client.create_cluster()  # the default cluster, as the console makes it
    return client


def web(family, **extra):
    return {
        "family": family,
        "containerDefinitions": [{
            "name": "web", "image": "127.0.0.1:4566/web:latest", "memory": 128,
            "portMappings": [{"containerPort": 8080, "hostPort": 0}],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": "/ecs/web", "awslogs-region": "us-east-1", "awslogs-stream-prefix": "web"}},
        }],
        **extra,
    }


def test_clusters_are_created_described_listed_and_deleted(ecs):
    name = f"c-{uuid.uuid4().hex[:8]}"
    cluster = ecs.create_cluster(clusterName=name)["cluster"]
    assert cluster["clusterArn"] == f"arn:aws:ecs:us-east-1:000000000000:cluster/{name}"
    assert cluster["status"] == "ACTIVE"
    assert ecs.create_cluster(clusterName=name)["cluster"]["clusterArn"] == cluster["clusterArn"], "idempotent"
    assert cluster["clusterArn"] in ecs.list_clusters()["clusterArns"]
    described = ecs.describe_clusters(clusters=[name, "missing-cluster"])
    assert [c["clusterName"] for c in described["clusters"]] == [name]
    assert described["failures"][0]["reason"] == "MISSING"
    assert ecs.delete_cluster(cluster=cluster["clusterArn"])["cluster"]["status"] == "INACTIVE"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ecs.delete_cluster(cluster=name)
    assert error_code(excinfo) == "ClusterNotFoundException"


def test_task_definitions_get_revisions_and_families(ecs):
    family = f"web-{uuid.uuid4().hex[:8]}"
    first = ecs.register_task_definition(**web(family))["taskDefinition"]
    assert first["revision"] == 1 and first["status"] == "ACTIVE"
    assert first["containerDefinitions"][0]["essential"] is True
    second = ecs.register_task_definition(**web(family, cpu="256", memory="512"))["taskDefinition"]
    assert second["taskDefinitionArn"].endswith(f"task-definition/{family}:2")
    assert ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]["revision"] == 2
    ecs.deregister_task_definition(taskDefinition=f"{family}:2")
    assert ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]["revision"] == 1
    assert ecs.describe_task_definition(taskDefinition=f"{family}:2")["taskDefinition"]["status"] == "INACTIVE"
    active = ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"]
    assert [arn.rsplit(":", 1)[1] for arn in active] == ["1"]
    assert ecs.list_task_definition_families(familyPrefix=family)["families"] == [family]


@pytest.mark.parametrize(("changes", "complaint"), [
    ({"requiresCompatibilities": ["FARGATE"], "networkMode": "awsvpc", "cpu": "256", "memory": "4096"},
     "No Fargate configuration exists for given values: 256 CPU, 4096 memory"),
    ({"requiresCompatibilities": ["FARGATE"], "cpu": "256", "memory": "512"}, "awsvpc"),
    ({"containerDefinitions": [{"name": "web", "image": "x"}]}, "'memory' or 'memoryReservation'"),
    ({"containerDefinitions": [{"name": "web", "image": "x", "memory": 64,
                                "portMappings": [{"containerPort": 99999}]}]}, "container port"),
    ({"networkMode": "host", "containerDefinitions": [{"name": "web", "image": "x", "memory": 64,
                                                       "portMappings": [{"containerPort": 80, "hostPort": 81}]}]},
     "must match"),
])
def test_bad_task_definitions_get_ecs_errors(ecs, changes, complaint):
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ecs.register_task_definition(**{**web(f"bad-{uuid.uuid4().hex[:6]}"), **changes})
    assert error_code(excinfo) == "ClientException"
    assert complaint in excinfo.value.response["Error"]["Message"]


def test_the_aws_cli_registers_and_lists(nimbus, tmp_path):
    family = f"cli-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "taskdef.json"
    path.write_text(json.dumps(web(family)))
    registered = nimbus.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{path}",
                            "--profile", "nimbus", check=True)
    assert json.loads(registered.stdout)["taskDefinition"]["family"] == family
    families = json.loads(nimbus.aws("ecs", "list-task-definition-families", "--family-prefix", family,
                                     "--profile", "nimbus", check=True).stdout)
    assert families["families"] == [family]


# --- Tasks ---------------------------------------------------------------------

import base64  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402

from conftest import eventually  # noqa: E402
from test_registry import podman  # noqa: E402,F401 (a fixture)

BUSYBOX = "/bin/busybox"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(*command):
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{command}: {result.stderr}"
    return result


@pytest.fixture(scope="module")
def web_image(nimbus, tmp_path_factory):
    return push_web_image(nimbus, tmp_path_factory.mktemp("web-image"))


def push_web_image(nimbus, root):
    """A static busybox with a page to serve, built offline with umoci and pushed
    with skopeo to nimbus's registry; its image URI."""
    if not shutil.which("skopeo"):
        pytest.skip("skopeo is installed by the test command")
    layout = build_web_layout(root)
    repo = f"web-{uuid.uuid4().hex[:8]}"
    ecr = nimbus.client("ecr")
    ecr.create_repository(repositoryName=repo)
    token = base64.b64decode(ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]).decode()
    host = nimbus.endpoint.split("://", 1)[1]
    env = {**os.environ, "HOME": str(root), "XDG_RUNTIME_DIR": str(root)}
    pushed = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", token,
                             f"oci:{layout}:v1", f"docker://{host}/{repo}:v1"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert pushed.returncode == 0, pushed.stderr
    return f"{host}/{repo}:v1"


def build_web_layout(root):
    """The OCI layout of a static busybox with a page to serve, tagged v1."""
    if not (shutil.which("umoci") and shutil.which(BUSYBOX)):
        pytest.skip("umoci and a static busybox are installed by the test command")
    layout, bundle = root / "layout", root / "bundle"
    run("umoci", "init", "--layout", layout)
    run("umoci", "new", "--image", f"{layout}:v1")
    # unpack and repack: umoci 0.4.7's `insert` writes layers without tar's end blocks.
    run("umoci", "unpack", "--image", f"{layout}:v1", bundle)
    (bundle / "rootfs" / "bin").mkdir()
    (bundle / "rootfs" / "www").mkdir()
    shutil.copy2(BUSYBOX, bundle / "rootfs" / "bin" / "busybox")
    (bundle / "rootfs" / "www" / "index.html").write_text("hello from a nimbus task\n")
    run("umoci", "repack", "--image", f"{layout}:v1", bundle)
    run("umoci", "config", "--image", f"{layout}:v1", "--config.entrypoint", "/bin/busybox",
        "--config.cmd", "true")
    return layout


def wait(ecs, state, arn):
    """Waits for a task to reach `state` ("running", "stopped"); on failure, says
    where the task is and why."""
    try:
        ecs.get_waiter(f"tasks_{state}").wait(tasks=[arn], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    except botocore.exceptions.WaiterError:
        task = ecs.describe_tasks(tasks=[arn])["tasks"][0]
        raise AssertionError(json.dumps(task, default=str, indent=1)) from None


def task_definition(ecs, image, command, port=None, group=None):
    container = {"name": "web", "image": image, "memory": 64, "command": command, "stopTimeout": 5}
    if port:
        container["portMappings"] = [{"containerPort": port}]
    if group:
        container["logConfiguration"] = {"logDriver": "awslogs", "options": {
            "awslogs-group": group, "awslogs-region": "us-east-1", "awslogs-stream-prefix": "web",
            "awslogs-create-group": "true"}}
    family = f"task-{uuid.uuid4().hex[:8]}"
    return ecs.register_task_definition(family=family, networkMode="host", containerDefinitions=[container])[
        "taskDefinition"]["taskDefinitionArn"]


def test_a_task_serves_http_logs_and_stops(nimbus, ecs, web_image):
    port = free_port()
    group = f"/ecs/web-{uuid.uuid4().hex[:6]}"
    definition = task_definition(ecs, web_image, ["httpd", "-f", "-v", "-p", f"127.0.0.1:{port}", "-h", "/www"],
                                 port=port, group=group)
    [task] = ecs.run_task(taskDefinition=definition)["tasks"]
    assert task["lastStatus"] == "PROVISIONING"
    wait(ecs, "running", task["taskArn"])
    running = ecs.describe_tasks(tasks=[task["taskArn"]])["tasks"][0]
    assert running["containers"][0]["networkBindings"][0]["hostPort"] == port
    assert eventually(lambda: _get(port) is not None, timeout=20)
    assert _get(port) == "hello from a nimbus task\n"
    assert task["taskArn"] in ecs.list_tasks()["taskArns"]

    started = time.monotonic()
    ecs.stop_task(task=task["taskArn"], reason="done testing")
    wait(ecs, "stopped", task["taskArn"])
    assert time.monotonic() - started < 5 + 10, "stopped within its stop timeout"
    stopped = ecs.describe_tasks(tasks=[task["taskArn"]])["tasks"][0]
    assert (stopped["stopCode"], stopped["stoppedReason"]) == ("UserInitiated", "done testing")
    assert "exitCode" in stopped["containers"][0]
    assert _get(port) is None

    logs = nimbus.client("logs")
    stream = f"web/web/{task['taskArn'].rsplit('/', 1)[1]}"
    messages = [e["message"] for e in logs.get_log_events(logGroupName=group, logStreamName=stream,
                                                           startFromHead=True)["events"]]
    assert any("GET /" in m or "response:200" in m or "127.0.0.1" in m for m in messages), messages


def _get(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return response.read().decode()
    except OSError:
        return None


def test_an_exiting_container_and_a_missing_image_stop_their_tasks(ecs, web_image):
    failing = task_definition(ecs, web_image, ["false"])
    [task] = ecs.run_task(taskDefinition=failing)["tasks"]
    wait(ecs, "stopped", task["taskArn"])
    stopped = ecs.describe_tasks(tasks=[task["taskArn"]])["tasks"][0]
    assert stopped["stopCode"] == "EssentialContainerExited"
    assert stopped["containers"][0]["exitCode"] == 1

    missing = task_definition(ecs, web_image.rsplit(":", 1)[0] + ":no-such-tag", ["true"])
    [task] = ecs.run_task(taskDefinition=missing)["tasks"]
    wait(ecs, "stopped", task["taskArn"])
    stopped = ecs.describe_tasks(tasks=[task["taskArn"]])["tasks"][0]
    assert stopped["stopCode"] == "TaskFailedToStart"
    assert stopped["stoppedReason"].startswith("CannotPullContainerError")


def test_a_task_stopped_while_it_starts_stops(ecs, web_image):
    """StopTask right after RunTask, before the containers exist: the start must not
    leave them running."""
    definition = sleeper(ecs, web_image, f"stop-early-{uuid.uuid4().hex[:8]}")
    arns = [task["taskArn"] for task in ecs.run_task(taskDefinition=definition, count=3)["tasks"]]
    for arn in arns:
        ecs.stop_task(task=arn, reason="changed my mind")
    for arn in arns:
        wait(ecs, "stopped", arn)
    for task in ecs.describe_tasks(tasks=arns)["tasks"]:
        assert task["stopCode"] == "UserInitiated" and task["stoppedReason"] == "changed my mind"


def test_run_task_refuses_what_it_cannot_run(ecs):
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ecs.run_task(cluster="no-such-cluster", taskDefinition="x")
    assert error_code(excinfo) == "ClusterNotFoundException"
    family = f"vpc-{uuid.uuid4().hex[:6]}"
    ecs.register_task_definition(family=family, networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
                                 cpu="256", memory="512", containerDefinitions=[{"name": "a", "image": "x"}])
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ecs.run_task(taskDefinition=family, launchType="FARGATE")
    assert error_code(excinfo) == "InvalidParameterException"
    assert "Network Configuration must be provided" in excinfo.value.response["Error"]["Message"]
    bridged = ecs.register_task_definition(family=f"br-{uuid.uuid4().hex[:6]}", containerDefinitions=[
        {"name": "a", "image": "x", "memory": 64}])["taskDefinition"]["taskDefinitionArn"]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ecs.run_task(taskDefinition=bridged, launchType="FARGATE")
    assert "does not support launch_type FARGATE" in excinfo.value.response["Error"]["Message"]


def _ports_forwarded(task_id):
    rules = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    return task_id in rules


def test_bridge_tasks_get_mapped_host_ports_and_fargate_tasks_their_own_address(nimbus, ecs, web_image):
    serve = ["httpd", "-f", "-v", "-p", "8080", "-h", "/www"]
    bridge = ecs.register_task_definition(family=f"br-{uuid.uuid4().hex[:6]}", networkMode="bridge", containerDefinitions=[
        {"name": "web", "image": web_image, "memory": 32, "command": serve, "stopTimeout": 2,
         "portMappings": [{"containerPort": 8080, "hostPort": 0}]}])["taskDefinition"]["taskDefinitionArn"]
    [task] = ecs.run_task(taskDefinition=bridge)["tasks"]
    wait(ecs, "running", task["taskArn"])
    [binding] = ecs.describe_tasks(tasks=[task["taskArn"]])["tasks"][0]["containers"][0]["networkBindings"]
    assert binding["containerPort"] == 8080 and 49153 <= binding["hostPort"] <= 65535
    port = binding["hostPort"]
    assert eventually(lambda: _get(port) == "hello from a nimbus task\n", timeout=20)

    # The same host port twice: the second task does not fit on this node.
    static = ecs.register_task_definition(family=f"br-{uuid.uuid4().hex[:6]}", networkMode="bridge", containerDefinitions=[
        {"name": "web", "image": web_image, "memory": 32, "command": serve,
         "portMappings": [{"containerPort": 8080, "hostPort": port}]}])["taskDefinition"]["taskDefinitionArn"]
    answer = ecs.run_task(taskDefinition=static)
    assert answer["tasks"] == [] and answer["failures"][0]["reason"] == "RESOURCE:PORTS"

    vpc = ecs.register_task_definition(family=f"vpc-{uuid.uuid4().hex[:6]}", networkMode="awsvpc",
                                       requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
                                       containerDefinitions=[{"name": "web", "image": web_image, "command": serve,
                                                              "portMappings": [{"containerPort": 8080}]}])[
        "taskDefinition"]["taskDefinitionArn"]
    [fargate] = ecs.run_task(taskDefinition=vpc, launchType="FARGATE", networkConfiguration={
        "awsvpcConfiguration": {"subnets": ["subnet-12345678"], "assignPublicIp": "DISABLED"}})["tasks"]
    wait(ecs, "running", fargate["taskArn"])
    described = ecs.describe_tasks(tasks=[fargate["taskArn"]])["tasks"][0]
    assert described["launchType"] == "FARGATE" and "containerInstanceArn" not in described
    [eni] = described["attachments"]
    details = {d["name"]: d["value"] for d in eni["details"]}
    assert eni["type"] == "ElasticNetworkInterface" and eni["status"] == "ATTACHED"
    assert details["subnetId"] == "subnet-12345678"
    address = details["privateIPv4Address"]
    assert described["containers"][0]["networkInterfaces"][0]["privateIpv4Address"] == address

    def at_address():
        try:
            with urllib.request.urlopen(f"http://{address}:8080/", timeout=2) as response:
                return response.read().decode()
        except OSError:
            return None
    assert eventually(lambda: at_address() == "hello from a nimbus task\n", timeout=20)

    for arn in (task["taskArn"], fargate["taskArn"]):
        ecs.stop_task(task=arn)
        wait(ecs, "stopped", arn)
    assert _get(port) is None and at_address() is None
    task_id = task["taskArn"].rsplit("/", 1)[1]
    assert not _ports_forwarded(task_id), "the port forwarding went with the task"
    assert not list((nimbus.data_dir / "ecs" / "networks").iterdir()), "no network namespace is left"


def test_running_tasks_survive_a_sigkilled_server(fresh_nimbus, tmp_path):
    server = fresh_nimbus()
    ecs = server.client("ecs")
    ecs.create_cluster()
    image = push_web_image(server, tmp_path)
    port = free_port()
    group = f"/ecs/survivor-{uuid.uuid4().hex[:6]}"
    definition = task_definition(ecs, image, ["httpd", "-f", "-v", "-p", f"127.0.0.1:{port}", "-h", "/www"],
                                 port=port, group=group)
    [task] = ecs.run_task(taskDefinition=definition)["tasks"]
    brief = task_definition(ecs, image, ["sh", "-c", "sleep 3; exit 7"])
    [short] = ecs.run_task(taskDefinition=brief)["tasks"]
    wait(ecs, "running", task["taskArn"])
    wait(ecs, "running", short["taskArn"])
    assert eventually(lambda: _get(port) is not None, timeout=20)

    server.kill()  # SIGKILL: each container's monitor keeps it running
    assert _get(port) == "hello from a nimbus task\n", "served while nimbus is down"
    time.sleep(4)  # the brief task's container exits while nobody watches
    restarted = fresh_nimbus()
    ecs = restarted.client("ecs")
    assert ecs.describe_tasks(tasks=[task["taskArn"]])["tasks"][0]["lastStatus"] == "RUNNING"
    assert _get(port) == "hello from a nimbus task\n"
    wait(ecs, "stopped", short["taskArn"])
    ended = ecs.describe_tasks(tasks=[short["taskArn"]])["tasks"][0]
    assert ended["stopCode"] == "EssentialContainerExited" and ended["containers"][0]["exitCode"] == 7

    # What the task wrote while nimbus was down reaches its log stream after all.
    logs = restarted.client("logs")
    stream = f"web/web/{task['taskArn'].rsplit('/', 1)[1]}"

    def requests_logged():
        events = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)["events"]
        return sum("GET /" in e["message"] or "response:200" in e["message"] for e in events)
    assert eventually(lambda: requests_logged() >= 2, timeout=10)

    ecs.stop_task(task=task["taskArn"])
    wait(ecs, "stopped", task["taskArn"])
    assert _get(port) is None
    assert str(server.data_dir) not in open("/proc/self/mountinfo").read()
    assert not [p for p in os.listdir("/proc") if p.isdigit() and task["taskArn"].rsplit("/", 1)[1].encode()
                in _cmdline(p)], "no monitor or runtime of the task is left"


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


# --- Services ------------------------------------------------------------------


def sleeper(ecs, image, family, command=("sleep", "600")):
    return ecs.register_task_definition(family=family, networkMode="none", containerDefinitions=[{
        "name": "app", "image": image, "memory": 32, "command": list(command), "stopTimeout": 2}])[
        "taskDefinition"]["taskDefinitionArn"]


def running_tasks(ecs, service):
    arns = ecs.list_tasks(serviceName=service)["taskArns"]
    if not arns:
        return []
    return [t for t in ecs.describe_tasks(tasks=arns)["tasks"] if t["lastStatus"] == "RUNNING"]


def test_a_service_keeps_its_count_rolls_and_rolls_back(nimbus, ecs, web_image):
    family = f"svc-{uuid.uuid4().hex[:6]}"
    first = sleeper(ecs, web_image, family)
    name = f"svc-{uuid.uuid4().hex[:6]}"
    ecs.create_service(serviceName=name, taskDefinition=first, desiredCount=3)
    assert eventually(lambda: len(running_tasks(ecs, name)) == 3, timeout=60)

    # A killed container's task is replaced.
    victim = running_tasks(ecs, name)[0]
    task_id = victim["taskArn"].rsplit("/", 1)[1]
    state = nimbus.data_dir / "ecs" / "tasks" / "state"
    run("runc", "--root", state, "kill", f"{task_id}-app", "KILL")
    assert eventually(lambda: ecs.describe_tasks(tasks=[victim["taskArn"]])["tasks"][0]["lastStatus"] == "STOPPED",
                      timeout=30)
    assert eventually(lambda: len(running_tasks(ecs, name)) == 3, timeout=60)
    assert victim["taskArn"] not in [t["taskArn"] for t in running_tasks(ecs, name)]

    # A new task definition rolls without going below minimumHealthyPercent (100%).
    second = sleeper(ecs, web_image, family, ("sleep", "601"))
    ecs.update_service(service=name, taskDefinition=second)
    lowest = 3

    def rolled():
        nonlocal lowest
        tasks = running_tasks(ecs, name)
        lowest = min(lowest, len([t for t in tasks if t["desiredStatus"] == "RUNNING"]))
        return len(tasks) == 3 and all(t["taskDefinitionArn"] == second for t in tasks)

    assert eventually(rolled, timeout=90)
    assert lowest >= 3, f"dropped to {lowest} running tasks during the rollout"
    service = ecs.describe_services(services=[name])["services"][0]
    assert eventually(lambda: ecs.describe_services(services=[name])["services"][0]["deployments"][0]["rolloutState"]
                      == "COMPLETED", timeout=30)

    # A definition whose container exits at once trips the circuit breaker and rolls back.
    broken = sleeper(ecs, web_image, family, ("false",))
    ecs.update_service(service=name, taskDefinition=broken, deploymentConfiguration={
        "deploymentCircuitBreaker": {"enable": True, "rollback": True}})

    def rolled_back():
        service = ecs.describe_services(services=[name])["services"][0]
        return (service["taskDefinition"] == second
                and any("rolling back" in e["message"] for e in service["events"]))

    assert eventually(rolled_back, timeout=120)
    assert eventually(lambda: len(running_tasks(ecs, name)) == 3, timeout=60)
    assert all(t["taskDefinitionArn"] == second for t in running_tasks(ecs, name))
    messages = [e["message"] for e in ecs.describe_services(services=[name])["services"][0]["events"]]
    assert any("deployment failed" in m for m in messages)

    ecs.update_service(service=name, desiredCount=0)
    assert eventually(lambda: not running_tasks(ecs, name), timeout=60)
    deleted = ecs.delete_service(service=name)["service"]
    assert deleted["status"] == "DRAINING"
    assert service["serviceArn"] not in ecs.list_services()["serviceArns"]


def test_health_checks_run_inside_the_container(ecs, web_image):
    def checked(command):
        family = f"health-{uuid.uuid4().hex[:6]}"
        definition = ecs.register_task_definition(family=family, networkMode="none", containerDefinitions=[{
            "name": "app", "image": web_image, "memory": 32, "command": ["sleep", "600"], "stopTimeout": 2,
            "healthCheck": {"command": command, "interval": 5, "timeout": 2, "retries": 1}}])
        [task] = ecs.run_task(taskDefinition=definition["taskDefinition"]["taskDefinitionArn"])["tasks"]
        return task["taskArn"]

    healthy = checked(["CMD", "/bin/busybox", "true"])
    unhealthy = checked(["CMD", "/bin/busybox", "false"])
    health = lambda arn: ecs.describe_tasks(tasks=[arn])["tasks"][0].get("healthStatus")  # noqa: E731
    assert eventually(lambda: health(healthy) == "HEALTHY", timeout=30)
    assert eventually(lambda: health(unhealthy) == "UNHEALTHY", timeout=30)
    assert ecs.describe_tasks(tasks=[unhealthy])["tasks"][0]["containers"][0]["healthStatus"] == "UNHEALTHY"
    for arn in (healthy, unhealthy):
        ecs.stop_task(task=arn)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ecs.register_task_definition(family="bad-health", containerDefinitions=[{
            "name": "app", "image": web_image, "memory": 32, "healthCheck": {"command": ["CMD", "true"], "interval": 1}}])
    assert "interval" in excinfo.value.response["Error"]["Message"]


def test_a_task_role_reaches_containers_through_the_credentials_endpoint(nimbus, ecs, web_image):
    iam = nimbus.client("iam")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
    role = iam.create_role(RoleName=f"task-{uuid.uuid4().hex[:6]}", AssumeRolePolicyDocument=trust)["Role"]
    group = f"/ecs/role-{uuid.uuid4().hex[:6]}"
    fetch = 'wget -q -O - --header "Authorization: $AWS_CONTAINER_AUTHORIZATION_TOKEN" "$AWS_CONTAINER_CREDENTIALS_FULL_URI"'
    definition = ecs.register_task_definition(
        family=f"role-{uuid.uuid4().hex[:6]}", networkMode="host", taskRoleArn=role["Arn"], containerDefinitions=[{
            "name": "app", "image": web_image, "memory": 32, "command": ["sh", "-c", fetch],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": group, "awslogs-stream-prefix": "app", "awslogs-create-group": "true"}}}])
    [task] = ecs.run_task(taskDefinition=definition["taskDefinition"]["taskDefinitionArn"])["tasks"]
    wait(ecs, "stopped", task["taskArn"])
    task_id = task["taskArn"].rsplit("/", 1)[1]
    logs = nimbus.client("logs")
    assert eventually(lambda: logs.get_log_events(logGroupName=group, logStreamName=f"app/app/{task_id}",
                                                  startFromHead=True)["events"], timeout=10)
    body = "".join(e["message"] for e in logs.get_log_events(
        logGroupName=group, logStreamName=f"app/app/{task_id}", startFromHead=True)["events"])
    credentials = json.loads(body)
    assert credentials["RoleArn"] == role["Arn"]
    import boto3
    sts = boto3.client("sts", endpoint_url=nimbus.endpoint, region_name="us-east-1",
                       aws_access_key_id=credentials["AccessKeyId"], aws_secret_access_key=credentials["SecretAccessKey"],
                       aws_session_token=credentials["Token"])
    assert sts.get_caller_identity()["Arn"].endswith(f"assumed-role/{role['RoleName']}/{task_id}")

    # The endpoint answers only with the task's own token.
    wrong = urllib.request.Request(f"{nimbus.endpoint}/_nimbus/ecs/credentials/{task_id}", headers={"Authorization": "x"})
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(wrong, timeout=5)
    assert excinfo.value.code == 403

    untrusting = iam.create_role(RoleName=f"not-ecs-{uuid.uuid4().hex[:6]}", AssumeRolePolicyDocument=trust.replace(
        "ecs-tasks", "lambda"))["Role"]
    definition = ecs.register_task_definition(
        family=f"role-{uuid.uuid4().hex[:6]}", networkMode="host", taskRoleArn=untrusting["Arn"],
        containerDefinitions=[{"name": "app", "image": web_image, "memory": 32, "command": ["true"]}])
    [task] = ecs.run_task(taskDefinition=definition["taskDefinition"]["taskDefinitionArn"])["tasks"]
    wait(ecs, "stopped", task["taskArn"])
    stopped = ecs.describe_tasks(tasks=[task["taskArn"]])["tasks"][0]
    assert stopped["stopCode"] == "TaskFailedToStart" and "task role" in stopped["stoppedReason"]


ECS_TASKS_TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


def test_only_a_caller_allowed_to_pass_a_role_hands_it_to_tasks(nimbus, ecs):
    import boto3
    import botocore.config

    iam = nimbus.client("iam")
    role = iam.create_role(RoleName=f"passed-{uuid.uuid4().hex[:6]}", AssumeRolePolicyDocument=ECS_TASKS_TRUST)["Role"]
    user = f"ops-{uuid.uuid4().hex[:6]}"
    iam.create_user(UserName=user)
    may_use_ecs = {"Effect": "Allow", "Action": "ecs:*", "Resource": "*"}

    def allow(*statements):
        iam.put_user_policy(UserName=user, PolicyName="ops", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": list(statements)}))

    allow(may_use_ecs)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    ops = boto3.client("ecs", endpoint_url=nimbus.endpoint, region_name="us-east-1",
                       aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                       config=botocore.config.Config(retries={"max_attempts": 1}))
    containers = [{"name": "app", "image": "busybox", "memory": 32}]
    family = f"passed-{uuid.uuid4().hex[:6]}"

    for field in ("taskRoleArn", "executionRoleArn"):
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            ops.register_task_definition(family=family, containerDefinitions=containers, **{field: role["Arn"]})
        assert error_code(excinfo) == "AccessDeniedException"
        assert "iam:PassRole" in excinfo.value.response["Error"]["Message"]
    # Running a definition someone else registered with the role hands it over too.
    theirs = ecs.register_task_definition(family=family, containerDefinitions=containers, taskRoleArn=role["Arn"])
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ops.run_task(taskDefinition=theirs["taskDefinition"]["taskDefinitionArn"])
    assert error_code(excinfo) == "AccessDeniedException"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ops.create_service(serviceName=family, taskDefinition=family, desiredCount=0)
    assert error_code(excinfo) == "AccessDeniedException"

    # Allowed to pass it to ECS tasks, and only to them, the user may.
    allow(may_use_ecs, {"Effect": "Allow", "Action": "iam:PassRole", "Resource": role["Arn"],
                        "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}})
    mine = ops.register_task_definition(family=family, containerDefinitions=containers, taskRoleArn=role["Arn"])
    assert mine["taskDefinition"]["taskRoleArn"] == role["Arn"]


def test_images_are_pulled_as_the_tasks_execution_role(nimbus, ecs, web_image):
    iam = nimbus.client("iam")
    name = f"exec-{uuid.uuid4().hex[:6]}"
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=ECS_TASKS_TRUST)["Role"]
    definition = ecs.register_task_definition(
        family=f"exec-{uuid.uuid4().hex[:6]}", networkMode="host", executionRoleArn=role["Arn"],
        containerDefinitions=[{"name": "app", "image": web_image, "memory": 32, "command": ["true"]}],
    )["taskDefinition"]["taskDefinitionArn"]

    def run():
        [task] = ecs.run_task(taskDefinition=definition)["tasks"]
        wait(ecs, "stopped", task["taskArn"])
        return ecs.describe_tasks(tasks=[task["taskArn"]])["tasks"][0]

    # The role may not read the (private) repository: the task cannot pull its image.
    stopped = run()
    assert stopped["stopCode"] == "TaskFailedToStart"
    assert stopped["stoppedReason"].startswith("CannotPullContainerError")
    assert "ecr:BatchGetImage" in stopped["stoppedReason"]

    repository = web_image.split("/", 1)[1].split(":")[0]
    iam.put_role_policy(RoleName=name, PolicyName="pull", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
         "Resource": f"arn:aws:ecr:us-east-1:000000000000:repository/{repository}"}]}))
    stopped = run()
    assert stopped["stopCode"] == "EssentialContainerExited", stopped.get("stoppedReason")
    assert stopped["containers"][0]["exitCode"] == 0


def test_this_node_is_a_container_instance_with_finite_capacity(ecs, web_image):
    [arn] = ecs.list_container_instances()["containerInstanceArns"]
    [instance] = ecs.describe_container_instances(containerInstances=[arn])["containerInstances"]
    registered = {r["name"]: r["integerValue"] for r in instance["registeredResources"]}
    assert registered["CPU"] >= 1024 and registered["MEMORY"] > 0
    assert instance["status"] == "ACTIVE" and instance["agentConnected"] is True

    huge = ecs.register_task_definition(family=f"huge-{uuid.uuid4().hex[:6]}", networkMode="none", containerDefinitions=[
        {"name": "app", "image": web_image, "memory": registered["MEMORY"] + 1, "command": ["true"]}])
    placed = ecs.run_task(taskDefinition=huge["taskDefinition"]["taskDefinitionArn"])
    assert placed["tasks"] == [] and placed["failures"][0]["reason"] == "RESOURCE:MEMORY"

    small = ecs.register_task_definition(family=f"small-{uuid.uuid4().hex[:6]}", networkMode="none", containerDefinitions=[
        {"name": "app", "image": web_image, "memory": 16, "command": ["true"]}])["taskDefinition"]["taskDefinitionArn"]
    ecs.update_container_instances_state(containerInstances=[arn], status="DRAINING")
    try:
        placed = ecs.run_task(taskDefinition=small)
        assert placed["tasks"] == [] and placed["failures"], "a draining instance takes no new tasks"
    finally:
        ecs.update_container_instances_state(containerInstances=[arn], status="ACTIVE")
    [task] = ecs.run_task(taskDefinition=small)["tasks"]
    assert task["containerInstanceArn"] == arn
    started = ecs.start_task(taskDefinition=small, containerInstances=[arn, arn.rsplit("/", 1)[0] + "/nowhere"])
    assert [t["containerInstanceArn"] for t in started["tasks"]] == [arn]
    assert started["failures"][0]["reason"] == "MISSING"


def test_a_deregistered_instance_leaves_its_cluster(ecs, web_image):
    """Deregistering refuses an instance with live tasks unless forced; forced, its
    tasks stop and it is described INACTIVE but no longer listed, counted or placed on."""
    cluster = f"dereg-{uuid.uuid4().hex[:6]}"
    ecs.create_cluster(clusterName=cluster)
    [arn] = ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
    definition = sleeper(ecs, web_image, f"dereg-{uuid.uuid4().hex[:6]}")
    [task] = ecs.run_task(cluster=cluster, taskDefinition=definition)["tasks"]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ecs.deregister_container_instance(cluster=cluster, containerInstance=arn)
    assert error_code(excinfo) == "InvalidParameterException"
    assert "running tasks" in excinfo.value.response["Error"]["Message"]

    gone = ecs.deregister_container_instance(cluster=cluster, containerInstance=arn.rsplit("/", 1)[1], force=True)
    assert gone["containerInstance"]["status"] == "INACTIVE"
    ecs.get_waiter("tasks_stopped").wait(cluster=cluster, tasks=[task["taskArn"]], WaiterConfig={"Delay": 1})
    [stopped] = ecs.describe_tasks(cluster=cluster, tasks=[task["taskArn"]])["tasks"]
    assert stopped["stoppedReason"] == "Container instance deregistered"
    assert ecs.list_container_instances(cluster=cluster)["containerInstanceArns"] == []
    [described] = ecs.describe_container_instances(cluster=cluster, containerInstances=[arn])["containerInstances"]
    assert described["status"] == "INACTIVE"
    assert ecs.describe_clusters(clusters=[cluster])["clusters"][0]["registeredContainerInstancesCount"] == 0
    placed = ecs.run_task(cluster=cluster, taskDefinition=definition)
    assert placed["tasks"] == [] and placed["failures"]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ecs.deregister_container_instance(cluster=cluster, containerInstance="nowhere")
    assert error_code(excinfo) == "InvalidParameterException"


def test_clusters_count_their_work_and_refuse_deletion_while_busy(ecs, web_image):
    name = f"busy-{uuid.uuid4().hex[:6]}"
    ecs.create_cluster(clusterName=name)
    definition = sleeper(ecs, web_image, f"busy-{uuid.uuid4().hex[:6]}")
    [task] = ecs.run_task(cluster=name, taskDefinition=definition)["tasks"]
    wait_in = lambda: ecs.describe_clusters(clusters=[name])["clusters"][0]  # noqa: E731
    assert eventually(lambda: wait_in()["runningTasksCount"] == 1, timeout=30)
    assert wait_in()["registeredContainerInstancesCount"] == 1
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ecs.delete_cluster(cluster=name)
    assert error_code(excinfo) == "ClusterContainsTasksException"
    ecs.stop_task(cluster=name, task=task["taskArn"])
    assert eventually(lambda: wait_in()["runningTasksCount"] + wait_in()["pendingTasksCount"] == 0, timeout=30)
    assert ecs.delete_cluster(cluster=name)["cluster"]["status"] == "INACTIVE"


def test_containers_start_in_dependency_order(ecs, web_image):
    port = free_port()
    # The server starts once an init container succeeded; a sidecar once the server is
    # healthy; the task is RUNNING once all have started.
    definition = ecs.register_task_definition(family=f"deps-{uuid.uuid4().hex[:6]}", networkMode="host", containerDefinitions=[
        {"name": "sidecar", "image": web_image, "memory": 16, "command": ["sleep", "600"], "essential": False,
         "dependsOn": [{"containerName": "web", "condition": "HEALTHY"}]},
        {"name": "web", "image": web_image, "memory": 32, "stopTimeout": 2,
         "command": ["httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www"],
         "healthCheck": {"command": ["CMD", "/bin/busybox", "true"], "interval": 5, "retries": 1},
         "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}]},
        {"name": "init", "image": web_image, "memory": 16, "essential": False, "command": ["true"]},
    ])["taskDefinition"]["taskDefinitionArn"]
    [task] = ecs.run_task(taskDefinition=definition)["tasks"]
    wait(ecs, "running", task["taskArn"])
    described = ecs.describe_tasks(tasks=[task["taskArn"]])["tasks"][0]
    by_name = {c["name"]: c for c in described["containers"]}
    assert by_name["init"]["lastStatus"] == "STOPPED" and by_name["init"]["exitCode"] == 0
    assert by_name["web"]["healthStatus"] == "HEALTHY", "the sidecar started only once web was healthy"
    assert by_name["sidecar"]["lastStatus"] == "RUNNING"
    assert _get(port) == "hello from a nimbus task\n"
    ecs.stop_task(task=task["taskArn"])
    wait(ecs, "stopped", task["taskArn"])

    failing = ecs.register_task_definition(family=f"deps-{uuid.uuid4().hex[:6]}", networkMode="none", containerDefinitions=[
        {"name": "app", "image": web_image, "memory": 16, "command": ["true"],
         "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}]},
        {"name": "init", "image": web_image, "memory": 16, "essential": False, "command": ["false"]},
    ])["taskDefinition"]["taskDefinitionArn"]
    [task] = ecs.run_task(taskDefinition=failing)["tasks"]
    wait(ecs, "stopped", task["taskArn"])
    stopped = ecs.describe_tasks(tasks=[task["taskArn"]])["tasks"][0]
    assert stopped["stopCode"] == "TaskFailedToStart" and "dependency init exited with code 1" in stopped["stoppedReason"]

    for containers, complaint in [
        ([{"name": "a", "image": "x", "memory": 8, "dependsOn": [{"containerName": "b", "condition": "START"}]},
          {"name": "b", "image": "x", "memory": 8, "dependsOn": [{"containerName": "a", "condition": "START"}]}], "cycle"),
        ([{"name": "a", "image": "x", "memory": 8, "dependsOn": [{"containerName": "b", "condition": "HEALTHY"}]},
          {"name": "b", "image": "x", "memory": 8}], "no health check"),
        ([{"name": "a", "image": "x", "memory": 8, "dependsOn": [{"containerName": "b", "condition": "SUCCESS"}]},
          {"name": "b", "image": "x", "memory": 8}], "non-essential"),
    ]:
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            ecs.register_task_definition(family="deps-bad", containerDefinitions=containers)
        assert complaint in excinfo.value.response["Error"]["Message"]


def test_resources_are_tagged(ecs, web_image):
    cluster = ecs.describe_clusters(clusters=["default"])["clusters"][0]["clusterArn"]
    ecs.tag_resource(resourceArn=cluster, tags=[{"key": "team", "value": "a"}, {"key": "env", "value": "dev"}])
    ecs.untag_resource(resourceArn=cluster, tagKeys=["env"])
    assert ecs.list_tags_for_resource(resourceArn=cluster)["tags"] == [{"key": "team", "value": "a"}]
    definition = task_definition(ecs, web_image, ["true"])
    ecs.tag_resource(resourceArn=definition, tags=[{"key": "owner", "value": "me"}])
    assert ecs.list_tags_for_resource(resourceArn=definition)["tags"] == [{"key": "owner", "value": "me"}]
    for arn, code in [("arn:aws:ecs:us-east-1:000000000000:cluster/no-such", "ClientException"),
                      ("not-an-arn", "InvalidParameterException")]:
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            ecs.list_tags_for_resource(resourceArn=arn)
        assert error_code(excinfo) == code
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ecs.tag_resource(resourceArn=cluster, tags=[{"key": "aws:reserved", "value": "x"}])
    assert error_code(excinfo) == "InvalidParameterException"


def test_a_restart_policy_runs_an_exited_container_again_under_its_soft_limit(nimbus, ecs, web_image):
    group = f"/ecs/restart-{uuid.uuid4().hex[:6]}"
    definition = ecs.register_task_definition(family=f"restart-{uuid.uuid4().hex[:6]}", networkMode="none",
                                              containerDefinitions=[{
        "name": "app", "image": web_image, "memory": 64, "memoryReservation": 32, "stopTimeout": 2,
        "command": ["sh", "-c", "echo started; sleep 61; exit 3"],
        "restartPolicy": {"enabled": True, "ignoredExitCodes": [0], "restartAttemptPeriod": 60},
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": group, "awslogs-region": "us-east-1", "awslogs-stream-prefix": "r",
            "awslogs-create-group": "true"}}}])["taskDefinition"]["taskDefinitionArn"]
    [task] = ecs.run_task(taskDefinition=definition)["tasks"]
    wait(ecs, "running", task["taskArn"])
    task_id = task["taskArn"].rsplit("/", 1)[1]
    cgroup = Path(f"/sys/fs/cgroup/memory/nimbus-tasks/{task_id}-app")
    if cgroup.exists():  # cgroup v1, as on the machines nimbus is tested on
        assert int((cgroup / "memory.soft_limit_in_bytes").read_text()) == 32 * 1024 * 1024
        assert int((cgroup / "memory.limit_in_bytes").read_text()) == 64 * 1024 * 1024
    logs = nimbus.client("logs")

    def starts():
        try:
            events = logs.get_log_events(logGroupName=group, logStreamName=f"r/app/{task_id}",
                                         startFromHead=True)["events"]
        except logs.exceptions.ResourceNotFoundException:
            return 0
        return sum(e["message"] == "started" for e in events)
    assert eventually(lambda: starts() == 2, timeout=100), "exited with 3 after 61 s, run again"
    assert ecs.describe_tasks(tasks=[task["taskArn"]])["tasks"][0]["lastStatus"] == "RUNNING"
    ecs.stop_task(task=task["taskArn"])
    wait(ecs, "stopped", task["taskArn"])
    assert starts() == 2, "a stopped task's container is not restarted"


def test_a_daemon_service_runs_one_task_per_active_instance(ecs, web_image):
    cluster = f"daemon-{uuid.uuid4().hex[:6]}"
    ecs.create_cluster(clusterName=cluster)
    definition = sleeper(ecs, web_image, f"daemon-{uuid.uuid4().hex[:6]}")
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ecs.create_service(cluster=cluster, serviceName="d", taskDefinition=definition, desiredCount=2,
                           schedulingStrategy="DAEMON")
    assert error_code(excinfo) == "InvalidParameterException"
    ecs.create_service(cluster=cluster, serviceName="d", taskDefinition=definition, schedulingStrategy="DAEMON")

    def running():
        arns = ecs.list_tasks(cluster=cluster, serviceName="d")["taskArns"]
        tasks = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"] if arns else []
        return sum(t["lastStatus"] == "RUNNING" for t in tasks)
    assert eventually(lambda: running() == 1, timeout=30)
    [instance] = ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
    ecs.update_container_instances_state(cluster=cluster, containerInstances=[instance], status="DRAINING")
    assert eventually(lambda: running() == 0, timeout=30), "no daemon on a draining instance"
    ecs.update_container_instances_state(cluster=cluster, containerInstances=[instance], status="ACTIVE")
    assert eventually(lambda: running() == 1, timeout=30)
    ecs.delete_service(cluster=cluster, service="d", force=True)
    assert eventually(lambda: running() == 0, timeout=30)


def podman_push_web_image(nimbus, podman, root, repo):
    """Pushes the web image to `repo` (which exists) with podman, logged in with the
    aws CLI's ECR password, as a user would; the registry host."""
    layout = build_web_layout(root)
    password = nimbus.aws("ecr", "get-login-password", "--profile", "nimbus", check=True).stdout.strip()
    host = nimbus.endpoint.removeprefix("http://")
    podman("login", "--tls-verify=false", "-u", "AWS", "--password-stdin", host, stdin=password)
    image = podman("pull", f"oci:{layout}:v1").stdout.split()[-1]
    podman("push", "--tls-verify=false", image, f"{host}/{repo}:v1")
    return host


def test_the_aws_cli_runs_a_podman_pushed_image_on_a_mapped_port(nimbus, podman, tmp_path):
    def aws(*args):
        return json.loads(nimbus.aws(*args, "--profile", "nimbus", check=True).stdout or "{}")

    repo = f"cli-web-{uuid.uuid4().hex[:6]}"
    aws("ecr", "create-repository", "--repository-name", repo)
    host = podman_push_web_image(nimbus, podman, tmp_path, repo)

    group = f"/ecs/cli-{uuid.uuid4().hex[:6]}"
    definition = tmp_path / "web.json"
    definition.write_text(json.dumps({"family": f"cli-web-{uuid.uuid4().hex[:6]}", "containerDefinitions": [{
        "name": "web", "image": f"{host}/{repo}:v1", "memory": 32, "stopTimeout": 3,
        "command": ["httpd", "-f", "-v", "-p", "8080", "-h", "/www"],
        "portMappings": [{"containerPort": 8080, "hostPort": 0}],
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": group, "awslogs-region": "us-east-1", "awslogs-stream-prefix": "web",
            "awslogs-create-group": "true"}}}]}))
    arn = aws("ecs", "register-task-definition", "--cli-input-json", f"file://{definition}")[
        "taskDefinition"]["taskDefinitionArn"]
    task = aws("ecs", "run-task", "--task-definition", arn)["tasks"][0]["taskArn"]
    aws("ecs", "wait", "tasks-running", "--tasks", task)
    [binding] = aws("ecs", "describe-tasks", "--tasks", task)["tasks"][0]["containers"][0]["networkBindings"]
    port = binding["hostPort"]
    assert eventually(lambda: _get(port) == "hello from a nimbus task\n", timeout=20)

    started = time.monotonic()
    aws("ecs", "stop-task", "--task", task)
    aws("ecs", "wait", "tasks-stopped", "--tasks", task)
    assert time.monotonic() - started < 3 + 15, "stopped within its stop timeout (and the CLI's polling)"
    stream = f"web/web/{task.rsplit('/', 1)[1]}"
    events = aws("logs", "get-log-events", "--log-group-name", group, "--log-stream-name", stream)["events"]
    assert any("GET /" in e["message"] or "response:200" in e["message"] for e in events), events


def test_placement_constraints_and_the_cluster_query_language(ecs, web_image):
    definition = sleeper(ecs, web_image, f"place-{uuid.uuid4().hex[:6]}")
    placed = ecs.run_task(taskDefinition=definition, count=2, placementConstraints=[{"type": "distinctInstance"}],
                          placementStrategy=[{"type": "spread", "field": "instanceId"}])
    assert len(placed["tasks"]) == 1, "one instance, so one task"
    assert placed["failures"][0]["reason"] == "DistinctInstance placement constraint unsatisfied."
    windows = ecs.run_task(taskDefinition=definition, placementConstraints=[
        {"type": "memberOf", "expression": "attribute:ecs.os-type == windows"}])
    assert windows["tasks"] == [] and windows["failures"][0]["reason"].startswith("MemberOf")
    linux = ecs.run_task(taskDefinition=definition, placementStrategy=[{"type": "binpack", "field": "memory"}],
                         placementConstraints=[{"type": "memberOf",
                                                "expression": "attribute:ecs.os-type =~ lin.* and agentConnected == true"}])
    assert len(linux["tasks"]) == 1
    for task in placed["tasks"] + linux["tasks"]:
        ecs.stop_task(task=task["taskArn"])
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ecs.run_task(taskDefinition=definition, placementConstraints=[{"type": "memberOf", "expression": "a =="}])
    assert error_code(excinfo) == "InvalidParameterException"
    assert ecs.list_container_instances(filter="attribute:ecs.os-type == linux")["containerInstanceArns"]
    assert ecs.list_container_instances(filter="attribute:ecs.os-type != linux")["containerInstanceArns"] == []


@pytest.fixture
def other_registry(tmp_path):
    """Debian's docker-registry (the CNCF distribution registry) on loopback: a
    registry that is not nimbus's."""
    if not shutil.which("docker-registry"):
        pytest.skip("docker-registry is installed by the test command")
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'storage'}\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        assert eventually(lambda: _get_url(f"http://127.0.0.1:{port}/v2/") is not None, timeout=10)
        yield f"127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait()


def _get_url(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read()
    except OSError:
        return None


def test_tasks_pull_images_from_other_registries(ecs, other_registry, tmp_path):
    layout = build_web_layout(tmp_path)
    copied = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:v1",
                             f"docker://{other_registry}/web:v1"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "HOME": str(tmp_path)})
    assert copied.returncode == 0, copied.stderr
    port = free_port()
    definition = task_definition(ecs, f"{other_registry}/web:v1", ["httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www"])
    [task] = ecs.run_task(taskDefinition=definition)["tasks"]
    wait(ecs, "running", task["taskArn"])
    assert eventually(lambda: _get(port) == "hello from a nimbus task\n", timeout=20)
    ecs.stop_task(task=task["taskArn"])
    wait(ecs, "stopped", task["taskArn"])

    missing = task_definition(ecs, f"{other_registry}/nothing:v1", ["true"])
    [task] = ecs.run_task(taskDefinition=missing)["tasks"]
    wait(ecs, "stopped", task["taskArn"])
    stopped = ecs.describe_tasks(tasks=[task["taskArn"]])["tasks"][0]
    assert stopped["stopCode"] == "TaskFailedToStart"
    assert stopped["stoppedReason"].startswith("CannotPullContainerError")
