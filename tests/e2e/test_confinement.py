"""How code nimbus runs is confined, seen from inside a function's sandbox and an ECS
container: Docker's seccomp allowlist (stricter for functions), no new privileges,
a pids limit, masked kernel files, and an egress policy that keeps the host's other
addresses, link-local and private ranges out of reach unless the operator opens them
with --egress-allow."""

import http.server
import random
import socket
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from conftest import create_function, eventually, host_address, invoke, zip_function
from test_ecs import push_web_image, wait

PORT = 8000


@pytest.fixture(scope="module")
def private_network():
    """A network namespace with a private address serving on PORT, linked to this
    host, whose end of the link holds a private address with a listener of its own:
    a host address and a private destination, both on 10.253.N.0/30."""
    n = random.randrange(256)
    namespace, link = f"nimbus-cf-{n}", f"cftest{n}"
    host, remote = f"10.253.{n}.1", f"10.253.{n}.2"

    def ip(*args):
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)

    ip("netns", "add", namespace)
    server = None
    try:
        ip("link", "add", link, "type", "veth", "peer", "name", "ceth0", "netns", namespace)
        ip("addr", "add", f"{host}/30", "dev", link)
        ip("link", "set", link, "up")
        ip("-n", namespace, "addr", "add", f"{remote}/30", "dev", "ceth0")
        ip("-n", namespace, "link", "set", "ceth0", "up")
        server = subprocess.Popen(["ip", "netns", "exec", namespace, "python3", "-m", "http.server",
                                   "--bind", remote, str(PORT)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        on_host = http.server.ThreadingHTTPServer((host, PORT), Ok)
        threading.Thread(target=on_host.serve_forever, daemon=True).start()
        assert eventually(lambda: reachable(remote, PORT), timeout=10), "the namespace's server is up"
        yield {"host": host, "private": remote, "cidr": f"10.253.{n}.0/30"}
        on_host.shutdown()
    finally:
        if server:
            server.kill()
            server.wait()
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", link], capture_output=True)


class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def reachable(host, port):
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def opened(network):
    """The environment that opens the test network to sandboxes and tasks."""
    return {"NIMBUS_EGRESS_ALLOW": f"{host_address()}/32,{network['cidr']}"}


# --- Functions -----------------------------------------------------------------


def probe(server, network, threads=0):
    client = server.lambda_client()
    name = f"confine-{uuid.uuid4().hex[:8]}"
    create_function(client, name, zip_function("py_confinement"), MemorySize=512, Timeout=60)
    targets = [[network["host"], PORT], [network["private"], PORT], ["169.254.169.254", 80]]
    response, seen = invoke(client, name, {"threads": threads, "targets": targets})
    assert "FunctionError" not in response, seen
    return seen


def test_a_function_runs_under_an_allowlist_without_new_privileges_or_kernel_files(fresh_nimbus,
                                                                                      private_network):
    seen = probe(fresh_nimbus(), private_network, threads=1500)
    # Calls Docker's profile withholds (some of which the earlier denylist let
    # through: personality flags, pidfd_getfd, vsock sockets) fail alike.
    calls = ("unshare", "keyctl", "mount", "ptrace", "bpf", "personality", "pidfd_getfd", "vsock")
    assert seen["syscalls"] == {name: "EPERM" for name in calls}
    assert (seen["no_new_privs"], seen["seccomp"]) == ("1", "2")
    assert "visible" not in seen["kernel_files"].values() and seen["kernel_files"]["/proc/keys"] == "masked"
    # A thread bomb stops at the sandbox's pids limit, a little under 1024.
    assert 500 < seen["threads"] < 1024


def test_a_function_reaches_nimbus_but_not_the_host_link_local_or_private_ranges(fresh_nimbus, private_network):
    seen = probe(fresh_nimbus(), private_network)
    assert seen["edge_health"] == 200
    assert set(seen["reached"].values()) - {"connected"} == set(seen["reached"].values()), seen["reached"]


def test_egress_allow_opens_what_the_operator_names(fresh_nimbus, private_network):
    seen = probe(fresh_nimbus(env=opened(private_network)), private_network)
    reached = seen["reached"]
    assert reached[f"{private_network['host']}:{PORT}"] == "connected"
    assert reached[f"{private_network['private']}:{PORT}"] == "connected"
    assert reached["169.254.169.254:80"] != "connected", "what was not named stays closed"


# --- ECS containers --------------------------------------------------------------


def run_container(server, tmp_path, script):
    """Runs `script` under busybox's sh in a bridge-mode container; its log lines
    and the container's pids limit as its cgroup holds it."""
    image = push_web_image(server, tmp_path)
    ecs = server.client("ecs")
    ecs.create_cluster()
    group = f"/ecs/confine-{uuid.uuid4().hex[:6]}"
    definition = ecs.register_task_definition(
        family=f"confine-{uuid.uuid4().hex[:6]}", networkMode="bridge",
        containerDefinitions=[{
            "name": "probe", "image": image, "memory": 64, "privileged": True,
            "command": ["sh", "-c", script + "; sleep 2"],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": group, "awslogs-region": "us-east-1", "awslogs-stream-prefix": "p",
                "awslogs-create-group": "true"}},
        }])["taskDefinition"]["taskDefinitionArn"]
    [task] = ecs.run_task(taskDefinition=definition)["tasks"]
    task_id = task["taskArn"].rsplit("/", 1)[1]
    wait(ecs, "running", task["taskArn"])
    # cgroup v1's pids hierarchy or the unified one.
    limits = [limit.read_text().strip() for parent in ("/sys/fs/cgroup/pids", "/sys/fs/cgroup")
              if (limit := Path(parent, "nimbus-tasks", f"{task_id}-probe", "pids.max")).exists()]
    wait(ecs, "stopped", task["taskArn"])
    logs = server.client("logs")
    events = logs.get_log_events(logGroupName=group, logStreamName=f"p/probe/{task_id}",
                                 startFromHead=True)["events"]
    return [event["message"] for event in events], limits


def reach(address):
    """A shell line saying whether an HTTP request to `address` is answered (busybox's
    nc; its wget crashes)."""
    return (f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {address} {PORT} | grep -q '200 OK'"
            f" && echo reached {address} || echo blocked {address}")


CONFINEMENT = "; ".join([
    "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status",
    "[ -c /proc/keys ] && echo keys masked",
    "[ -f /proc/kcore ] && echo kcore visible",
    "mount -t tmpfs none /mnt 2>&1",
])


def test_a_container_runs_under_dockers_confinement_even_when_privileged(fresh_nimbus, tmp_path, private_network):
    server = fresh_nimbus()
    lines, limits = run_container(server, tmp_path, "; ".join(
        [CONFINEMENT, reach(private_network["host"]), reach(private_network["private"])]))
    text = "\n".join(lines)
    assert "NoNewPrivs:\t1" in text and "Seccomp:\t2" in text, text
    assert "keys masked" in text and "kcore visible" not in text
    assert "mount: permission denied" in text, "mount fails with EPERM"
    assert limits == ["4096"]
    assert f"blocked {private_network['host']}" in text and f"blocked {private_network['private']}" in text, text


def test_egress_allow_opens_destinations_to_containers(fresh_nimbus, tmp_path, private_network):
    server = fresh_nimbus(env=opened(private_network))
    lines, _ = run_container(server, tmp_path, "; ".join(
        [reach(private_network["host"]), reach(private_network["private"])]))
    text = "\n".join(lines)
    assert f"reached {private_network['host']}" in text and f"reached {private_network['private']}" in text, text
