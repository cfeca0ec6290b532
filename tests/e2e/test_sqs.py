"""SQS through boto3 (json-1.0) and Debian's aws CLI v2 (the query protocol): standard
queues with long polling, FIFO order and deduplication, dead-letter queues and their
redrive, queue policies, AWS-shaped errors, and durability across a SIGKILL."""

import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid

import botocore.exceptions
import pytest

from conftest import REGION, eventually


@pytest.fixture
def sqs(nimbus):
    return nimbus.client("sqs")


def unique(prefix="q"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def attributes(sqs, url, *names):
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(names) or ["All"])["Attributes"]


def test_a_standard_queue_long_polls_and_counts_its_messages(sqs):
    url = sqs.create_queue(QueueName=unique(), Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    assert url.endswith(f"/000000000000/{url.rsplit('/', 1)[1]}")
    assert sqs.get_queue_url(QueueName=url.rsplit("/", 1)[1])["QueueUrl"] == url
    assert url in sqs.list_queues(QueueNamePrefix=url.rsplit("/", 1)[1])["QueueUrls"]

    # A long poll started before the send returns with the message.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        polled = pool.submit(lambda: sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10,
                                                         MessageAttributeNames=["All"], AttributeNames=["All"]))
        time.sleep(0.5)
        sent = sqs.send_message(QueueUrl=url, MessageBody="hello", MessageAttributes={
            "kind": {"DataType": "String", "StringValue": "greeting"},
            "count": {"DataType": "Number", "StringValue": "3"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        })
        [message] = polled.result(timeout=15)["Messages"]
    assert message["MessageId"] == sent["MessageId"] and message["Body"] == "hello"
    assert message["MD5OfBody"] == sent["MD5OfMessageBody"] == "5d41402abc4b2a76b9719d911017c592"
    assert message["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert message["MessageAttributes"]["blob"]["BinaryValue"] == b"\x00\x01"
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"
    assert int(message["Attributes"]["SentTimestamp"]) > 0

    # In flight, it is hidden; a delayed message is counted as delayed.
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
    counts = attributes(sqs, url, "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                        "ApproximateNumberOfMessagesDelayed")
    assert counts == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "1",
                      "ApproximateNumberOfMessagesDelayed": "1"}
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)

    # Visibility back to 0 makes it receivable again, counted twice.
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    [again] = sqs.receive_message(QueueUrl=url, AttributeNames=["ApproximateReceiveCount"])["Messages"]
    assert again["MessageId"] == message["MessageId"]
    assert again["Attributes"]["ApproximateReceiveCount"] == "2"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=again["ReceiptHandle"])
    assert attributes(sqs, url, "ApproximateNumberOfMessagesNotVisible")["ApproximateNumberOfMessagesNotVisible"] == "0"

    batch = sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(10)])
    assert len(batch["Successful"]) == 10 and not batch.get("Failed")
    got = []
    while len(got) < 10:
        got += sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    assert sorted(m["Body"] for m in got) == sorted(f"m{i}" for i in range(10))
    deleted = sqs.delete_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
    assert len(deleted["Successful"]) == 10
    sqs.purge_queue(QueueUrl=url)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        sqs.purge_queue(QueueUrl=url)
    assert code(excinfo) == "AWS.SimpleQueueService.PurgeQueueInProgress"
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName=url.rsplit("/", 1)[1])


def test_a_fifo_queue_keeps_each_group_in_order_under_concurrent_consumers(sqs):
    url = sqs.create_queue(QueueName=unique() + ".fifo", Attributes={
        "FifoQueue": "true", "ContentBasedDeduplication": "true", "VisibilityTimeout": "30"})["QueueUrl"]
    groups = {"a": [], "b": [], "c": []}
    for i in range(8):
        for group in groups:
            sent = sqs.send_message(QueueUrl=url, MessageBody=f"{group}-{i}", MessageGroupId=group)
            assert len(sent["SequenceNumber"]) == 20
            groups[group].append(sent["MessageId"])
    # The same body again within five minutes is a duplicate: accepted, not queued.
    duplicate = sqs.send_message(QueueUrl=url, MessageBody="a-0", MessageGroupId="a")
    assert duplicate["MessageId"] == groups["a"][0]
    explicit = sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="d", MessageDeduplicationId="once")
    assert sqs.send_message(QueueUrl=url, MessageBody="y", MessageGroupId="d",
                            MessageDeduplicationId="once")["MessageId"] == explicit["MessageId"]

    # While a group's message is in flight, nobody else gets that group.
    [head] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]
    group_of = lambda m: m["Body"].split("-")[0]
    others = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
    assert group_of(head) not in {group_of(m) for m in others}
    sqs.delete_message(QueueUrl=url, ReceiptHandle=head["ReceiptHandle"])
    order = {group: [] for group in [*groups, "d", "x"]}
    order[group_of(head)].append(head["Body"])
    lock = threading.Lock()

    def consume():
        while True:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, WaitTimeSeconds=1).get("Messages", [])
            if not messages:
                return
            with lock:
                for message in messages:
                    order[group_of(message)].append(message["Body"])
            for message in messages:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(consume) for _ in range(4)]:
            future.result(timeout=60)
    for group in groups:
        assert order[group] == [f"{group}-{i}" for i in range(8)], order[group]
    assert order["x"] == ["x"]

    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        sqs.send_message(QueueUrl=url, MessageBody="no group")
    assert code(excinfo) == "MissingParameter"


def test_a_dead_letter_queue_takes_what_failed_and_redrives_it_back(sqs):
    dlq = sqs.create_queue(QueueName=unique("dlq"))["QueueUrl"]
    dlq_arn = attributes(sqs, dlq, "QueueArn")["QueueArn"]
    source = sqs.create_queue(QueueName=unique("src"), Attributes={
        "VisibilityTimeout": "0",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})})["QueueUrl"]
    sent = sqs.send_message(QueueUrl=source, MessageBody="poison")
    for _ in range(2):
        [message] = sqs.receive_message(QueueUrl=source)["Messages"]
        assert message["MessageId"] == sent["MessageId"]
    # The third receive finds it over its count: it moves to the dead-letter queue.
    assert "Messages" not in sqs.receive_message(QueueUrl=source)
    [dead] = sqs.receive_message(QueueUrl=dlq, AttributeNames=["All"], VisibilityTimeout=0)["Messages"]
    assert dead["MessageId"] == sent["MessageId"] and dead["Body"] == "poison"
    assert dead["Attributes"]["DeadLetterQueueSourceArn"].endswith(source.rsplit("/", 1)[1])
    assert sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"] == [source]

    task = sqs.start_message_move_task(SourceArn=dlq_arn)["TaskHandle"]
    assert eventually(lambda: sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"][0]["Status"] == "COMPLETED")
    [done] = sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"]
    assert done["TaskHandle"] == task and done["ApproximateNumberOfMessagesMoved"] == 1
    [back] = sqs.receive_message(QueueUrl=source, AttributeNames=["ApproximateReceiveCount"])["Messages"]
    assert back["Body"] == "poison" and back["Attributes"]["ApproximateReceiveCount"] == "1"

    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        sqs.start_message_move_task(SourceArn=attributes(sqs, source, "QueueArn")["QueueArn"])
    assert "Dead Letter Queue" in excinfo.value.response["Error"]["Message"]


def test_errors_are_the_ones_sqs_gives(sqs):
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as excinfo:
        sqs.send_message(QueueUrl=f"{sqs.meta.endpoint_url}/000000000000/missing", MessageBody="x")
    assert code(excinfo) == "AWS.SimpleQueueService.NonExistentQueue"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    url = sqs.create_queue(QueueName=unique())["QueueUrl"]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        sqs.create_queue(QueueName=url.rsplit("/", 1)[1], Attributes={"VisibilityTimeout": "5"})
    assert code(excinfo) == "QueueAlreadyExists"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "50000"})
    assert code(excinfo) == "InvalidAttributeValue"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Colour"])
    assert code(excinfo) == "InvalidAttributeName"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        sqs.create_queue(QueueName="bad name")
    assert code(excinfo) == "InvalidParameterValue"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        sqs.send_message(QueueUrl=url, MessageBody="x" * (256 * 1024 + 1))
    assert code(excinfo) == "InvalidParameterValue"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        sqs.send_message(QueueUrl=url, MessageBody="bad \x01 char")
    assert code(excinfo) == "InvalidMessageContents"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "x"}] * 2)
    assert code(excinfo) == "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(11)])
    assert code(excinfo) == "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        sqs.delete_message(QueueUrl=url, ReceiptHandle="forged")
    assert code(excinfo) == "ReceiptHandleIsInvalid"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=11)
    assert code(excinfo) == "InvalidParameterValue"
    # One bad entry fails alone.
    mixed = sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "good", "MessageBody": "fine"}, {"Id": "bad", "MessageBody": "x", "DelaySeconds": 901}])
    assert [s["Id"] for s in mixed["Successful"]] == ["good"]
    assert mixed["Failed"][0]["Id"] == "bad" and mixed["Failed"][0]["SenderFault"] is True


def test_queue_policies_and_tags(nimbus, sqs):
    url = sqs.create_queue(QueueName=unique(), tags={"team": "orders"})["QueueUrl"]
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "orders"}
    sqs.tag_queue(QueueUrl=url, Tags={"env": "test"})
    sqs.untag_queue(QueueUrl=url, TagKeys=["team"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"env": "test"}

    iam = nimbus.client("iam")
    user = unique("user")
    arn = iam.create_user(UserName=user)["User"]["Arn"]
    key = iam.create_access_key(UserName=user)["AccessKey"]
    theirs = nimbus.client("sqs", key_id=key["AccessKeyId"], secret=key["SecretAccessKey"])
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        theirs.send_message(QueueUrl=url, MessageBody="x")
    assert code(excinfo) == "AccessDenied"
    queue_arn = attributes(sqs, url, "QueueArn")["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": arn},
                                                "Action": "sqs:SendMessage", "Resource": queue_arn}]})})
    assert eventually(lambda: _sends(theirs, url))
    with pytest.raises(botocore.exceptions.ClientError):
        theirs.receive_message(QueueUrl=url)
    sqs.add_permission(QueueUrl=url, Label="readers", AWSAccountIds=["000000000000"], Actions=["ReceiveMessage"])
    assert "readers" in attributes(sqs, url, "Policy")["Policy"]
    sqs.remove_permission(QueueUrl=url, Label="readers")
    assert "readers" not in attributes(sqs, url, "Policy")["Policy"]


def _sends(client, url):
    try:
        client.send_message(QueueUrl=url, MessageBody="allowed")
        return True
    except botocore.exceptions.ClientError:
        return False


def aws_v2(nimbus, *args):
    """Debian's aws CLI v2, whose SQS speaks the query protocol."""
    if not shutil.which("/usr/bin/aws"):
        pytest.skip("the aws CLI v2 is installed by the test command")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(nimbus.credentials_file), AWS_CONFIG_FILE=os.devnull,
               AWS_MAX_ATTEMPTS="1", AWS_PROFILE="nimbus")
    return subprocess.run(["/usr/bin/aws", "--endpoint-url", nimbus.endpoint, "--region", REGION,
                           "--output", "json", "sqs", *args], capture_output=True, text=True, env=env, timeout=60)


def test_the_aws_cli_v2_speaks_the_query_protocol(nimbus):
    name = unique("cli")
    created = aws_v2(nimbus, "create-queue", "--queue-name", name, "--attributes", "DelaySeconds=0,VisibilityTimeout=20")
    assert created.returncode == 0, created.stderr
    url = json.loads(created.stdout)["QueueUrl"]
    sent = aws_v2(nimbus, "send-message", "--queue-url", url, "--message-body", "from the cli",
                  "--message-attributes", '{"k": {"DataType": "String", "StringValue": "v"}}')
    assert sent.returncode == 0, sent.stderr
    received = aws_v2(nimbus, "receive-message", "--queue-url", url, "--attribute-names", "All",
                      "--message-attribute-names", "All", "--wait-time-seconds", "2")
    assert received.returncode == 0, received.stderr
    [message] = json.loads(received.stdout)["Messages"]
    assert message["Body"] == "from the cli" and message["MessageAttributes"]["k"]["StringValue"] == "v"
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"
    deleted = aws_v2(nimbus, "delete-message", "--queue-url", url, "--receipt-handle", message["ReceiptHandle"])
    assert deleted.returncode == 0, deleted.stderr
    got = json.loads(aws_v2(nimbus, "get-queue-attributes", "--queue-url", url, "--attribute-names", "All").stdout)
    assert got["Attributes"]["VisibilityTimeout"] == "20" and got["Attributes"]["QueueArn"].endswith(name)
    batch = aws_v2(nimbus, "send-message-batch", "--queue-url", url, "--entries",
                   json.dumps([{"Id": "a", "MessageBody": "one"}, {"Id": "b", "MessageBody": "two"}]))
    assert sorted(e["Id"] for e in json.loads(batch.stdout)["Successful"]) == ["a", "b"]
    assert name in aws_v2(nimbus, "list-queues", "--queue-name-prefix", name).stdout
    missing = aws_v2(nimbus, "get-queue-url", "--queue-name", unique("none"))
    assert missing.returncode != 0 and "NonExistentQueue" in missing.stderr


def test_messages_survive_a_sigkill_and_unfinished_ones_come_back(fresh_nimbus):
    server = fresh_nimbus()
    sqs = server.client("sqs")
    url = sqs.create_queue(QueueName=unique(), Attributes={"VisibilityTimeout": "2"})["QueueUrl"]
    for i in range(5):
        sqs.send_message(QueueUrl=url, MessageBody=f"kept-{i}")
    [taken] = sqs.receive_message(QueueUrl=url)["Messages"]
    server.kill(signal.SIGKILL)

    server = fresh_nimbus()
    sqs = server.client("sqs")
    bodies = []
    deadline = time.monotonic() + 30
    while len(bodies) < 5 and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    # Every acknowledged send is there, the one taken before the kill included once its
    # visibility timeout ran out.
    assert sorted(bodies) == [f"kept-{i}" for i in range(5)]
    assert taken["Body"] in bodies


def test_a_bucket_notifies_a_queue_of_its_uploads(nimbus, sqs):
    s3 = nimbus.client("s3")
    bucket = unique("uploads")
    s3.create_bucket(Bucket=bucket)
    url = sqs.create_queue(QueueName=unique("uploads"))["QueueUrl"]
    queue_arn = attributes(sqs, url, "QueueArn")["QueueArn"]
    configuration = {"QueueConfigurations": [{
        "QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "in/"}]}}}]}
    # Until the queue's policy lets S3 send for this bucket, the destination is refused.
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=configuration)
    assert code(excinfo) == "InvalidArgument"
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sqs:SendMessage",
            "Resource": queue_arn, "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}}}]})})
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=configuration)
    assert s3.get_bucket_notification_configuration(Bucket=bucket)["QueueConfigurations"][0]["QueueArn"] == queue_arn

    s3.put_object(Bucket=bucket, Key="in/photo one.jpg", Body=b"jpeg")
    s3.put_object(Bucket=bucket, Key="elsewhere.txt", Body=b"not wanted")
    [message] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)["Messages"]
    [record] = json.loads(message["Body"])["Records"]
    assert record["eventSource"] == "aws:s3" and record["eventName"] == "ObjectCreated:Put"
    assert record["s3"]["bucket"]["name"] == bucket and record["s3"]["object"]["key"] == "in/photo+one.jpg"
    assert record["s3"]["object"]["size"] == 4
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)


def test_a_bucket_notifies_a_topic_that_fans_out_to_a_queue(nimbus, sqs):
    """S3 -> SNS -> SQS: the topic's policy must let S3 publish for the bucket; each
    event is published with S3's subject and reaches the topic's queue."""
    s3, sns = nimbus.client("s3"), nimbus.client("sns")
    bucket = unique("fanout")
    s3.create_bucket(Bucket=bucket)
    topic = sns.create_topic(Name=unique("uploads"))["TopicArn"]
    url = sqs.create_queue(QueueName=unique("fanout"))["QueueUrl"]
    queue_arn = attributes(sqs, url, "QueueArn")["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
            "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": topic}}}]})})
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    configuration = {"TopicConfigurations": [{"TopicArn": topic, "Events": ["s3:ObjectRemoved:*"]}]}
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=configuration)
    assert code(excinfo) == "InvalidArgument"
    sns.set_topic_attributes(TopicArn=topic, AttributeName="Policy", AttributeValue=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sns:Publish",
            "Resource": topic, "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}}}]}))
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=configuration)
    [rule] = s3.get_bucket_notification_configuration(Bucket=bucket)["TopicConfigurations"]
    assert (rule["TopicArn"], rule["Events"]) == (topic, ["s3:ObjectRemoved:*"])

    s3.put_object(Bucket=bucket, Key="doomed", Body=b"x")
    s3.delete_object(Bucket=bucket, Key="doomed")
    [message] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10)["Messages"]
    envelope = json.loads(message["Body"])
    assert (envelope["TopicArn"], envelope["Subject"]) == (topic, "Amazon S3 Notification")
    [record] = json.loads(envelope["Message"])["Records"]
    assert (record["eventName"], record["s3"]["object"]["key"]) == ("ObjectRemoved:Delete", "doomed")


def test_async_invocation_records_go_to_a_queue(nimbus, sqs, lambda_client, unique_name):
    """A queue as an asynchronous invoke's destination gets the invocation record,
    sent as the function's role, which must be allowed sqs:SendMessage."""
    from conftest import LAMBDA_TRUST, create_function, zip_function
    url = sqs.create_queue(QueueName=unique("records"))["QueueUrl"]
    arn = attributes(sqs, url, "QueueArn")["QueueArn"]
    iam = nimbus.client("iam")
    role = iam.create_role(RoleName=unique("dest-role"), AssumeRolePolicyDocument=LAMBDA_TRUST)["Role"]
    iam.put_role_policy(RoleName=role["RoleName"], PolicyName="send", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": arn}]}))
    create_function(lambda_client, unique_name, zip_function("py_probe"), role=role["Arn"])
    lambda_client.put_function_event_invoke_config(FunctionName=unique_name, DestinationConfig={
        "OnSuccess": {"Destination": arn}})
    lambda_client.invoke(FunctionName=unique_name, InvocationType="Event", Payload=json.dumps({"hello": "queue"}))
    [message] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20)["Messages"]
    record = json.loads(message["Body"])
    assert record["requestContext"]["condition"] == "Success"
    assert record["requestPayload"] == {"hello": "queue"}
    assert record["responsePayload"]["event"] == {"hello": "queue"}


def test_failed_events_reach_a_dead_letter_queue_and_records_a_topic(nimbus, sqs, lambda_client, unique_name):
    """A function's DeadLetterConfig queue gets an event that failed all its attempts,
    with Lambda's RequestID, ErrorCode and ErrorMessage attributes; an OnFailure
    destination topic gets the invocation record, which its queue subscription
    carries. Both are sent as the function's role, checked when the DLQ is set."""
    from conftest import LAMBDA_TRUST, create_function, zip_function
    sns = nimbus.client("sns")
    dlq = sqs.create_queue(QueueName=unique("dlq"))["QueueUrl"]
    dlq_arn = attributes(sqs, dlq, "QueueArn")["QueueArn"]
    topic = sns.create_topic(Name=unique("failures"))["TopicArn"]
    records = sqs.create_queue(QueueName=unique("failures"))["QueueUrl"]
    records_arn = attributes(sqs, records, "QueueArn")["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=records, Attributes={"Policy": json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
            "Resource": records_arn, "Condition": {"ArnEquals": {"aws:SourceArn": topic}}}]})})
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=records_arn)
    iam = nimbus.client("iam")
    role = iam.create_role(RoleName=unique("dlq-role"), AssumeRolePolicyDocument=LAMBDA_TRUST)["Role"]

    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as refused:
        create_function(lambda_client, unique_name, zip_function("py_errors"), role=role["Arn"],
                        DeadLetterConfig={"TargetArn": dlq_arn})
    assert "SendMessage on SQS" in str(refused.value)
    iam.put_role_policy(RoleName=role["RoleName"], PolicyName="send", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": dlq_arn},
            {"Effect": "Allow", "Action": "sns:Publish", "Resource": topic}]}))
    create_function(lambda_client, unique_name, zip_function("py_errors"), role=role["Arn"],
                    DeadLetterConfig={"TargetArn": dlq_arn})
    config = lambda_client.get_function_configuration(FunctionName=unique_name)
    assert config["DeadLetterConfig"] == {"TargetArn": dlq_arn}
    lambda_client.put_function_event_invoke_config(FunctionName=unique_name, MaximumRetryAttempts=0,
                                                   DestinationConfig={"OnFailure": {"Destination": topic}})

    event = {"mode": "raise", "order": 7}
    request_id = lambda_client.invoke(FunctionName=unique_name, InvocationType="Event",
                                      Payload=json.dumps(event))["ResponseMetadata"]["RequestId"]
    [letter] = sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=20, MessageAttributeNames=["All"])["Messages"]
    assert json.loads(letter["Body"]) == event
    fields = {name: value["StringValue"] for name, value in letter["MessageAttributes"].items()}
    assert fields["RequestID"] == request_id
    assert fields["ErrorCode"] == "200"
    assert "something broke" in fields["ErrorMessage"]
    [delivered] = sqs.receive_message(QueueUrl=records, WaitTimeSeconds=20)["Messages"]
    envelope = json.loads(delivered["Body"])
    assert envelope["TopicArn"] == topic
    record = json.loads(envelope["Message"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestPayload"] == event

    # An empty target removes the dead-letter queue.
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=unique_name)
    lambda_client.update_function_configuration(FunctionName=unique_name, DeadLetterConfig={"TargetArn": ""})
    assert "DeadLetterConfig" not in lambda_client.get_function_configuration(FunctionName=unique_name)
