"""CloudWatch Logs: groups, streams, PutLogEvents' rules, reading forward and back,
filter patterns across streams, retention, and function logs read back with boto3
and `aws logs tail --follow` (aws CLI v2)."""

import os
import subprocess
import threading
import time
import uuid

import botocore.exceptions
import pytest

from conftest import LAMBDA_TRUST, create_function, eventually, invoke, zip_function


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


@pytest.fixture(scope="module")
def logs(nimbus):
    return nimbus.client("logs")


@pytest.fixture
def group(logs):
    name = f"/test/{uuid.uuid4().hex[:8]}"
    logs.create_log_group(logGroupName=name, tags={"team": "a"})
    yield name
    logs.delete_log_group(logGroupName=name)


def now_ms():
    return int(time.time() * 1000)


def test_groups_and_streams_are_created_described_and_deleted(logs, group):
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        logs.create_log_group(logGroupName=group)
    assert error_code(excinfo) == "ResourceAlreadyExistsException"
    described = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert [g["logGroupName"] for g in described] == [group]
    assert described[0]["arn"].endswith(f":log-group:{group}:*")
    assert logs.list_tags_log_group(logGroupName=group)["tags"] == {"team": "a"}
    for name in ("b-stream", "a-stream", "c-stream"):
        logs.create_log_stream(logGroupName=group, logStreamName=name)
    logs.put_log_events(logGroupName=group, logStreamName="b-stream",
                        logEvents=[{"timestamp": now_ms(), "message": "latest"}])
    by_name = logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert [s["logStreamName"] for s in by_name] == ["a-stream", "b-stream", "c-stream"]
    latest = logs.describe_log_streams(logGroupName=group, orderBy="LastEventTime", descending=True, limit=1)
    assert latest["logStreams"][0]["logStreamName"] == "b-stream"
    assert "nextToken" in latest
    logs.delete_log_stream(logGroupName=group, logStreamName="a-stream")
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        logs.put_log_events(logGroupName=group, logStreamName="a-stream",
                            logEvents=[{"timestamp": now_ms(), "message": "x"}])
    assert error_code(excinfo) == "ResourceNotFoundException"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        logs.describe_log_streams(logGroupName="/no/such/group")
    assert error_code(excinfo) == "ResourceNotFoundException"


def test_put_log_events_follows_aws_batch_rules(logs, group):
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    now = now_ms()
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=[
            {"timestamp": now, "message": "second"}, {"timestamp": now - 1000, "message": "first"}])
    assert error_code(excinfo) == "InvalidParameterException"
    assert "chronological" in excinfo.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        logs.put_log_events(logGroupName=group, logStreamName="s",
                            logEvents=[{"timestamp": now, "message": "x" * 300_000}])
    assert error_code(excinfo) == "InvalidParameterException"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=[
            {"timestamp": now - 86_400_000 - 1, "message": "a day and more"}, {"timestamp": now, "message": "now"}])
    assert "24 hours" in excinfo.value.response["Error"]["Message"]
    old = logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=[
        {"timestamp": now - 15 * 86_400_000, "message": "too old"},
        {"timestamp": now - 15 * 86_400_000 + 1000, "message": "also too old"}])
    assert old["rejectedLogEventsInfo"] == {"tooOldLogEventEndIndex": 2}
    new = logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=[
        {"timestamp": now, "message": "kept"}, {"timestamp": now + 3 * 3_600_000, "message": "too new"}])
    assert new["rejectedLogEventsInfo"] == {"tooNewLogEventStartIndex": 1}
    events = logs.get_log_events(logGroupName=group, logStreamName="s", startFromHead=True)["events"]
    assert [e["message"] for e in events] == ["kept"]


def test_get_log_events_reads_forward_and_backward(logs, group):
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    base = now_ms() - 60_000
    logs.put_log_events(logGroupName=group, logStreamName="s",
                        logEvents=[{"timestamp": base + i, "message": f"line {i}"} for i in range(25)])
    first = logs.get_log_events(logGroupName=group, logStreamName="s", startFromHead=True, limit=10)
    assert [e["message"] for e in first["events"]] == [f"line {i}" for i in range(10)]
    second = logs.get_log_events(logGroupName=group, logStreamName="s", nextToken=first["nextForwardToken"], limit=10)
    assert [e["message"] for e in second["events"]] == [f"line {i}" for i in range(10, 20)]
    tail = logs.get_log_events(logGroupName=group, logStreamName="s", limit=5)
    assert [e["message"] for e in tail["events"]] == [f"line {i}" for i in range(20, 25)]
    back = logs.get_log_events(logGroupName=group, logStreamName="s", nextToken=tail["nextBackwardToken"], limit=5)
    assert [e["message"] for e in back["events"]] == [f"line {i}" for i in range(15, 20)]
    end = logs.get_log_events(logGroupName=group, logStreamName="s", nextToken=second["nextForwardToken"])
    assert len(end["events"]) == 5
    again = logs.get_log_events(logGroupName=group, logStreamName="s", nextToken=end["nextForwardToken"])
    assert again["events"] == [] and again["nextForwardToken"] == end["nextForwardToken"]
    timed = logs.get_log_events(logGroupName=group, logStreamName="s", startTime=base + 5, endTime=base + 8,
                                startFromHead=True)
    assert [e["message"] for e in timed["events"]] == ["line 5", "line 6", "line 7"]


def test_filter_log_events_finds_exactly_the_matching_events(logs, group):
    base = now_ms() - 60_000
    lines = {
        "api": ['{"level":"error","latency":350,"path":"/a"}', "[ERROR] disk full", "GET /health 200"],
        "worker": ['{"level":"info","latency":20,"path":"/b"}', "[WARN] retrying job 7", "[ERROR] job 7 failed"],
    }
    for offset, (stream, messages) in enumerate(lines.items()):
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[
            {"timestamp": base + 10 * i + offset, "message": m} for i, m in enumerate(messages)])

    def found(pattern, **extra):
        events = []
        kwargs = {"logGroupName": group, "filterPattern": pattern, **extra}
        while True:
            page = logs.filter_log_events(**kwargs)
            events += page["events"]
            if "nextToken" not in page:
                return [(e["logStreamName"], e["message"]) for e in events]
            kwargs["nextToken"] = page["nextToken"]

    assert found("ERROR") == [("api", "[ERROR] disk full"), ("worker", "[ERROR] job 7 failed")]
    assert found("ERROR -disk") == [("worker", "[ERROR] job 7 failed")]
    assert found('"job 7"') == [("worker", "[WARN] retrying job 7"), ("worker", "[ERROR] job 7 failed")]
    assert found("?WARN ?health") == [("worker", "[WARN] retrying job 7"), ("api", "GET /health 200")]
    assert found('{ $.latency > 100 && $.level = "err*" }') == [("api", '{"level":"error","latency":350,"path":"/a"}')]
    assert found("", logStreamNames=["worker"], limit=1) == [(("worker"), m) for m in lines["worker"]]
    assert len(found("", startTime=base + 10, endTime=base + 11)) == 2
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        logs.filter_log_events(logGroupName=group, filterPattern="{ $.level = }")
    assert error_code(excinfo) == "InvalidParameterException"


def test_retention_hides_and_removes_old_events(logs, group):
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    now = now_ms()
    logs.put_log_events(logGroupName=group, logStreamName="s",
                        logEvents=[{"timestamp": now - 3 * 86_400_000, "message": "three days old"}])
    logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=[{"timestamp": now, "message": "fresh"}])
    logs.put_retention_policy(logGroupName=group, retentionInDays=1)
    assert logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]["retentionInDays"] == 1
    events = logs.filter_log_events(logGroupName=group)["events"]
    assert [e["message"] for e in events] == ["fresh"]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        logs.put_retention_policy(logGroupName=group, retentionInDays=2)
    assert error_code(excinfo) == "InvalidParameterException"


def test_a_function_logs_to_its_group_and_stream(nimbus, logs, lambda_client, unique_name):
    create_function(lambda_client, unique_name, zip_function("py_probe"))
    response, body = invoke(lambda_client, unique_name, {"x": 1})
    group = f"/aws/lambda/{unique_name}"
    assert eventually(lambda: logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"], timeout=10)
    streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert [s["logStreamName"] for s in streams] == [body["context"]["log_stream_name"]]
    request_id = response["ResponseMetadata"]["RequestId"]
    messages = [e["message"] for e in logs.filter_log_events(logGroupName=group, filterPattern=f'"{request_id}"')["events"]]
    assert any(m.startswith(f"START RequestId: {request_id}") for m in messages)
    assert any(m.startswith(f"REPORT RequestId: {request_id}") for m in messages)


AWS_V2 = "/usr/bin/aws"


@pytest.mark.skipif(not os.path.exists(AWS_V2), reason="aws CLI v2 (Debian's awscli) is not installed")
def test_aws_logs_tail_follows_a_function(nimbus, lambda_client, unique_name):
    create_function(lambda_client, unique_name, zip_function("py_probe"))
    invoke(lambda_client, unique_name, {"n": 1})
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(nimbus.credentials_file), AWS_CONFIG_FILE=os.devnull, AWS_PAGER="")
    tail = subprocess.Popen([AWS_V2, "--endpoint-url", nimbus.endpoint, "--region", "us-east-1", "--profile", "nimbus",
                             "logs", "tail", f"/aws/lambda/{unique_name}", "--follow", "--since", "10m"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    threading.Thread(target=lambda: lines.extend(tail.stdout), daemon=True).start()
    try:
        assert eventually(lambda: any("probe invoked with {'n': 1}" in line for line in lines), timeout=30), lines
        invoke(lambda_client, unique_name, {"n": 2})
        assert eventually(lambda: any("probe invoked with {'n': 2}" in line for line in lines), timeout=30), lines
        assert sum("REPORT RequestId" in line for line in lines) >= 2
    finally:
        tail.kill()
        tail.wait()


def test_a_role_without_logs_permissions_gets_no_logs(nimbus, logs, lambda_client, unique_name):
    iam = nimbus.client("iam")
    role = iam.create_role(RoleName=f"silent-{unique_name[-8:]}", AssumeRolePolicyDocument=LAMBDA_TRUST)["Role"]["Arn"]
    lambda_client.create_function(FunctionName=unique_name, Runtime="python3.12", Role=role, Handler="app.handler",
                                  Code={"ZipFile": zip_function("py_probe")})
    lambda_client.get_waiter("function_active_v2").wait(FunctionName=unique_name)
    response, _ = invoke(lambda_client, unique_name, {"x": 1}, LogType="Tail")
    assert "LogResult" in response, "the tail comes back whatever the role"
    time.sleep(1)
    assert logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{unique_name}")["logGroups"] == []
