"""SNS through boto3: a topic fanning out to two queues and a function, each with its
own filter policy and delivery format; queues and functions reached only where their
policies let SNS in; an HTTP endpoint confirming its subscription and receiving
messages whose signature verifies with the certificate nimbus serves."""

import base64
import json
import subprocess
import urllib.request
import uuid

import pytest

from conftest import Callbacks, create_function, eventually, zip_function


def queue_for(sqs, topic_arn, allow=True):
    url = sqs.create_queue(QueueName=f"fan-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    if allow:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
                "Resource": arn, "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}}}]})})
    return url, arn


def received(sqs, url, count, timeout=15):
    got = []

    def enough():
        got.extend(sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                       MessageAttributeNames=["All"]).get("Messages", []))
        return len(got) >= count
    eventually(enough, timeout=timeout)
    return got


def test_a_topic_fans_out_by_filter_policy_to_queues_and_a_function(nimbus, lambda_client, unique_name, callbacks):
    sns, sqs = nimbus.client("sns"), nimbus.client("sqs")
    topic = sns.create_topic(Name=f"orders-{uuid.uuid4().hex[:6]}", Tags=[{"Key": "team", "Value": "a"}])["TopicArn"]
    assert sns.create_topic(Name=topic.rsplit(":", 1)[1])["TopicArn"] == topic
    everything, everything_arn = queue_for(sqs, topic)
    reds, reds_arn = queue_for(sqs, topic)
    closed, closed_arn = queue_for(sqs, topic, allow=False)
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=everything_arn)
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=reds_arn, Attributes={
        "RawMessageDelivery": "true", "FilterPolicy": json.dumps({"colour": ["red"]})})
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=closed_arn)
    create_function(lambda_client, unique_name, zip_function("py_callback"),
                    Environment={"Variables": {"CALLBACK_URL": callbacks.url}})
    function_arn = lambda_client.get_function(FunctionName=unique_name)["Configuration"]["FunctionArn"]
    lambda_client.add_permission(FunctionName=unique_name, StatementId="sns", Action="lambda:InvokeFunction",
                                 Principal="sns.amazonaws.com", SourceArn=topic)
    sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint=function_arn, Attributes={
        "FilterPolicy": json.dumps({"size": [{"numeric": [">", 10]}]})})
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert sorted(s["Protocol"] for s in subscriptions) == ["lambda", "sqs", "sqs", "sqs"]
    assert sns.get_topic_attributes(TopicArn=topic)["Attributes"]["SubscriptionsConfirmed"] == "4"

    red = sns.publish(TopicArn=topic, Message="a red one", Subject="paint", MessageAttributes={
        "colour": {"DataType": "String", "StringValue": "red"}, "size": {"DataType": "Number", "StringValue": "3"}})
    blue = sns.publish(TopicArn=topic, Message=json.dumps({"big": True}), MessageAttributes={
        "colour": {"DataType": "String", "StringValue": "blue"}, "size": {"DataType": "Number", "StringValue": "30"}})

    envelopes = [json.loads(m["Body"]) for m in received(sqs, everything, 2)]
    assert sorted(e["MessageId"] for e in envelopes) == sorted([red["MessageId"], blue["MessageId"]])
    first = next(e for e in envelopes if e["MessageId"] == red["MessageId"])
    assert first["Type"] == "Notification" and first["TopicArn"] == topic and first["Subject"] == "paint"
    assert first["Message"] == "a red one" and first["MessageAttributes"]["colour"] == {"Type": "String", "Value": "red"}
    assert first["SignatureVersion"] == "1" and first["Signature"] and first["SigningCertURL"]

    [raw] = received(sqs, reds, 1)
    assert raw["Body"] == "a red one" and raw["MessageAttributes"]["colour"]["StringValue"] == "red"
    assert "Messages" not in sqs.receive_message(QueueUrl=reds, WaitTimeSeconds=1)

    [post] = callbacks.wait_for(1, timeout=30)
    [record] = post["event"]["Records"]
    assert record["EventSource"] == "aws:sns" and record["Sns"]["MessageId"] == blue["MessageId"]
    assert json.loads(record["Sns"]["Message"]) == {"big": True}
    assert record["Sns"]["MessageAttributes"]["size"] == {"Type": "Number", "Value": "30"}
    assert "SigningCertUrl" in record["Sns"] and record["EventSubscriptionArn"].startswith(topic + ":")

    # The queue whose policy does not let SNS in got nothing.
    assert "Messages" not in sqs.receive_message(QueueUrl=closed, WaitTimeSeconds=1)

    batch = sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=[
        {"Id": "one", "Message": "first"}, {"Id": "two", "Message": "second"}])
    assert sorted(s["Id"] for s in batch["Successful"]) == ["one", "two"]
    assert sorted(json.loads(m["Body"])["Message"] for m in received(sqs, everything, 2)) == ["first", "second"]

    with pytest.raises(sns.exceptions.NotFoundException):
        sns.publish(TopicArn=topic + "-missing", Message="x")
    with pytest.raises(sns.exceptions.InvalidParameterException):
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=reds_arn,
                      Attributes={"FilterPolicy": json.dumps({"colour": "red"})})
    assert sns.list_tags_for_resource(ResourceArn=topic)["Tags"] == [{"Key": "team", "Value": "a"}]
    sns.delete_topic(TopicArn=topic)
    assert topic not in [t["TopicArn"] for t in sns.list_topics()["Topics"]]


def test_undeliverable_messages_go_to_the_subscription_dead_letter_queue(nimbus):
    """A queue that does not let the topic in, and a function deleted since it was
    subscribed, refuse their deliveries: each message goes to the subscription's
    dead-letter queue (RedrivePolicy) at once, as SNS sends it."""
    sns, sqs = nimbus.client("sns"), nimbus.client("sqs")
    topic = sns.create_topic(Name=f"dlq-{uuid.uuid4().hex[:6]}")["TopicArn"]
    dlq_url, dlq_arn = queue_for(sqs, topic)
    _, closed_arn = queue_for(sqs, topic, allow=False)
    with pytest.raises(sns.exceptions.InvalidParameterException):
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=closed_arn,
                      Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": topic})})
    redrive = {"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn})}
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=closed_arn, Attributes=redrive)
    gone = f"arn:aws:lambda:us-east-1:000000000000:function:gone-{uuid.uuid4().hex[:6]}"
    sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint=gone, Attributes=redrive)

    message_id = sns.publish(TopicArn=topic, Message="nobody takes this", Subject="lost")["MessageId"]
    letters = [json.loads(m["Body"]) for m in received(sqs, dlq_url, 2)]
    assert [(letter["MessageId"], letter["Message"], letter["Subject"]) for letter in letters] == \
        [(message_id, "nobody takes this", "lost")] * 2
    assert all(letter["TopicArn"] == topic for letter in letters)


def test_an_http_endpoint_confirms_and_gets_signed_messages(nimbus, tmp_path):
    sns = nimbus.client("sns")
    topic = sns.create_topic(Name=f"hooks-{uuid.uuid4().hex[:6]}")["TopicArn"]
    endpoint = Callbacks()
    try:
        assert sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=endpoint.url)["SubscriptionArn"] == \
            "pending confirmation"
        [confirmation] = endpoint.wait_for(1, timeout=15)
        assert confirmation["Type"] == "SubscriptionConfirmation" and confirmation["TopicArn"] == topic
        with urllib.request.urlopen(confirmation["SubscribeURL"], timeout=10) as response:
            assert b"<SubscriptionArn>" in response.read()
        assert sns.get_topic_attributes(TopicArn=topic)["Attributes"]["SubscriptionsConfirmed"] == "1"

        sent = sns.publish(TopicArn=topic, Message="hello, hook", Subject="greeting")
        assert eventually(lambda: len(endpoint.posts) == 2, timeout=15)
        notification = endpoint.posts[1]
        assert notification["MessageId"] == sent["MessageId"] and notification["Message"] == "hello, hook"

        # The signature verifies with the certificate at SigningCertURL, over the fields
        # SNS signs.
        with urllib.request.urlopen(notification["SigningCertURL"], timeout=10) as response:
            (tmp_path / "cert.pem").write_bytes(response.read())
        fields = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
        (tmp_path / "signed").write_text("".join(f"{f}\n{notification[f]}\n" for f in fields))
        (tmp_path / "signature").write_bytes(base64.b64decode(notification["Signature"]))
        key = subprocess.run(["openssl", "x509", "-in", tmp_path / "cert.pem", "-pubkey", "-noout"],
                             capture_output=True, check=True).stdout
        (tmp_path / "key.pem").write_bytes(key)
        verified = subprocess.run(["openssl", "dgst", "-sha1", "-verify", tmp_path / "key.pem", "-signature",
                                   tmp_path / "signature", tmp_path / "signed"], capture_output=True, text=True)
        assert verified.returncode == 0 and "Verified OK" in verified.stdout, verified.stderr

        with urllib.request.urlopen(notification["UnsubscribeURL"], timeout=10):
            pass
        assert sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []
    finally:
        endpoint.server.shutdown()
