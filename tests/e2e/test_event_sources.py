"""Lambda event source mappings on SQS queues, through boto3: batches delivered as
Lambda's SQS event, partial batch failures returned to the queue and on to its
dead-letter queue, filter criteria, the mapping's states, and the execution role's
permission to read the queue."""

import json
import time
import uuid

import botocore.exceptions
import pytest

from conftest import LAMBDA_TRUST, create_function, eventually, zip_function


def queue_with_dlq(sqs, max_receives=2):
    dlq = sqs.create_queue(QueueName=f"dlq-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(QueueName=f"src-{uuid.uuid4().hex[:6]}", Attributes={
        "VisibilityTimeout": "2",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)})})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn, dlq


def sqs_role(nimbus, actions=("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")):
    iam = nimbus.client("iam")
    name = f"sqs-role-{uuid.uuid4().hex[:6]}"
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=LAMBDA_TRUST)["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="queues", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}]}))
    return arn


def drain(sqs, url):
    bodies = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30).get("Messages"):
        bodies += [m["Body"] for m in messages]
    return bodies


def test_a_function_consumes_a_queue_and_only_failed_records_come_back(nimbus, lambda_client, unique_name, callbacks):
    sqs = nimbus.client("sqs")
    url, arn, dlq = queue_with_dlq(sqs)
    create_function(lambda_client, unique_name, zip_function("py_sqs"), role=sqs_role(nimbus),
                    Environment={"Variables": {"CALLBACK_URL": callbacks.url}})
    mapping = lambda_client.create_event_source_mapping(
        EventSourceArn=arn, FunctionName=unique_name, BatchSize=10, FunctionResponseTypes=["ReportBatchItemFailures"])
    assert mapping["State"] == "Creating" and mapping["FunctionArn"].endswith(f":function:{unique_name}")
    uuid_ = mapping["UUID"]
    assert eventually(lambda: lambda_client.get_event_source_mapping(UUID=uuid_)["State"] == "Enabled", timeout=10)
    assert lambda_client.get_event_source_mapping(UUID=uuid_)["LastProcessingResult"] == "No records processed"
    with pytest.raises(lambda_client.exceptions.ResourceConflictException):
        lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName=unique_name)

    sqs.send_message(QueueUrl=url, MessageBody="ok-0", MessageAttributes={"k": {"DataType": "String", "StringValue": "v"}})
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": body} for i, body in
                                                 enumerate(["ok-1", "ok-2", "fail-a", "ok-3", "fail-b"])])
    seen = lambda: {r["body"] for post in callbacks.posts for r in post["records"]}
    assert eventually(lambda: seen() >= {"ok-0", "ok-1", "ok-2", "ok-3", "fail-a", "fail-b"}, timeout=30), seen()
    record = next(r for post in callbacks.posts for r in post["records"] if r["body"] == "ok-0")
    assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"] == arn and record["awsRegion"] == "us-east-1"
    assert record["messageAttributes"]["k"] == {"stringValue": "v", "stringListValues": [], "binaryListValues": [],
                                                "dataType": "String"}
    assert record["md5OfBody"] and record["receiptHandle"] and record["attributes"]["ApproximateReceiveCount"] == "1"
    assert eventually(lambda: lambda_client.get_event_source_mapping(UUID=uuid_)["LastProcessingResult"] == "OK")

    # The failed records come back after the visibility timeout, twice, then go to
    # the dead-letter queue; the others were deleted once handled.
    def dead():
        return sorted(drain(sqs, dlq))
    dead_letters = []
    assert eventually(lambda: (dead_letters.extend(dead()) or sorted(dead_letters) == ["fail-a", "fail-b"]), timeout=40), dead_letters
    attempts = [r["body"] for post in callbacks.posts for r in post["records"]]
    assert attempts.count("ok-1") == 1 and attempts.count("fail-a") == 2
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]["ApproximateNumberOfMessages"] == "0"

    # Filters: what no filter wants is deleted without an invoke.
    lambda_client.update_event_source_mapping(UUID=uuid_, FilterCriteria={"Filters": [
        {"Pattern": json.dumps({"body": {"kind": ["keep"]}})}]})
    assert eventually(lambda: lambda_client.get_event_source_mapping(UUID=uuid_)["State"] == "Enabled", timeout=10)
    before = len(callbacks.posts)
    time.sleep(1.5)
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"kind": "drop"}))
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"kind": "keep"}))
    assert eventually(lambda: any('"keep"' in r["body"] for post in callbacks.posts[before:] for r in post["records"]),
                      timeout=20)
    assert eventually(lambda: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"][
        "ApproximateNumberOfMessages"] == "0", timeout=10)
    assert not any('"drop"' in r["body"] for post in callbacks.posts for r in post["records"])

    # Disabled, it leaves the queue alone; deleted, it is gone.
    lambda_client.update_event_source_mapping(UUID=uuid_, Enabled=False)
    assert eventually(lambda: lambda_client.get_event_source_mapping(UUID=uuid_)["State"] == "Disabled", timeout=10)
    time.sleep(1.5)
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"kind": "keep", "n": 2}))
    time.sleep(3)
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]["ApproximateNumberOfMessages"] == "1"
    listed = lambda_client.list_event_source_mappings(FunctionName=unique_name)["EventSourceMappings"]
    assert [m["UUID"] for m in listed] == [uuid_]
    assert lambda_client.delete_event_source_mapping(UUID=uuid_)["State"] == "Deleting"

    def gone():
        try:
            lambda_client.get_event_source_mapping(UUID=uuid_)
            return False
        except lambda_client.exceptions.ResourceNotFoundException:
            return True
    assert eventually(gone, timeout=10)


def test_a_mapping_needs_a_role_that_may_read_the_queue(nimbus, lambda_client, unique_name):
    sqs = nimbus.client("sqs")
    url, arn, _ = queue_with_dlq(sqs)
    create_function(lambda_client, unique_name, zip_function("py_sqs"), role=sqs_role(nimbus, ["sqs:SendMessage"]))
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName=unique_name)
    assert excinfo.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "ReceiveMessage" in excinfo.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        lambda_client.create_event_source_mapping(EventSourceArn=arn.replace(arn.rsplit(":", 1)[1], "nowhere"),
                                                  FunctionName=unique_name)
    assert excinfo.value.response["Error"]["Code"] == "InvalidParameterValueException"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName=unique_name, BatchSize=100)
    assert "batch window" in excinfo.value.response["Error"]["Message"]
