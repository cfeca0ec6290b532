"""How a server without sandboxes behaves: with no OCI runtime it still starts and
says how to fix function execution; with `--isolation none` it runs code unsandboxed
and warns about it."""

import pytest

from conftest import create_function, invoke, zip_function


def test_without_an_oci_runtime_the_server_serves_but_invokes_name_the_fix(fresh_nimbus):
    nimbus = fresh_nimbus("--oci-runtime", "/nonexistent/runc")
    assert nimbus.client("sts").get_caller_identity()["Account"] == "000000000000"
    client = nimbus.client("lambda")
    create_function(client, "no-runtime", zip_function("py_probe"))
    with pytest.raises(client.exceptions.ServiceException) as raised:
        invoke(client, "no-runtime")
    message = raised.value.response["Error"]["Message"]
    assert "/nonexistent/runc" in message
    assert "apt-get install runc" in message
    assert "--isolation none" in message
    assert nimbus.logged("No OCI runtime")


def test_isolation_none_runs_unsandboxed_with_a_warning(fresh_nimbus):
    nimbus = fresh_nimbus("--isolation", "none")
    assert nimbus.logged("isolation is off")
    client = nimbus.client("lambda")
    create_function(client, "unsandboxed", zip_function("py_probe"))
    _, body = invoke(client, "unsandboxed", {"n": 1})
    assert body["event"] == {"n": 1}
    # The code runs from its real directory on the host, not a sandbox's /var/task.
    task_root = body["env"]["LAMBDA_TASK_ROOT"]
    assert task_root != "/var/task"
    assert task_root.startswith(str(nimbus.data_dir))
    assert body["env"]["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
