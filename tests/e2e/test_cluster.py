"""A deployment of three nodes: PostgreSQL and Garage shared, each nimbus server in a
network namespace of its own (its own address on a bridge the test makes), as three
machines would be, serving HTTPS and talking to each other over it. Any node answers any call; services spread their tasks over the
nodes' instances by zone; a node killed with SIGKILL has its tasks recorded stopped
and replaced on the others; invokes sent to every node keep working; IAM changes
reach every node; images pushed through one node are pulled through another."""

import base64
import concurrent.futures
import hashlib
import json
import os
import signal
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid

import botocore.exceptions
import pytest

from cluster import NODES, PORT, ZONES, Deployment
from conftest import (EXTERNAL_BACKENDS, Callbacks, Nimbus, create_function, ensure_lambda_role, eventually,
                      host_address, nimbus_binary, self_signed_certificate, zip_function)
from test_ecs import push_web_image, sleeper


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    root = tmp_path_factory.mktemp("cluster")
    # Functions post to callback servers on this host's address, which sandboxes
    # reach only where the operator opened it.
    cluster = Deployment(root, EXTERNAL_BACKENDS.environment(), nimbus_binary(),
                         {"NIMBUS_EGRESS_ALLOW": f"{host_address()}/32"})
    # One certificate for every node (an internal CA's would do as well), trusted by
    # the clients as AWS_CA_BUNDLE.
    cert, key = self_signed_certificate(root, [*(cluster.address(i) for i in range(NODES)), "127.0.0.1"])
    cluster.tls = (cert, key)
    previous = os.environ.get("AWS_CA_BUNDLE")
    os.environ["AWS_CA_BUNDLE"] = str(cert)
    try:
        cluster.create()
        for i in range(NODES):
            cluster.start(i)
        yield Nodes(cluster)
    finally:
        cluster.remove()
        if previous is None:
            os.environ.pop("AWS_CA_BUNDLE", None)
        else:
            os.environ["AWS_CA_BUNDLE"] = previous


class Nodes:
    """The deployment with its nodes as the suite's Nimbus servers (boto3 clients,
    root keys from each data dir)."""

    def __init__(self, cluster: Deployment):
        self.cluster = cluster
        ensure_lambda_role(self.nodes[0])

    @property
    def nodes(self):
        return [Nimbus(data_dir=n.data_dir, process=n.process, endpoint=n.endpoint, stderr_lines=n.stderr_lines)
                for n in self.cluster.nodes]

    def address(self, i):
        return self.cluster.address(i)

    def start(self, i):
        return self.cluster.start(i)


def tls_context():
    return ssl.create_default_context(cafile=os.environ["AWS_CA_BUNDLE"])


def health(node):
    with urllib.request.urlopen(f"{node.endpoint}/_nimbus/health", timeout=10, context=tls_context()) as response:
        return json.loads(response.read())


def test_every_node_lists_the_deployment(deployment):
    expected = [(f"node-{i}", f"{deployment.address(i)}:{PORT}", ZONES[i], "active") for i in range(NODES)]
    for node in deployment.nodes:
        # Each node reads the others' heartbeats every second.
        listed = lambda: sorted((n["name"], n["advertise"], n["zone"], n["state"]) for n in health(node)["nodes"])
        assert eventually(lambda: listed() == expected, timeout=5), listed()
    # The CLI on the node's own machine, over the plain HTTP beside HTTPS.
    plain = deployment.nodes[2].endpoint.replace("https://", "http://")
    status = subprocess.run([nimbus_binary(), "status", "--endpoint", plain,
                             "--data-dir", str(deployment.nodes[2].data_dir)], capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    assert "node-0" in status.stdout and "node-2" in status.stdout


def test_an_iam_change_on_one_node_is_in_force_on_another(deployment):
    first, third = deployment.nodes[0], deployment.nodes[2]
    iam = first.client("iam")
    user = f"user-{uuid.uuid4().hex[:6]}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="list", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}]}))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    keys = {"key_id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    # A key made on node 0 signs on node 2 at once.
    third.client("s3", **keys).list_buckets()
    iam.put_user_policy(UserName=user, PolicyName="deny", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "s3:*", "Resource": "*"}]}))

    def denied():
        try:
            third.client("s3", **keys).list_buckets()
            return False
        except third.client("s3").exceptions.ClientError as err:
            return err.response["Error"]["Code"] == "AccessDenied"

    assert eventually(denied, timeout=5)
    iam.update_access_key(UserName=user, AccessKeyId=key["AccessKeyId"], Status="Inactive")

    def refused():
        try:
            third.client("sts", **keys).get_caller_identity()
            return False
        except third.client("sts").exceptions.ClientError as err:
            return err.response["Error"]["Code"] == "InvalidClientTokenId"

    assert eventually(refused, timeout=5)


def test_an_image_pushed_through_one_node_is_pulled_through_another(deployment, tmp_path):
    image = push_image(deployment, tmp_path)
    repo = image.split("/", 1)[1]
    env = {**os.environ, "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path)}
    second = deployment.nodes[1]
    ecr = second.client("ecr")
    token = base64.b64decode(
        ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]).decode()
    pulled = subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--src-creds", token,
                             f"docker://{deployment.address(1)}:{PORT}/{repo}", f"oci:{tmp_path / 'pulled'}:v1"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert pulled.returncode == 0, pulled.stderr
    [described] = ecr.describe_images(repositoryName=repo.split(":")[0])["imageDetails"]
    index = json.loads((tmp_path / "pulled" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == described["imageDigest"]


def test_an_api_changed_on_one_node_is_served_so_by_another(deployment):
    """The invoke URLs serve APIs from each node's cache: a change made through one
    node is what the others serve within their change poll."""
    import requests

    first, third = deployment.nodes[0], deployment.nodes[2]
    client = first.lambda_client()
    name = f"fn-{uuid.uuid4().hex[:6]}"
    create_function(client, name, zip_function("py_probe"))
    arn = client.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    apis = first.client("apigatewayv2")
    api_id = apis.create_api(Name=name, ProtocolType="HTTP", Target=arn)["ApiId"]
    client.add_permission(FunctionName=name, StatementId="api", Action="lambda:InvokeFunction",
                          Principal="apigateway.amazonaws.com",
                          SourceArn=f"arn:aws:execute-api:us-east-1:000000000000:{api_id}/*")
    url = f"{third.endpoint}/_nimbus/execute-api/{api_id}/any"
    status = lambda: requests.get(url, timeout=30, verify=os.environ["AWS_CA_BUNDLE"]).status_code  # noqa: E731
    assert status() == 200
    apis.delete_api(ApiId=api_id)
    assert eventually(lambda: status() == 404, timeout=5)


def test_invokes_find_warm_environments_on_any_node(deployment):
    """A node started with --roles api runs no code and is no container instance; the
    invokes it receives run on the workers, with the client's own signature. An invoke
    reaching a node without an idle environment of its function goes to a node with
    one before a cold start is made."""
    api = deployment.cluster.start_api_node()
    try:
        node = Nimbus(data_dir=api.data_dir, process=api.process, endpoint=api.endpoint)
        assert eventually(lambda: any(n["name"] == "api" and n["roles"] == ["api"] and n["state"] == "active"
                                      for n in health(deployment.nodes[0])["nodes"]), timeout=5)
        client = node.lambda_client()
        name = f"fn-{uuid.uuid4().hex[:6]}"
        create_function(client, name, zip_function("py_probe"))
        def environment(client):
            response = client.invoke(FunctionName=name, Payload=b"{}")
            assert response["StatusCode"] == 200 and "FunctionError" not in response
            return json.loads(response["Payload"].read())["environment"]

        seen = {environment(client) for _ in range(NODES)}
        # Once the nodes have published where the function is warm (twice a second),
        # invokes go to its idle environments, through the API node or through a worker
        # that has none of its own, before any cold start.
        time.sleep(1.5)
        for through in [client, *(n.lambda_client() for n in deployment.nodes)]:
            assert environment(through) in seen
        ecs = node.client("ecs")
        cluster = f"c-{uuid.uuid4().hex[:6]}"
        ecs.create_cluster(clusterName=cluster)
        assert eventually(lambda: len(ecs.list_container_instances(cluster=cluster)["containerInstanceArns"])
                          == NODES, timeout=15)
        assert len(ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]) == NODES
    finally:
        api.kill(signal.SIGTERM)


def test_reserved_concurrency_holds_across_the_nodes(deployment):
    """A function's reserved concurrency is the deployment's, not each node's: of six
    invocations sent at once, two through each node, two run and the rest are
    throttled as Lambda throttles; the slots are free again once they finish."""
    nodes = deployment.nodes
    clients = [node.lambda_client() for node in nodes]
    name = f"fn-{uuid.uuid4().hex[:6]}"
    create_function(clients[0], name, zip_function("py_probe"), Timeout=30)
    clients[0].put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=2)
    barrier = threading.Barrier(6)

    def one(i):
        client = clients[i % NODES]
        barrier.wait()
        try:
            return client.invoke(FunctionName=name, Payload=json.dumps({"sleep": 3}))["StatusCode"]
        except botocore.exceptions.ClientError as error:
            return error.response

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(one, range(6)))
    succeeded = [o for o in outcomes if o == 200]
    throttled = [o for o in outcomes if o != 200]
    assert 1 <= len(succeeded) <= 2 and len(throttled) >= 4, outcomes
    for error in throttled:
        assert error["Error"]["Code"] == "TooManyRequestsException", error
        assert error["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded", error

    def runs_through(client):
        try:
            return client.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200
        except botocore.exceptions.ClientError:
            return False

    for client in clients:
        assert eventually(lambda: runs_through(client), timeout=10)


def test_an_upload_started_on_one_node_is_continued_and_finished_on_others(deployment):
    """A load balancer may send each request of one upload to another node: the node
    holding it is handed the rest. Registry tokens, signed with the deployment's key,
    are good on every node."""
    nodes = deployment.nodes
    repo = f"up-{uuid.uuid4().hex[:6]}"
    nodes[0].client("ecr").create_repository(repositoryName=repo)
    ecr = nodes[2].client("ecr")
    login = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    auth = {"Authorization": f"Basic {login}"}

    def call(node, method, path, data=None, headers=None):
        request = urllib.request.Request(f"{node.endpoint}{path}", data=data, method=method,
                                         headers={**auth, **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=30, context=tls_context()) as response:
                return response.status, response.headers
        except urllib.error.HTTPError as err:
            return err.code, err.headers

    first, second = os.urandom(300_000), os.urandom(200_000)
    digest = "sha256:" + hashlib.sha256(first + second).hexdigest()
    status, headers = call(nodes[0], "POST", f"/v2/{repo}/blobs/uploads/")
    assert status == 202, status
    location = headers["Location"]
    status, headers = call(nodes[1], "PATCH", location, first,
                           {"Content-Type": "application/octet-stream", "Content-Range": f"0-{len(first) - 1}"})
    assert status == 202 and headers["Range"] == f"0-{len(first) - 1}", (status, headers)
    status, _ = call(nodes[2], "PUT", f"{location}?digest={digest}", second,
                     {"Content-Type": "application/octet-stream"})
    assert status == 201, status
    status, headers = call(nodes[1], "HEAD", f"/v2/{repo}/blobs/{digest}")
    assert status == 200 and int(headers["Content-Length"]) == len(first) + len(second)


def push_image(deployment, root):
    """The busybox image of the ECS tests, pushed with skopeo through node 0; its URI
    by the ECR host name, which every node serves from the shared registry."""
    pushed = push_web_image(deployment.nodes[0], root)
    return f"000000000000.dkr.ecr.us-east-1.amazonaws.com/{pushed.split('/', 1)[1]}"


def new_cluster(ecs):
    """A new ECS cluster, once every node has registered its instance in it."""
    cluster = f"c-{uuid.uuid4().hex[:6]}"
    ecs.create_cluster(clusterName=cluster)
    assert eventually(lambda: len(ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]) == NODES,
                      timeout=15)
    return cluster


def live_tasks(ecs, cluster, service):
    arns = ecs.list_tasks(cluster=cluster, serviceName=service)["taskArns"]
    tasks = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"] if arns else []
    return [t for t in tasks if t["lastStatus"] == "RUNNING"]


def test_tasks_reach_tasks_on_other_nodes_by_their_own_address(deployment, tmp_path):
    """awsvpc tasks get addresses from their node's subnet of the task range, and
    every node routes the others' subnets, so a task on one node reaches a task on
    another at the address DescribeTasks gives."""
    nodes = deployment.nodes
    image = push_image(deployment, tmp_path)
    ecs = nodes[0].client("ecs")
    cluster = new_cluster(ecs)
    network = {"awsvpcConfiguration": {"subnets": ["subnet-12345678"]}}
    group = f"/ecs/vpc-{uuid.uuid4().hex[:6]}"

    def run_on(zone, command):
        family = f"vpc-{uuid.uuid4().hex[:6]}"
        definition = ecs.register_task_definition(family=family, networkMode="awsvpc", containerDefinitions=[
            {"name": "app", "image": image, "memory": 32, "command": command, "stopTimeout": 2,
             "logConfiguration": {"logDriver": "awslogs", "options": {
                 "awslogs-group": group, "awslogs-region": "us-east-1", "awslogs-stream-prefix": "app",
                 "awslogs-create-group": "true"}}}])[
            "taskDefinition"]["taskDefinitionArn"]
        [task] = ecs.run_task(cluster=cluster, taskDefinition=definition, networkConfiguration=network,
                              placementConstraints=[{"type": "memberOf",
                                                     "expression": f"attribute:ecs.availability-zone == {zone}"}])["tasks"]
        return task["taskArn"]

    def described(arn):
        return ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]

    server = run_on(ZONES[0], ["httpd", "-f", "-p", "8080", "-h", "/www"])
    assert eventually(lambda: described(server)["lastStatus"] == "RUNNING", timeout=60), described(server)
    address = {d["name"]: d["value"] for d in described(server)["attachments"][0]["details"]}["privateIPv4Address"]
    # The client retries while the nodes' routes settle (each node looks every 3 s).
    # The image has busybox alone, without its applets' links (and Debian's static
    # busybox's wget crashes).
    fetch = (f"for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do "
             f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 2 {address} 8080 "
             f"| /bin/busybox grep -q nimbus && exit 0; /bin/busybox sleep 1; done; exit 1")
    client = run_on(ZONES[1], ["sh", "-c", fetch])
    assert eventually(lambda: described(client)["lastStatus"] == "STOPPED", timeout=90), described(client)
    client_task = described(client)
    client_address = {d["name"]: d["value"] for d in client_task["attachments"][0]["details"]}["privateIPv4Address"]
    assert client_address.split(".")[2] != address.split(".")[2], "each node has a subnet of its own"
    logs = nodes[1].client("logs").filter_log_events(logGroupName=group)["events"]
    assert client_task["containers"][0].get("exitCode") == 0, [e["message"] for e in logs]
    ecs.stop_task(cluster=cluster, task=server)


def test_a_lost_node_loses_no_work(deployment, tmp_path):
    """A service of six spread by zone, functions invoked through every node and
    events queued: then a node is SIGKILLed. Its tasks are recorded stopped and
    replaced on the two left, invokes keep working on them, and every event runs."""
    nodes = deployment.nodes
    image = push_image(deployment, tmp_path)
    ecs = nodes[1].client("ecs")
    cluster = new_cluster(ecs)
    instances = ecs.describe_container_instances(
        cluster=cluster, containerInstances=ecs.list_container_instances(cluster=cluster)["containerInstanceArns"])
    zones = {i["containerInstanceArn"]: next(a["value"] for a in i["attributes"] if a["name"] == "ecs.availability-zone")
             for i in instances["containerInstances"]}
    assert sorted(zones.values()) == ZONES
    definition = sleeper(ecs, image, f"svc-{uuid.uuid4().hex[:6]}")
    service = "spread"
    ecs.create_service(cluster=cluster, serviceName=service, taskDefinition=definition, desiredCount=6,
                       placementStrategy=[{"type": "spread", "field": "attribute:ecs.availability-zone"}])
    assert eventually(lambda: len(live_tasks(ecs, cluster, service)) == 6, timeout=120)
    by_zone = {}
    for task in live_tasks(ecs, cluster, service):
        by_zone.setdefault(zones[task["containerInstanceArn"]], []).append(task["taskArn"])
        assert task["availabilityZone"] == zones[task["containerInstanceArn"]]
    assert sorted(len(v) for v in by_zone.values()) == [2, 2, 2], by_zone

    callbacks = Callbacks()
    try:
        function = f"fn-{uuid.uuid4().hex[:6]}"
        clients = [node.lambda_client() for node in nodes]
        create_function(clients[0], function, zip_function("py_callback"),
                        Environment={"Variables": {"CALLBACK_URL": callbacks.url}})
        for i, client in enumerate(clients):
            response = client.invoke(FunctionName=function, Payload=json.dumps({"sync": i}))
            assert response["StatusCode"] == 200 and "FunctionError" not in response
        queued = set()
        for i in range(12):
            response = clients[i % NODES].invoke(FunctionName=function, InvocationType="Event",
                                                 Payload=json.dumps({"event": i}))
            assert response["StatusCode"] == 202
            queued.add(i)

        lost = nodes[2]
        lost.kill(signal.SIGKILL)
        lost_zone = ZONES[2]
        lost_arns = set(by_zone[lost_zone])
        killed_at = time.monotonic()

        # Invokes through the nodes left keep working, and events queued through them
        # after the loss run too.
        for i in range(12, 18):
            response = clients[i % 2].invoke(FunctionName=function, InvocationType="Event",
                                             Payload=json.dumps({"event": i}))
            assert response["StatusCode"] == 202
            queued.add(i)
        for i in range(4):
            response = clients[i % 2].invoke(FunctionName=function, Payload=json.dumps({"sync": 10 + i}))
            assert response["StatusCode"] == 200 and "FunctionError" not in response

        def lost_tasks_stopped():
            tasks = ecs.describe_tasks(cluster=cluster, tasks=list(lost_arns))["tasks"]
            return all(t["lastStatus"] == "STOPPED" for t in tasks) and tasks

        assert eventually(lost_tasks_stopped, timeout=60)
        stopped = ecs.describe_tasks(cluster=cluster, tasks=list(lost_arns))["tasks"]
        assert all("stopped/terminated" in t["stoppedReason"] for t in stopped), stopped
        assert eventually(lambda: len(live_tasks(ecs, cluster, service)) == 6, timeout=120)
        replaced_in = time.monotonic() - killed_at
        assert all(zones[t["containerInstanceArn"]] != lost_zone for t in live_tasks(ecs, cluster, service))
        [lost_instance] = [arn for arn, zone in zones.items() if zone == lost_zone]
        # Each node sees the loss at its own next read of the heartbeats.
        assert eventually(lambda: ecs.describe_container_instances(
            cluster=cluster, containerInstances=[lost_instance])["containerInstances"][0]["agentConnected"] is False,
            timeout=5)
        # The operator takes the lost machine's instance out of the cluster (its tasks
        # are recorded stopped already); it registers again when the node next starts.
        ecs.deregister_container_instance(cluster=cluster, containerInstance=lost_instance)
        assert lost_instance not in ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]

        def delivered():
            events = {p["event"].get("event") for p in callbacks.posts if "event" in p["event"]}
            return queued <= events

        assert eventually(delivered, timeout=90), sorted(
            {p["event"].get("event") for p in callbacks.posts if "event" in p["event"]})
        print(f"service back at 6 tasks {replaced_in:.1f} s after the SIGKILL")

        # Draining one of the two instances left moves its tasks to the other, new
        # ones first.
        [draining] = [arn for arn, zone in zones.items() if zone == ZONES[1]]
        ecs.update_container_instances_state(cluster=cluster, containerInstances=[draining], status="DRAINING")
        assert eventually(lambda: [zones[t["containerInstanceArn"]] for t in live_tasks(ecs, cluster, service)]
                          == [ZONES[0]] * 6, timeout=120), live_tasks(ecs, cluster, service)
    finally:
        callbacks.server.shutdown()
        # The killed node starts again on its data dir, which sweeps what it left
        # (its tasks' containers, its sandboxes' cgroups); the fixture stops it.
        deployment.start(2)
    assert eventually(lambda: lost_instance in ecs.list_container_instances(cluster=cluster)["containerInstanceArns"],
                      timeout=15)
