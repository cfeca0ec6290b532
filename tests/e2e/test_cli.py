"""The `nimbus` command line against a running server: `fn deploy/ls/invoke`,
`queue ls/send/tail`, `ps` and `status`, with tables for people, `--output json` for
scripts, exit status 1 and a hint on stderr when something is wrong."""

import json
import os
import shutil
import signal
import subprocess
import threading
import uuid

from conftest import REPO, ROLE, eventually, nimbus_binary
from test_ecs import _get, build_web_layout, free_port, push_web_image, task_definition, wait


def cli_env(nimbus, endpoint=None, data_dir=None):
    """The environment naming the server (NIMBUS_ENDPOINT, NIMBUS_DATA_DIR), no AWS keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "NIMBUS_"))}
    env.update(NIMBUS_ENDPOINT=endpoint or nimbus.endpoint, NIMBUS_DATA_DIR=str(data_dir or nimbus.data_dir))
    return env


def cli(nimbus, *args, endpoint=None, data_dir=None):
    return subprocess.run([nimbus_binary(), *args], capture_output=True, text=True, timeout=120,
                          env=cli_env(nimbus, endpoint, data_dir))


def test_functions_are_deployed_listed_and_invoked(nimbus, tmp_path):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    app = tmp_path / name
    app.mkdir()
    (app / "app.py").write_text("def handler(event, context):\n    print('hi from the cli')\n    return {'got': event}\n")

    first = cli(nimbus, "fn", "deploy", str(app))
    assert first.returncode == 1 and "pass --role" in first.stderr
    deployed = cli(nimbus, "fn", "deploy", str(app), "--role", ROLE)
    assert deployed.returncode == 0, deployed.stderr
    assert f"{name} is ready" in deployed.stdout

    listed = cli(nimbus, "fn", "ls")
    assert listed.returncode == 0
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["NAME", "RUNTIME", "MEMORY", "LAST", "MODIFIED"]
    assert any(row.split()[:2] == [name, "python3.12"] for row in rows)
    as_json = json.loads(cli(nimbus, "fn", "ls", "--output", "json").stdout)
    assert name in [f["FunctionName"] for f in as_json["Functions"]]

    invoked = cli(nimbus, "fn", "invoke", name, "--payload", '{"a": 1}')
    assert invoked.returncode == 0, invoked.stderr
    assert json.loads(invoked.stdout) == {"got": {"a": 1}}
    assert "hi from the cli" in invoked.stderr, "the log tail goes to stderr"
    assert eventually(lambda: "hi from the cli" in cli(nimbus, "logs", "tail", name).stdout)

    # --follow prints what arrives after it started.
    follower = subprocess.Popen([nimbus_binary(), "logs", "tail", name, "--follow", "--since", "0"],
                                stdout=subprocess.PIPE, text=True, env=cli_env(nimbus))
    lines = []

    def pump():
        for line in follower.stdout:
            lines.append(line)
    threading.Thread(target=pump, daemon=True).start()
    try:
        assert cli(nimbus, "fn", "invoke", name, "--payload", '{"b": 2}').returncode == 0
        assert eventually(lambda: any("hi from the cli" in line for line in lines), timeout=20), lines
    finally:
        follower.kill()
        follower.wait()

    (app / "app.py").write_text("def handler(event, context):\n    raise ValueError('nope')\n")
    assert cli(nimbus, "fn", "deploy", str(app)).returncode == 0, "an update needs no role"
    failed = cli(nimbus, "fn", "invoke", name, "--output", "json")
    assert failed.returncode == 1 and f"the function {name} returned an error" in failed.stderr
    assert json.loads(failed.stdout)["Payload"]["errorMessage"] == "nope"

    missing = cli(nimbus, "fn", "invoke", "no-such-function")
    assert missing.returncode == 1 and "ResourceNotFoundException" in missing.stderr
    bad = cli(nimbus, "fn", "invoke", name, "--payload", "{not json")
    assert bad.returncode == 1 and "--payload is not JSON" in bad.stderr


def test_queues_are_listed_sent_to_and_tailed(nimbus):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    nimbus.client("sqs").create_queue(QueueName=name)
    assert cli(nimbus, "queue", "send", name, "first").returncode == 0
    piped = subprocess.run([nimbus_binary(), "queue", "send", name, "-"], input='{"n": 2}', capture_output=True,
                           text=True, timeout=60, env=cli_env(nimbus))
    assert piped.returncode == 0, piped.stderr
    header, *rows = cli(nimbus, "queue", "ls").stdout.splitlines()
    assert header.split() == ["NAME", "TYPE", "VISIBLE", "IN", "FLIGHT", "DELAYED"]
    assert [name, "standard", "2", "0", "0"] in [row.split() for row in rows]

    # A peek leaves the messages in the queue, visible at once.
    peeked = cli(nimbus, "queue", "tail", name, "--no-follow", "--output", "json")
    assert sorted(json.loads(line)["Body"] for line in peeked.stdout.splitlines()) == ["first", '{"n": 2}']
    assert [name, "standard", "2", "0", "0"] in [row.split() for row in cli(nimbus, "queue", "ls").stdout.splitlines()]

    # --follow --delete consumes what is there and what arrives later.
    follower = subprocess.Popen([nimbus_binary(), "queue", "tail", name, "--delete"],
                                stdout=subprocess.PIPE, text=True, env=cli_env(nimbus))
    lines = []
    threading.Thread(target=lambda: lines.extend(follower.stdout), daemon=True).start()
    try:
        assert eventually(lambda: len(lines) == 2, timeout=20), lines
        assert cli(nimbus, "queue", "send", name, "later").returncode == 0
        assert eventually(lambda: any(line.rstrip().endswith(" later") for line in lines), timeout=20), lines
        # It prints a message, then deletes it: the queue empties once it has.
        assert eventually(lambda: [name, "standard", "0", "0", "0"] in
                          [row.split() for row in cli(nimbus, "queue", "ls").stdout.splitlines()], timeout=20)
    finally:
        follower.kill()
        follower.wait()
    missing = cli(nimbus, "queue", "tail", f"{name}-none")
    assert missing.returncode == 1 and "QueueDoesNotExist" in missing.stderr


def test_ps_lists_running_tasks_and_status_the_services(nimbus, tmp_path):
    ecs = nimbus.client("ecs")
    ecs.create_cluster()
    image = push_web_image(nimbus, tmp_path)
    port = free_port()
    definition = task_definition(ecs, image, ["httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www"], port=port)
    [task] = ecs.run_task(taskDefinition=definition)["tasks"]
    wait(ecs, "running", task["taskArn"])
    task_id = task["taskArn"].rsplit("/", 1)[1]
    ps = cli(nimbus, "ps")
    assert ps.returncode == 0, ps.stderr
    [row] = [line for line in ps.stdout.splitlines() if line.startswith(task_id)]
    assert "RUNNING" in row.split() and f"{port}->{port}" in row
    tasks = json.loads(cli(nimbus, "ps", "--output", "json").stdout)["tasks"]
    assert task["taskArn"] in [t["taskArn"] for t in tasks]
    ecs.stop_task(task=task["taskArn"])

    status = cli(nimbus, "status")
    assert status.returncode == 0 and status.stdout.startswith("nimbus: healthy")
    assert "BACKEND" in status.stdout and "metadata" in status.stdout
    assert json.loads(cli(nimbus, "status", "--output", "json").stdout)["services"]["lambda"] == "running"


def test_errors_say_what_to_do_next(nimbus, tmp_path):
    closed = cli(nimbus, "status", endpoint=f"http://127.0.0.1:{free_port()}")
    assert closed.returncode == 1 and "is `nimbus server` running?" in closed.stderr
    keyless = cli(nimbus, "fn", "ls", data_dir=tmp_path)
    assert keyless.returncode == 1 and "set AWS_ACCESS_KEY_ID" in keyless.stderr
    usage = subprocess.run([nimbus_binary(), "fn", "invoke"], capture_output=True, text=True)
    assert usage.returncode == 2


def test_images_are_listed_and_run_as_one_off_tasks(nimbus, tmp_path):
    nimbus.client("ecs").create_cluster()
    image = push_web_image(nimbus, tmp_path)
    repo = image.split("/", 1)[1].split(":")[0]
    listed = cli(nimbus, "image", "ls")
    assert listed.returncode == 0, listed.stderr
    assert any(line.split()[:2] == [repo, "v1"] for line in listed.stdout.splitlines())

    ran = cli(nimbus, "run", image, "-e", "WHO=nimbus", "--", "sh", "-c", "echo hello $WHO; exit 3")
    assert ran.returncode == 1, ran.stderr
    assert "hello nimbus" in ran.stdout and "exited with code 3" in ran.stderr
    assert cli(nimbus, "run", image, "--", "true").returncode == 0
    port = free_port()
    served = subprocess.Popen([nimbus_binary(), "run", image, "-p", f"{port}:8080", "--",
                               "httpd", "-f", "-v", "-p", "8080", "-h", "/www"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(nimbus))
    try:
        assert eventually(lambda: _get(port) == "hello from a nimbus task\n", timeout=30)
    finally:
        served.send_signal(signal.SIGINT)  # Ctrl-C stops the task
        out, err = served.communicate(timeout=60)
    assert "stopping task" in err and served.returncode == 1
    bad = cli(nimbus, "run", image, "-p", "80")
    assert bad.returncode == 1 and "HOST:CONTAINER" in bad.stderr


def test_an_oci_layout_is_pushed_and_run(nimbus, tmp_path):
    nimbus.client("ecs").create_cluster()
    layout = build_web_layout(tmp_path)
    repo = f"pushed/web-{uuid.uuid4().hex[:6]}"
    pushed = cli(nimbus, "image", "push", str(layout), f"{repo}:v1")
    assert pushed.returncode == 0, pushed.stderr
    assert f"created repository {repo}" in pushed.stderr and "layer sha256:" in pushed.stderr
    host = nimbus.endpoint.removeprefix("http://")
    assert pushed.stdout.startswith(f"{host}/{repo}:v1 is sha256:")
    again = cli(nimbus, "image", "push", str(layout), f"{repo}:v2", "--source-tag", "v1", "--output", "json")
    assert again.returncode == 0 and "already there" in again.stderr
    assert json.loads(again.stdout)["tag"] == "v2"
    details = nimbus.client("ecr").describe_images(repositoryName=repo)["imageDetails"]
    assert sorted(t for d in details for t in d["imageTags"]) == ["v1", "v2"]
    assert cli(nimbus, "run", f"{host}/{repo}:v2", "--", "true").returncode == 0

    missing = cli(nimbus, "image", "push", str(tmp_path / "nowhere"), f"{repo}:v3")
    assert missing.returncode == 1 and "is not an OCI layout" in missing.stderr
    untagged = cli(nimbus, "image", "push", str(layout), repo)
    assert untagged.returncode == 1 and "REPOSITORY:TAG" in untagged.stderr


def test_docs_list_what_the_server_routes(nimbus, tmp_path):
    """docs/ is generated from the routing tables: a route added without
    regenerating it fails here."""
    checked = cli(nimbus, "docs", "--check", "--out", str(REPO / "docs"))
    assert checked.returncode == 0, checked.stderr
    assert "| GetObject | `GET /{Bucket}/{Key+}` |" in (REPO / "docs" / "s3.md").read_text()
    # A stale copy is named, and rewritten.
    docs = tmp_path / "docs"
    shutil.copytree(REPO / "docs", docs)
    (stale := docs / "sts.md").write_text(stale.read_text() + "| Extra | |\n")
    checked = cli(nimbus, "docs", "--check", "--out", str(docs))
    assert checked.returncode == 1 and "sts.md" in checked.stderr
    assert cli(nimbus, "docs", "--out", str(docs)).returncode == 0
    assert cli(nimbus, "docs", "--check", "--out", str(docs)).returncode == 0
