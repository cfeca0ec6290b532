"""What a function's sandbox lets it do, with each OCI runtime nimbus supports: the
host's files and other environments stay out of sight, and the limits hold."""

import base64
import contextlib
import hashlib
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import create_function, eventually, invoke, start_nimbus, zip_function

RUNTIMES = ["runc", "crun", "youki"]


@pytest.fixture(scope="module", params=RUNTIMES)
def sandboxed(request, tmp_path_factory):
    """A server per OCI runtime, with a secret planted in its data dir."""
    if shutil.which(request.param) is None:
        pytest.skip(f"{request.param} is not installed")
    data_dir = tmp_path_factory.mktemp(f"sandbox-{request.param}")
    (data_dir / "planted-secret").write_text("host secret")
    server = start_nimbus(data_dir, "--oci-runtime", request.param)
    try:
        yield server
    finally:
        server.kill(signal.SIGTERM)


@pytest.fixture(scope="module")
def client(sandboxed):
    return sandboxed.lambda_client()


@pytest.fixture
def function(client):
    """Creates sandbox probes, each its own function."""

    def make(memory=256, timeout=30):
        name = f"sandbox-{uuid.uuid4().hex[:10]}"
        create_function(client, name, zip_function("py_sandbox"), MemorySize=memory, Timeout=timeout)
        return name

    return make


def run(client, function_name, **event):
    return invoke(client, function_name, event, LogType="Tail")


def report(response):
    """The REPORT line's fields from a `LogType: Tail` response."""
    tail = base64.b64decode(response["LogResult"]).decode()
    line = next(line for line in tail.splitlines() if line.startswith("REPORT"))
    return dict(re.findall(r"([A-Za-z ]+): ([\d.]+)", line))


def test_runs_unprivileged_with_a_read_only_task_dir(client, function):
    _, seen = run(client, function(), action="whoami")
    assert seen["status"]["Uid"] == "993"
    assert int(seen["status"]["CapEff"], 16) == 0
    assert int(seen["status"]["CapBnd"], 16) == 0
    assert seen["status"]["NoNewPrivs"] == "1"
    assert seen["status"]["Seccomp"] == "2"
    assert seen["writable_task"] is False
    # Its own pid namespace: a handful of processes, none of the host's.
    assert seen["processes"] < 10
    # The host's home directories are not there (an interpreter installed under one
    # shows only its own directory, read-only).
    assert "home" not in seen["root"]


def test_cannot_read_the_host_data_dir_or_secrets(client, function, sandboxed):
    paths = [
        str(sandboxed.data_dir / "planted-secret"),
        str(sandboxed.credentials_file),
        "/root/.aws/credentials",
        "/etc/shadow",
        "/proc/1/root/etc/hostname",
        "/var/rapid/../../" + str(sandboxed.data_dir / "planted-secret"),
    ]
    _, seen = run(client, function(), action="read", paths=paths)
    for path, outcome in seen.items():
        assert not outcome.startswith("read:"), f"{path} was readable: {outcome}"


def test_cannot_see_another_functions_tmp(client, function):
    writer, reader = function(), function()
    secret = f"secret-{uuid.uuid4().hex}"
    _, listed = run(client, writer, action="write_tmp", name=secret, text="mine")
    assert secret in listed
    _, seen = run(client, reader, action="list_tmp")
    assert secret not in seen
    _, read = run(client, reader, action="read", paths=[f"/tmp/{secret}"])
    assert read[f"/tmp/{secret}"] == "FileNotFoundError"


def test_cannot_reach_another_environments_runtime_api(client, function):
    first, second = function(), function()
    _, other = run(client, first, action="whoami")
    if other["address"] is None:
        pytest.skip("sandboxes have no network link on this host")
    _, own = run(client, second, action="connect", host="127.0.0.1", port=9001)
    assert own == "connected"
    _, foreign = run(client, second, action="connect", host=other["address"], port=9001)
    assert foreign != "connected"


def test_a_fork_bomb_is_contained_and_the_host_stays_responsive(client, function, sandboxed):
    bomb, bystander = function(memory=2048, timeout=60), function()
    result = {}
    thread = threading.Thread(target=lambda: result.update(run(client, bomb, action="forkbomb", seconds=4)[1]))
    thread.start()
    try:
        time.sleep(2)
        # While the bomb runs, the edge and other sandboxes still answer.
        response, seen = run(client, bystander, action="whoami")
        assert "FunctionError" not in response, seen
        assert client.get_function(FunctionName=bomb)["Configuration"]["State"] == "Active"
    finally:
        thread.join(timeout=90)
    # It reached the pids limit and no further.
    assert 500 < result["peak"] <= 1024, result
    assert result["after"] <= 2, result
    response, again = run(client, bomb, action="whoami")
    assert "FunctionError" not in response, again


def test_allocating_past_memory_is_out_of_memory_and_the_next_invoke_works(client, function):
    name = function(memory=128)
    response, error = run(client, name, action="allocate", mb=400)
    assert response["FunctionError"] == "Unhandled"
    assert error["errorType"] == "Runtime.OutOfMemory", error
    response, allocated = run(client, name, action="allocate", mb=16)
    assert "FunctionError" not in response, allocated
    assert allocated == 16


def test_max_memory_used_tracks_the_allocation(client, function):
    name = function(memory=512)
    small, _ = run(client, name, action="allocate", mb=1)
    baseline = float(report(small)["Max Memory Used"])
    assert baseline < 100
    large, allocated = run(client, name, action="allocate", mb=300)
    assert allocated == 300
    used = float(report(large)["Max Memory Used"])
    assert 300 <= used <= 512, used
    assert float(report(large)["Memory Size"]) == 512


def sleepers(marker):
    """Host processes running `sleep <marker>`, whatever namespace they are in."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().split(b"\0")[:2] == [b"/bin/sleep", marker]:
                found.append(proc.name)
        except OSError:
            pass
    return found


def test_a_timeout_kills_the_processes_the_function_forked(client, function):
    name = function(timeout=3)
    marker = str(900000 + uuid.uuid4().int % 99999).encode()
    result = {}
    thread = threading.Thread(
        target=lambda: result.update(zip(("response", "body"), run(client, name, action="sleeper",
                                                                    marker=int(marker), sleep=30)))
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not sleepers(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    started = sleepers(marker)
    thread.join(timeout=60)
    assert started, "the sleeper never started"
    assert result["body"]["errorType"] == "Sandbox.Timedout", result
    deadline = time.monotonic() + 10
    while sleepers(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sleepers(marker) == []
    # The function runs again in a fresh environment.
    response, _ = run(client, name, action="whoami")
    assert "FunctionError" not in response


# --- Nothing leaks ----------------------------------------------------------------


def sandbox_processes(data_dir):
    """A server's sandbox processes, as (pid, start time) so a reused pid is not
    taken for one of them. Their links to the host go with their namespaces."""
    found = set()
    for procs in Path("/sys/fs/cgroup/pids").glob(f"{cgroup_parent(data_dir)}/*/cgroup.procs"):
        for pid in procs.read_text().split():
            with contextlib.suppress(OSError):
                found.add((pid, Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]))
    return found


def alive(processes):
    """Those of `processes` still running."""
    left = set()
    for pid, started in processes:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19] == started:
                left.add((pid, started))
    return left


def cgroup_parent(data_dir):
    sandboxes = (data_dir / "sandboxes").resolve()
    return "nimbus-" + hashlib.sha256(str(sandboxes).encode()).hexdigest()[:12]


def sandbox_cgroups(data_dir):
    """The cgroup directories of a server's sandboxes, in every hierarchy."""
    parent = cgroup_parent(data_dir)
    return {group.name for group in Path("/sys/fs/cgroup").glob(f"*/{parent}/*") if group.is_dir()} | {
        parent for _ in Path("/sys/fs/cgroup").glob(f"*/{parent}")
    }


def containers(runtime, data_dir):
    """The ids the runtime lists (youki ignores `-q` and prints its table)."""
    listed = subprocess.run([runtime, "--root", str(data_dir / "sandboxes" / "state"), "list", "-q"],
                            capture_output=True, text=True)
    rows = [line.split() for line in listed.stdout.splitlines()]
    return {row[0] for row in rows if row and row[0] != "ID"}


def processes_of(data_dir):
    """Host processes started for a server's sandboxes (runtimes and sandbox inits)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(data_dir).encode() in (proc / "cmdline").read_bytes():
                found.append(proc.name)
        except OSError:
            pass
    return found


def mounts_of(data_dir):
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(data_dir) in line]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_killed_server_leaves_nothing_after_the_next_start_and_a_stopped_one_nothing_at_all(
    fresh_nimbus, data_dir, runtime
):
    if shutil.which(runtime) is None:
        pytest.skip(f"{runtime} is not installed")
    first = fresh_nimbus("--oci-runtime", runtime)
    client = first.client("lambda")
    create_function(client, "leaky", zip_function("py_sandbox"))
    response, _ = invoke(client, "leaky", {"action": "whoami"})
    assert "FunctionError" not in response
    old_containers = containers(runtime, data_dir)
    old_cgroups = sandbox_cgroups(data_dir)
    old_processes = sandbox_processes(data_dir)
    assert old_containers and old_cgroups and old_processes

    first.kill(signal.SIGKILL)
    second = fresh_nimbus("--oci-runtime", runtime)
    assert not old_containers & containers(runtime, data_dir)
    old_sandboxes = {group for group in old_cgroups if not group.startswith("nimbus-")}
    assert not old_sandboxes & sandbox_cgroups(data_dir)
    assert eventually(lambda: not alive(old_processes))
    response, _ = invoke(second.client("lambda"), "leaky", {"action": "whoami"})
    assert "FunctionError" not in response

    new_processes = sandbox_processes(data_dir)
    second.kill(signal.SIGTERM)
    assert containers(runtime, data_dir) == set()
    assert sandbox_cgroups(data_dir) == set()
    assert eventually(lambda: not alive(new_processes))
    assert processes_of(data_dir) == []
    assert mounts_of(data_dir) == []
