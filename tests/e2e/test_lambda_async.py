"""Event invocations: accepted at once, run from a durable queue, retried on error,
and not lost when the server is killed."""

import json
import time
import uuid

import pytest

from conftest import LAMBDA_TRUST, create_function, zip_function


def execution_role(nimbus, *statements):
    """A function's execution role that may write logs and do `statements`."""
    iam = nimbus.client("iam")
    name = f"fn-{uuid.uuid4().hex[:8]}"
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=LAMBDA_TRUST)["Role"]["Arn"]
    iam.attach_role_policy(RoleName=name, PolicyArn="arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")
    if statements:
        allow(nimbus, name, *statements)
    return name, arn


def allow(nimbus, role, *statements):
    nimbus.client("iam").put_role_policy(RoleName=role, PolicyName="destinations", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", **s} for s in statements]}))


def objects(s3, bucket, prefix, wait):
    """The keys under `prefix`, waiting up to `wait` seconds for the first."""
    deadline = time.monotonic() + wait
    while True:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        if listed or time.monotonic() > deadline:
            return [item["Key"] for item in listed]
        time.sleep(0.2)


def test_an_event_invocation_runs_in_the_background(lambda_client, unique_name, callbacks):
    create_function(lambda_client, unique_name, zip_function("py_callback"), Environment={"Variables": {"CALLBACK_URL": callbacks.url}})
    response = lambda_client.invoke(FunctionName=unique_name, InvocationType="Event", Payload=json.dumps({"n": 1}))
    assert response["StatusCode"] == 202
    request_id = response["ResponseMetadata"]["RequestId"]
    posts = callbacks.wait_for(1)
    assert posts == [{"request_id": request_id, "event": {"n": 1}}]


def test_a_failing_event_is_retried_twice(lambda_client, unique_name, callbacks):
    create_function(lambda_client, unique_name, zip_function("py_callback"), Environment={"Variables": {"CALLBACK_URL": callbacks.url}})
    response = lambda_client.invoke(FunctionName=unique_name, InvocationType="Event", Payload=json.dumps({"fail": True}))
    request_id = response["ResponseMetadata"]["RequestId"]
    posts = callbacks.wait_for(3)
    assert [post["request_id"] for post in posts] == [request_id] * 3
    time.sleep(3)
    assert len(callbacks.posts) == 3, "one attempt and two retries, no more"


def test_an_event_accepted_before_sigkill_runs_after_restart(fresh_nimbus, callbacks):
    server = fresh_nimbus()
    client = server.client("lambda")
    name = "survivor"
    create_function(
        client, name, zip_function("py_callback"), Timeout=10, Environment={"Variables": {"CALLBACK_URL": callbacks.url}}
    )
    response = client.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"pause": 3}))
    request_id = response["ResponseMetadata"]["RequestId"]
    time.sleep(0.5)
    server.kill()  # SIGKILL while the event runs: its runtime dies with the server
    assert callbacks.posts == []

    fresh_nimbus()
    posts = callbacks.wait_for(1)
    assert [post["request_id"] for post in posts] == [request_id]


def test_invoke_configs_set_retries_and_send_records_to_destinations(fresh_nimbus, unique_name, callbacks):
    # A server of its own: on the suite's shared server this test once waited over a
    # minute for a destination record, behind other tests' queued events.
    nimbus = fresh_nimbus()
    lambda_client = nimbus.lambda_client()
    s3 = nimbus.client("s3")
    bucket = f"records-{unique_name[-8:]}"
    s3.create_bucket(Bucket=bucket)
    variables = {"Variables": {"CALLBACK_URL": callbacks.url}}
    target = f"{unique_name[:50]}-dest"
    create_function(lambda_client, target, zip_function("py_callback"), Environment=variables)
    target_arn = lambda_client.get_function(FunctionName=target)["Configuration"]["FunctionArn"]
    # Records are sent as the function's execution role, which must be allowed to.
    _, role = execution_role(nimbus, {"Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/*"},
                             {"Action": "lambda:InvokeFunction", "Resource": target_arn})
    create_function(lambda_client, unique_name, zip_function("py_callback"), role=role, Environment=variables)

    with pytest.raises(lambda_client.exceptions.ClientError) as invalid:
        lambda_client.put_function_event_invoke_config(FunctionName=unique_name, MaximumRetryAttempts=5)
    assert invalid.value.response["Error"]["Code"] == "ValidationException"
    lambda_client.put_function_event_invoke_config(
        FunctionName=unique_name, MaximumRetryAttempts=1, MaximumEventAgeInSeconds=600,
        DestinationConfig={"OnFailure": {"Destination": f"arn:aws:s3:::{bucket}"},
                           "OnSuccess": {"Destination": target_arn}})
    config = lambda_client.get_function_event_invoke_config(FunctionName=unique_name)
    assert (config["MaximumRetryAttempts"], config["MaximumEventAgeInSeconds"]) == (1, 600)
    assert len(lambda_client.list_function_event_invoke_configs(FunctionName=unique_name)["FunctionEventInvokeConfigs"]) == 1

    # A failing event: one attempt and one retry, then its record lands in the bucket.
    lambda_client.invoke(FunctionName=unique_name, InvocationType="Event", Payload=json.dumps({"fail": True}))
    assert len(callbacks.wait_for(2)) == 2
    deadline = time.monotonic() + 30
    listed = []
    while not listed and time.monotonic() < deadline:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"aws/lambda/async/{unique_name}/").get("Contents", [])
        time.sleep(0.2)
    [stored] = listed
    record = json.loads(s3.get_object(Bucket=bucket, Key=stored["Key"])["Body"].read())
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["requestPayload"] == {"fail": True}
    assert record["responseContext"]["functionError"] == "Unhandled"
    time.sleep(2)
    assert len(callbacks.posts) == 2, "no more retries than configured"

    # A successful one: the destination function gets the record as its event.
    lambda_client.invoke(FunctionName=unique_name, InvocationType="Event", Payload=json.dumps({"n": 7}))
    posts = callbacks.wait_for(4)
    records = [post["event"] for post in posts if "requestContext" in post["event"]]
    assert [r["requestContext"]["condition"] for r in records] == ["Success"]
    assert records[0]["requestPayload"] == {"n": 7}
    assert records[0]["responsePayload"] == {"posted": True}

    lambda_client.delete_function_event_invoke_config(FunctionName=unique_name)
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function_event_invoke_config(FunctionName=unique_name)


def test_records_reach_only_the_destinations_the_functions_role_may_write(nimbus, lambda_client, unique_name, callbacks):
    s3 = nimbus.client("s3")
    bucket = f"records-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    role, role_arn = execution_role(nimbus)
    create_function(lambda_client, unique_name, zip_function("py_callback"), role=role_arn,
                    Environment={"Variables": {"CALLBACK_URL": callbacks.url}})
    lambda_client.put_function_event_invoke_config(
        FunctionName=unique_name, MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": f"arn:aws:s3:::{bucket}"}})
    prefix = f"aws/lambda/async/{unique_name}/"

    # The role may not put objects in the bucket: the record is not written.
    lambda_client.invoke(FunctionName=unique_name, InvocationType="Event", Payload=json.dumps({"fail": True}))
    callbacks.wait_for(1)
    assert objects(s3, bucket, prefix, wait=3) == []

    # Once it may, the next failure's record lands there.
    allow(nimbus, role, {"Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/{prefix}*"})
    lambda_client.invoke(FunctionName=unique_name, InvocationType="Event", Payload=json.dumps({"fail": True}))
    callbacks.wait_for(2)
    assert len(objects(s3, bucket, prefix, wait=30)) == 1
