"""Invoking functions: the context a handler sees, errors in AWS's shape, limits,
logs, and how environments are reused, scaled out and retired."""

import base64
import concurrent.futures
import json
import threading

import botocore.exceptions
import pytest

from conftest import create_function, invoke, zip_function


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def tail(response):
    return base64.b64decode(response["LogResult"]).decode()


def test_a_python_handler_sees_its_context_and_environment(lambda_client, unique_name):
    create_function(
        lambda_client, unique_name, zip_function("py_probe"), MemorySize=256, Timeout=7,
        Environment={"Variables": {"GREETING": "hello"}},
    )
    client_context = base64.b64encode(json.dumps({"custom": {"k": "v"}}).encode()).decode()
    response, body = invoke(lambda_client, unique_name, {"x": 1}, LogType="Tail", ClientContext=client_context)
    assert response["StatusCode"] == 200
    assert response["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in response
    context = body["context"]
    assert body["event"] == {"x": 1}
    assert context["aws_request_id"] == response["ResponseMetadata"]["RequestId"]
    assert context["function_name"] == unique_name
    assert context["function_version"] == "$LATEST"
    assert context["invoked_function_arn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{unique_name}"
    assert context["memory_limit_in_mb"] == "256"
    assert context["log_group_name"] == f"/aws/lambda/{unique_name}"
    assert "[$LATEST]" in context["log_stream_name"]
    assert 0 < context["remaining_ms"] <= 7000
    assert context["client_context"] == {"custom": {"k": "v"}}
    env = body["env"]
    assert env["_HANDLER"] == "app.handler"
    assert env["AWS_REGION"] == "us-east-1"
    assert env["AWS_EXECUTION_ENV"].startswith("AWS_Lambda_python3.")
    # GetFunction names the interpreter that runs python3.12 here.
    runtime_arn = lambda_client.get_function(FunctionName=unique_name)["Configuration"]["RuntimeVersionConfig"]["RuntimeVersionArn"]
    assert runtime_arn.startswith("arn:aws:lambda:us-east-1::runtime:nimbus:" + env["AWS_EXECUTION_ENV"].removeprefix("AWS_Lambda_") + ":")
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["GREETING"] == "hello"
    assert env["TZ"] == ":UTC"
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")

    log = tail(response)
    request_id = context["aws_request_id"]
    assert f"START RequestId: {request_id} Version: $LATEST" in log
    assert "probe invoked with {'x': 1}" in log
    assert f"END RequestId: {request_id}" in log
    assert f"REPORT RequestId: {request_id}\tDuration: " in log
    assert "Memory Size: 256 MB\tMax Memory Used: " in log
    assert "Init Duration: " in log

    warm, warm_body = invoke(lambda_client, unique_name, {"x": 2}, LogType="Tail")
    assert warm_body["environment"] == body["environment"], "the warm invocation reuses the environment"
    assert "Init Duration" not in tail(warm)


def test_function_errors_come_back_in_aws_shape_and_the_next_invoke_works(lambda_client, unique_name):
    create_function(lambda_client, unique_name, zip_function("py_errors"), Timeout=1)

    response, body = invoke(lambda_client, unique_name, {"mode": "raise"})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "CustomError"
    assert body["errorMessage"] == "something broke"
    assert any("app.py" in frame for frame in body["stackTrace"])
    assert not any("python.py" in frame for frame in body["stackTrace"])

    response, body = invoke(lambda_client, unique_name, {"mode": "exit"})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ExitError"

    response, body = invoke(lambda_client, unique_name, {"mode": "hang"}, LogType="Tail")
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in body["errorMessage"]
    assert "Task timed out after 1.00 seconds" in tail(response)

    response, body = invoke(lambda_client, unique_name, {"mode": "big"})
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Function.ResponseSizeTooLarge"

    response, body = invoke(lambda_client, unique_name, {"mode": "fine"})
    assert "FunctionError" not in response
    assert body == {"ok": True}


def test_an_init_failure_is_reported_every_time(lambda_client, unique_name):
    create_function(lambda_client, unique_name, zip_function("py_import_error"))
    for _ in range(2):
        response, body = invoke(lambda_client, unique_name)
        assert response["FunctionError"] == "Unhandled"
        assert body["errorType"] == "Runtime.ImportModuleError"
        assert "module_that_does_not_exist" in body["errorMessage"]


def test_payload_limits_and_json(lambda_client, unique_name):
    create_function(lambda_client, unique_name, zip_function("py_probe"))
    too_big = json.dumps({"data": "x" * (6 * 1024 * 1024)})
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        lambda_client.invoke(FunctionName=unique_name, Payload=too_big)
    assert error_code(excinfo) == "RequestTooLargeException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413

    async_too_big = json.dumps({"data": "x" * (1024 * 1024)})
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        lambda_client.invoke(FunctionName=unique_name, Payload=async_too_big, InvocationType="Event")
    assert error_code(excinfo) == "RequestTooLargeException"

    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        lambda_client.invoke(FunctionName=unique_name, Payload=b"{not json")
    assert error_code(excinfo) == "InvalidRequestContentException"

    dry = lambda_client.invoke(FunctionName=unique_name, InvocationType="DryRun")
    assert dry["StatusCode"] == 204


@pytest.mark.parametrize("directory", ["node_async", "node_callback"])
def test_node_handlers(lambda_client, unique_name, directory):
    create_function(lambda_client, unique_name, zip_function(directory), runtime="nodejs20.x", handler="index.handler")
    response, body = invoke(lambda_client, unique_name, {"n": 1})
    assert "FunctionError" not in response, body
    assert body["event"] == {"n": 1}
    if directory == "node_async":
        assert body["functionName"] == unique_name
        assert body["requestId"] == response["ResponseMetadata"]["RequestId"]
        assert body["remaining"] > 0
        assert body["executionEnv"].startswith("AWS_Lambda_nodejs")
        failed, error = invoke(lambda_client, unique_name, {"fail": True})
        assert failed["FunctionError"] == "Unhandled"
        assert error["errorType"] == "TypeError"
        assert error["errorMessage"] == "node failure"


def invoke_together(client, name, count, payload):
    """Starts `count` invocations at the same moment; returns their outcomes."""
    barrier = threading.Barrier(count)

    def one(_):
        barrier.wait()
        try:
            return invoke(client, name, payload)
        except botocore.exceptions.ClientError as error:
            return error

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_concurrent_invocations_scale_out_to_separate_environments(lambda_client, unique_name):
    create_function(lambda_client, unique_name, zip_function("py_probe"), Timeout=30)
    outcomes = invoke_together(lambda_client, unique_name, 20, {"sleep": 1})
    environments = {body["environment"] for _, body in outcomes}
    assert len(environments) == 20, "each concurrent invocation runs in its own environment"


def test_reserved_concurrency_throttles_the_excess(lambda_client, unique_name):
    create_function(lambda_client, unique_name, zip_function("py_probe"), Timeout=30)
    lambda_client.put_function_concurrency(FunctionName=unique_name, ReservedConcurrentExecutions=5)
    outcomes = invoke_together(lambda_client, unique_name, 20, {"sleep": 2})
    throttled = [o for o in outcomes if isinstance(o, botocore.exceptions.ClientError)]
    succeeded = [o for o in outcomes if not isinstance(o, botocore.exceptions.ClientError)]
    assert len(succeeded) >= 5
    assert len(throttled) >= 10
    for error in throttled:
        assert error.response["Error"]["Code"] == "TooManyRequestsException"
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert error.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"

    lambda_client.put_function_concurrency(FunctionName=unique_name, ReservedConcurrentExecutions=0)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        invoke(lambda_client, unique_name)
    assert error_code(excinfo) == "TooManyRequestsException"


def test_an_update_retires_warm_environments(lambda_client, unique_name):
    create_function(lambda_client, unique_name, zip_function("py_probe"), Environment={"Variables": {"GREETING": "one"}})
    _, before = invoke(lambda_client, unique_name)
    lambda_client.update_function_configuration(FunctionName=unique_name, Environment={"Variables": {"GREETING": "two"}})
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=unique_name, WaiterConfig={"Delay": 0.2})
    _, after = invoke(lambda_client, unique_name)
    assert after["env"]["GREETING"] == "two"
    assert after["environment"] != before["environment"]


def test_invoking_a_missing_function_or_version(lambda_client, unique_name):
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        invoke(lambda_client, unique_name)
    assert error_code(excinfo) == "ResourceNotFoundException"
    create_function(lambda_client, unique_name, zip_function("py_probe"))
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        invoke(lambda_client, unique_name, Qualifier="42")
    assert error_code(excinfo) == "ResourceNotFoundException"


def test_idle_environments_are_shut_down_after_the_keep_alive(fresh_nimbus):
    import time

    server = fresh_nimbus("--lambda-keep-alive", "1")
    client = server.client("lambda")
    create_function(client, "short-lived", zip_function("py_probe"))
    _, first = invoke(client, "short-lived")
    _, warm = invoke(client, "short-lived")
    assert warm["environment"] == first["environment"]
    time.sleep(3)
    _, after = invoke(client, "short-lived")
    assert after["environment"] != first["environment"], "the idle environment was shut down"
