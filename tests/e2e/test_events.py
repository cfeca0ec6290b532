"""EventBridge through boto3 and Debian's aws CLI v2: buses, rules whose content
filters pick events for a function, a queue (through an input transformer) and a
topic, each reached as events.amazonaws.com where its policy lets the rule in, a
target's dead-letter queue for what its target refuses, and the events S3 uploads and
stopping ECS tasks send."""

import json
import os
import shutil
import subprocess
import time
import uuid

import botocore.exceptions
import pytest

from conftest import REGION, create_function, eventually, zip_function
from test_ecs import task_definition, web_image  # noqa: F401 (a fixture)


@pytest.fixture
def events(nimbus):
    return nimbus.client("events")


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def queue_open_to(sqs, source_arn, principal="events.amazonaws.com"):
    """A queue whose policy lets `principal` send for `source_arn` (none: closed)."""
    url = sqs.create_queue(QueueName=unique("ev"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    if source_arn:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": principal}, "Action": "sqs:SendMessage",
                "Resource": arn, "Condition": {"ArnEquals": {"aws:SourceArn": source_arn}}}]})})
    return url, arn


def messages(sqs, url, count, timeout=20):
    got = []
    eventually(lambda: got.extend(sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]).get("Messages", []))
        or len(got) >= count, timeout=timeout)
    return got


def test_buses_are_created_listed_and_deleted(events):
    name = unique("bus")
    arn = events.create_event_bus(Name=name)["EventBusArn"]
    assert arn == f"arn:aws:events:{REGION}:000000000000:event-bus/{name}"
    assert {"default", name} <= {b["Name"] for b in events.list_event_buses()["EventBuses"]}
    assert events.describe_event_bus(Name=name)["Arn"] == arn
    with pytest.raises(events.exceptions.ResourceAlreadyExistsException):
        events.create_event_bus(Name=name)
    events.put_rule(Name="on-bus", EventBusName=name, EventPattern=json.dumps({"source": ["x"]}))
    assert [r["Name"] for r in events.list_rules(EventBusName=name)["Rules"]] == ["on-bus"]
    events.delete_event_bus(Name=name)
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.describe_event_bus(Name=name)
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.list_rules(EventBusName=name)


def test_patterns_are_tested_and_bad_ones_refused(events):
    pattern = json.dumps({"source": ["shop"], "detail": {"$or": [{"total": [{"numeric": [">", 100]}]},
                                                                 {"vip": [True]}]}})
    event = {"id": "1", "account": "000000000000", "source": "shop", "time": "2026-12-07T00:00:00Z",
             "region": REGION, "resources": [], "detail-type": "Order", "detail": {"total": 30, "vip": True}}
    assert events.test_event_pattern(EventPattern=pattern, Event=json.dumps(event))["Result"] is True
    event["detail"]["vip"] = False
    assert events.test_event_pattern(EventPattern=pattern, Event=json.dumps(event))["Result"] is False
    with pytest.raises(events.exceptions.InvalidEventPatternException):
        events.test_event_pattern(EventPattern='{"source": "shop"}', Event=json.dumps(event))
    with pytest.raises(events.exceptions.InvalidEventPatternException):
        events.put_rule(Name=unique("bad"), EventPattern="{not json")


def test_a_rule_routes_matching_events_to_a_function_a_queue_and_a_topic(nimbus, events, lambda_client,
                                                                          unique_name, callbacks):
    sqs, sns = nimbus.client("sqs"), nimbus.client("sns")
    rule = unique("big-orders")
    rule_arn = events.put_rule(Name=rule, EventPattern=json.dumps({
        "source": ["shop.orders"], "detail-type": ["Order Placed"],
        "detail": {"total": [{"numeric": [">=", 100]}], "country": [{"anything-but": "XX"}]}}))["RuleArn"]
    assert rule_arn == f"arn:aws:events:{REGION}:000000000000:rule/{rule}"

    create_function(lambda_client, unique_name, zip_function("py_callback"),
                    Environment={"Variables": {"CALLBACK_URL": callbacks.url}})
    function_arn = lambda_client.get_function(FunctionName=unique_name)["Configuration"]["FunctionArn"]
    lambda_client.add_permission(FunctionName=unique_name, StatementId="events", Action="lambda:InvokeFunction",
                                 Principal="events.amazonaws.com", SourceArn=rule_arn)
    queue_url, queue_arn = queue_open_to(sqs, rule_arn)
    topic = sns.create_topic(Name=unique("orders"))["TopicArn"]
    sns.set_topic_attributes(TopicArn=topic, AttributeName="Policy", AttributeValue=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sns:Publish",
            "Resource": topic, "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}}]}))
    fanned_url, fanned_arn = queue_open_to(sqs, topic, principal="sns.amazonaws.com")
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=fanned_arn, Attributes={"RawMessageDelivery": "true"})
    # A queue closed to the rule refuses; its events go to the target's dead-letter queue.
    _, closed_arn = queue_open_to(sqs, None)
    dlq_url, dlq_arn = queue_open_to(sqs, rule_arn)

    put = events.put_targets(Rule=rule, Targets=[
        {"Id": "fn", "Arn": function_arn},
        {"Id": "queue", "Arn": queue_arn, "InputTransformer": {
            "InputPathsMap": {"id": "$.detail.id", "total": "$.detail.total"},
            "InputTemplate": '{"order": <id>, "summary": "order <id> totals <total>"}'}},
        {"Id": "topic", "Arn": topic, "InputPath": "$.detail"},
        {"Id": "closed", "Arn": closed_arn, "DeadLetterConfig": {"Arn": dlq_arn}},
        {"Id": "bad", "Arn": "arn:aws:kinesis:us-east-1:000000000000:stream/s"},
    ])
    assert put["FailedEntryCount"] == 1 and put["FailedEntries"][0]["TargetId"] == "bad"
    assert [t["Id"] for t in events.list_targets_by_rule(Rule=rule)["Targets"]] == ["fn", "queue", "topic", "closed"]

    def order(id_, total, country="DE"):
        return {"Source": "shop.orders", "DetailType": "Order Placed",
                "Detail": json.dumps({"id": id_, "total": total, "country": country})}
    result = events.put_events(Entries=[
        order("a-1", 250), order("a-2", 20), order("a-3", 500, country="XX"),
        {"Source": "shop.orders", "DetailType": "Order Placed", "Detail": "not json"},
        {"Source": "aws.s3", "DetailType": "Object Created", "Detail": "{}"},
    ])
    assert result["FailedEntryCount"] == 2
    assert result["Entries"][3]["ErrorCode"] == "MalformedDetail"
    assert result["Entries"][4]["ErrorCode"] == "NotAuthorizedForSourceException"
    assert all("EventId" in entry for entry in result["Entries"][:3])

    [posted] = callbacks.wait_for(1, timeout=30)
    event = posted["event"]
    assert (event["source"], event["detail-type"], event["detail"]["id"]) == ("shop.orders", "Order Placed", "a-1")
    assert event["id"] == result["Entries"][0]["EventId"] and event["account"] == "000000000000"
    [transformed] = messages(sqs, queue_url, 1)
    assert json.loads(transformed["Body"]) == {"order": "a-1", "summary": "order a-1 totals 250"}
    [published] = messages(sqs, fanned_url, 1)
    assert json.loads(published["Body"]) == {"id": "a-1", "total": 250, "country": "DE"}
    [dead] = messages(sqs, dlq_url, 1)
    assert json.loads(dead["Body"])["detail"]["id"] == "a-1"
    assert dead["MessageAttributes"]["RULE_ARN"]["StringValue"] == rule_arn
    assert dead["MessageAttributes"]["TARGET_ARN"]["StringValue"] == closed_arn

    # Disabled, the rule routes nothing; a rule with targets needs them removed first.
    events.disable_rule(Name=rule)
    assert events.describe_rule(Name=rule)["State"] == "DISABLED"
    events.put_events(Entries=[order("a-4", 900)])
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        events.delete_rule(Name=rule)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    events.remove_targets(Rule=rule, Ids=["fn", "queue", "topic", "closed"])
    events.delete_rule(Name=rule)
    assert len(callbacks.posts) == 1, callbacks.posts


def test_the_aws_cli_v2_puts_events(nimbus, events):
    if not shutil.which("/usr/bin/aws"):
        pytest.skip("the aws CLI v2 is installed by the test command")
    sqs = nimbus.client("sqs")
    rule_arn = events.put_rule(Name=unique("cli"), EventPattern=json.dumps({"source": ["cli.test"]}))["RuleArn"]
    url, arn = queue_open_to(sqs, rule_arn)
    events.put_targets(Rule=rule_arn.rsplit("/", 1)[1], Targets=[{"Id": "q", "Arn": arn}])
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(nimbus.credentials_file), AWS_CONFIG_FILE=os.devnull,
               AWS_MAX_ATTEMPTS="1", AWS_PROFILE="nimbus")
    put = subprocess.run(["/usr/bin/aws", "--endpoint-url", nimbus.endpoint, "--region", REGION, "--output", "json",
                          "events", "put-events", "--entries",
                          json.dumps([{"Source": "cli.test", "DetailType": "Ping", "Detail": '{"n": 1}'}])],
                         capture_output=True, text=True, env=env, timeout=60)
    assert put.returncode == 0, put.stderr
    assert json.loads(put.stdout)["FailedEntryCount"] == 0
    [message] = messages(sqs, url, 1)
    assert json.loads(message["Body"])["detail"] == {"n": 1}


def test_a_bucket_with_eventbridge_notifications_sends_object_events(nimbus, events):
    s3, sqs = nimbus.client("s3"), nimbus.client("sqs")
    bucket = unique("ev-bucket")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
    assert s3.get_bucket_notification_configuration(Bucket=bucket)["EventBridgeConfiguration"] == {}
    rule_arn = events.put_rule(Name=unique("uploads"), EventPattern=json.dumps({
        "source": ["aws.s3"], "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [bucket]}, "object": {"key": [{"prefix": "in/"}]}}}))["RuleArn"]
    url, arn = queue_open_to(sqs, rule_arn)
    events.put_targets(Rule=rule_arn.rsplit("/", 1)[1], Targets=[{"Id": "q", "Arn": arn}])

    s3.put_object(Bucket=bucket, Key="in/photo one.jpg", Body=b"jpeg")
    s3.put_object(Bucket=bucket, Key="elsewhere.txt", Body=b"not wanted")
    [message] = messages(sqs, url, 1)
    event = json.loads(message["Body"])
    assert (event["source"], event["detail-type"]) == ("aws.s3", "Object Created")
    assert event["resources"] == [f"arn:aws:s3:::{bucket}"]
    assert event["detail"]["object"]["key"] == "in/photo one.jpg" and event["detail"]["object"]["size"] == 4
    assert event["detail"]["reason"] == "PutObject"
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)


def test_a_stopping_task_sends_its_state_change(nimbus, events, web_image):
    ecs, sqs = nimbus.client("ecs"), nimbus.client("sqs")
    ecs.create_cluster(clusterName="default")
    definition = task_definition(ecs, web_image, ["false"])
    rule_arn = events.put_rule(Name=unique("stops"), EventPattern=json.dumps({
        "source": ["aws.ecs"], "detail-type": ["ECS Task State Change"],
        "detail": {"lastStatus": ["STOPPED"], "taskDefinitionArn": [definition]}}))["RuleArn"]
    url, arn = queue_open_to(sqs, rule_arn)
    events.put_targets(Rule=rule_arn.rsplit("/", 1)[1], Targets=[{"Id": "q", "Arn": arn}])

    [task] = ecs.run_task(taskDefinition=definition)["tasks"]
    [message] = messages(sqs, url, 1, timeout=60)
    event = json.loads(message["Body"])
    assert event["resources"] == [task["taskArn"]]
    assert (event["detail"]["lastStatus"], event["detail"]["stopCode"]) == ("STOPPED", "EssentialContainerExited")
    assert event["detail"]["containers"][0]["exitCode"] == 1


def test_a_rule_runs_an_ecs_task_as_its_role(nimbus, events, web_image):
    """An ECS target runs its task definition as the target's role, which must trust
    EventBridge and be allowed ecs:RunTask; the target's input is the tasks'
    overrides. A role without the permission sends the event to the dead-letter
    queue instead."""
    ecs, sqs, iam = nimbus.client("ecs"), nimbus.client("sqs"), nimbus.client("iam")
    ecs.create_cluster(clusterName="default")
    cluster = ecs.describe_clusters(clusters=["default"])["clusters"][0]["clusterArn"]
    definition = task_definition(ecs, web_image, ["true"])
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
    allowed, bare = unique("runner"), unique("bare")
    for name in (allowed, bare):
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)
    iam.put_role_policy(RoleName=allowed, PolicyName="run", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecs:RunTask", "Resource": definition}]}))
    rule = unique("jobs")
    rule_arn = events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["shop.jobs"]}))["RuleArn"]
    dead_url, dead_arn = queue_open_to(sqs, rule_arn)
    overrides = {"containerOverrides": [{"name": "web", "environment": [{"name": "FROM", "value": "rule"}]}]}
    failed = events.put_targets(Rule=rule, Targets=[
        {"Id": "run", "Arn": cluster, "RoleArn": f"arn:aws:iam::000000000000:role/{allowed}",
         "Input": json.dumps(overrides), "EcsParameters": {"TaskDefinitionArn": definition, "TaskCount": 1,
                                                           "LaunchType": "EC2"}},
        {"Id": "refused", "Arn": cluster, "RoleArn": f"arn:aws:iam::000000000000:role/{bare}",
         "EcsParameters": {"TaskDefinitionArn": definition}, "DeadLetterConfig": {"Arn": dead_arn}},
    ])
    assert failed["FailedEntryCount"] == 0, failed
    bad = events.put_targets(Rule=rule, Targets=[{"Id": "norole", "Arn": cluster,
                                                  "EcsParameters": {"TaskDefinitionArn": definition}}])
    assert bad["FailedEntryCount"] == 1 and "RoleArn" in bad["FailedEntries"][0]["ErrorMessage"]

    events.put_events(Entries=[{"Source": "shop.jobs", "DetailType": "Job", "Detail": "{}"}])
    started_by = f"events-rule/{rule}"
    tasks = []
    eventually(lambda: tasks.extend(ecs.list_tasks(cluster="default", startedBy=started_by, desiredStatus="STOPPED")
                                    ["taskArns"] + ecs.list_tasks(cluster="default", startedBy=started_by)["taskArns"])
               or tasks, timeout=60)
    [task] = ecs.describe_tasks(cluster="default", tasks=tasks[:1])["tasks"]
    assert (task["taskDefinitionArn"], task["startedBy"]) == (definition, started_by)
    assert task["overrides"]["containerOverrides"] == overrides["containerOverrides"]
    [dead] = messages(sqs, dead_url, 1, timeout=30)
    assert dead["MessageAttributes"]["ERROR_CODE"]["StringValue"]
    assert json.loads(dead["Body"])["source"] == "shop.jobs"


def test_a_bus_policy_grants_and_denies_putting_events(nimbus, events):
    """PutPermission writes the bus's policy (DescribeEventBus returns it), which
    PutEvents is judged by beside the caller's own policies: a Deny in it refuses a
    caller its own policy allows."""
    bus = unique("shared")
    bus_arn = events.create_event_bus(Name=bus)["EventBusArn"]
    events.put_permission(EventBusName=bus, Action="events:PutEvents", Principal="111122223333",
                          StatementId="partner")
    [statement] = json.loads(events.describe_event_bus(Name=bus)["Policy"])["Statement"]
    assert (statement["Sid"], statement["Principal"], statement["Resource"]) == (
        "partner", {"AWS": "arn:aws:iam::111122223333:root"}, bus_arn)
    events.remove_permission(EventBusName=bus, StatementId="partner")
    assert "Policy" not in events.describe_event_bus(Name=bus)
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.remove_permission(EventBusName=bus, StatementId="partner")
    with pytest.raises(botocore.exceptions.ClientError):
        events.put_permission(EventBusName=bus, Action="events:PutEvents", Principal="bob", StatementId="x")

    iam = nimbus.client("iam")
    user = unique("sender")
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="put", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "events:PutEvents", "Resource": "*"}]}))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    sender = nimbus.session().client("events", endpoint_url=nimbus.endpoint, region_name=REGION,
                                     aws_access_key_id=key["AccessKeyId"],
                                     aws_secret_access_key=key["SecretAccessKey"])
    entry = {"Source": "shop.x", "DetailType": "X", "Detail": "{}", "EventBusName": bus}
    assert sender.put_events(Entries=[entry])["FailedEntryCount"] == 0
    events.put_permission(EventBusName=bus, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "no-sender", "Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::000000000000:user/{user}"},
        "Action": "events:PutEvents", "Resource": bus_arn}]}))
    with pytest.raises(botocore.exceptions.ClientError) as denied:
        sender.put_events(Entries=[entry])
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    events.remove_permission(EventBusName=bus, RemoveAllPermissions=True)
    assert sender.put_events(Entries=[entry])["FailedEntryCount"] == 0
    events.delete_event_bus(Name=bus)


def test_an_archive_keeps_matching_events_and_a_replay_sends_them_again(nimbus, events):
    sqs = nimbus.client("sqs")
    bus = unique("orders")
    bus_arn = events.create_event_bus(Name=bus)["EventBusArn"]
    rule = unique("all")
    rule_arn = events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps({"source": ["shop"]}))["RuleArn"]
    url, arn = queue_open_to(sqs, rule_arn)
    events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
    archive = unique("kept")
    created = events.create_archive(ArchiveName=archive, EventSourceArn=bus_arn, RetentionDays=1,
                                    EventPattern=json.dumps({"detail-type": ["Order Placed"]}))
    assert created["State"] == "ENABLED"
    with pytest.raises(events.exceptions.ResourceAlreadyExistsException):
        events.create_archive(ArchiveName=archive, EventSourceArn=bus_arn)

    start = time.time() - 1
    entries = [{"Source": "shop", "DetailType": kind, "Detail": json.dumps({"n": n}), "EventBusName": bus}
               for n, kind in enumerate(["Order Placed", "Order Shipped", "Order Placed"])]
    assert events.put_events(Entries=entries)["FailedEntryCount"] == 0
    described = events.describe_archive(ArchiveName=archive)
    assert (described["EventCount"], described["EventSourceArn"], described["RetentionDays"]) == (2, bus_arn, 1)
    assert [a["ArchiveName"] for a in events.list_archives(EventSourceArn=bus_arn)["Archives"]] == [archive]
    assert len(messages(sqs, url, 3)) == 3

    replay = unique("again")
    # Timestamps travel in whole seconds: the window ends a second after the events.
    time.sleep(1.5)
    with pytest.raises(botocore.exceptions.ClientError):
        events.start_replay(ReplayName=replay, EventSourceArn=created["ArchiveArn"], EventStartTime=start,
                            EventEndTime=time.time(), Destination={"Arn": events.describe_event_bus()["Arn"]})
    started = events.start_replay(ReplayName=replay, EventSourceArn=created["ArchiveArn"], EventStartTime=start,
                                  EventEndTime=time.time(), Destination={"Arn": bus_arn, "FilterArns": [rule_arn]})
    assert started["State"] == "STARTING"
    eventually(lambda: events.describe_replay(ReplayName=replay)["State"] == "COMPLETED", timeout=30)
    replayed = [json.loads(m["Body"]) for m in messages(sqs, url, 2)]
    assert sorted(e["detail"]["n"] for e in replayed) == [0, 2]
    assert {e["replay-name"] for e in replayed} == {replay}
    # Replayed events are not archived again.
    assert events.describe_archive(ArchiveName=archive)["EventCount"] == 2
    assert events.describe_replay(ReplayName=replay)["EventLastReplayedTime"]
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        events.cancel_replay(ReplayName=replay)
    assert refused.value.response["Error"]["Code"] == "IllegalStatusException"
    assert replay in [r["ReplayName"] for r in events.list_replays(State="COMPLETED")["Replays"]]
    events.delete_archive(ArchiveName=archive)
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.describe_archive(ArchiveName=archive)
