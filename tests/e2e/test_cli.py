"""The `nimbus` command line against a running server: `fn deploy/ls/invoke`, `ps`
and `status`, with tables for people, `--output json` for scripts, exit status 1 and
a hint on stderr when something is wrong."""

import json
import os
import subprocess
import threading
import uuid

from conftest import ROLE, eventually, nimbus_binary
from test_ecs import free_port, push_web_image, task_definition, wait


def cli(nimbus, *args, endpoint=None, data_dir=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "NIMBUS_"))}
    command = [nimbus_binary(), *args, "--endpoint", endpoint or nimbus.endpoint,
               "--data-dir", str(data_dir or nimbus.data_dir)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


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
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "NIMBUS_"))}
    follower = subprocess.Popen([nimbus_binary(), "logs", "tail", name, "--follow", "--since", "0", "--endpoint",
                                 nimbus.endpoint, "--data-dir", str(nimbus.data_dir)],
                                stdout=subprocess.PIPE, text=True, env=env)
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
    assert json.loads(cli(nimbus, "status", "--output", "json").stdout)["services"]["lambda"] == "running"


def test_errors_say_what_to_do_next(nimbus, tmp_path):
    closed = cli(nimbus, "status", endpoint=f"http://127.0.0.1:{free_port()}")
    assert closed.returncode == 1 and "is `nimbus server` running?" in closed.stderr
    keyless = cli(nimbus, "fn", "ls", data_dir=tmp_path)
    assert keyless.returncode == 1 and "set AWS_ACCESS_KEY_ID" in keyless.stderr
    usage = subprocess.run([nimbus_binary(), "fn", "invoke"], capture_output=True, text=True)
    assert usage.returncode == 2
