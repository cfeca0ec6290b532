"""EventBridge Scheduler: schedules and groups through boto3 and the aws CLI, firing
Lambda functions on rate, cron and at expressions, once per due time, across a
restart, with retries and dead letters, each delivered as the schedule's role."""

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import botocore.exceptions
import pytest

from conftest import ROLE, create_function, eventually, zip_function

ACCOUNT = "000000000000"
SCHEDULER_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "scheduler.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
SCHEDULER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/scheduler-role"


def schedule_role(server, name, trust=SCHEDULER_TRUST, *statements):
    """A role for schedules' targets, allowed `statements`; its ARN."""
    iam = server.client("iam")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    if statements:
        iam.put_role_policy(RoleName=name, PolicyName="targets", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", **s} for s in statements]}))
    return arn


def ensure_scheduler_role(server):
    """SCHEDULER_ROLE: Scheduler may assume it to invoke functions and write dead letters."""
    schedule_role(server, "scheduler-role", SCHEDULER_TRUST,
                  {"Action": "lambda:InvokeFunction", "Resource": "*"}, {"Action": "s3:PutObject", "Resource": "*"})


def function_arn(name):
    return f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}"


def target(name, **extra):
    return {"Arn": function_arn(name), "RoleArn": SCHEDULER_ROLE, **extra}


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


@pytest.fixture(scope="module")
def scheduler(nimbus):
    ensure_scheduler_role(nimbus)
    return nimbus.client("scheduler")


def test_schedules_are_created_read_listed_updated_and_deleted(scheduler):
    name = f"crud-{uuid.uuid4().hex[:8]}"
    arn = scheduler.create_schedule(
        Name=name,
        ScheduleExpression="cron(15 10 ? * MON-FRI *)",
        ScheduleExpressionTimezone="Europe/Berlin",
        FlexibleTimeWindow={"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15},
        Description="weekday mornings",
        Target=target("nowhere", Input='{"k": 1}'),
    )["ScheduleArn"]
    assert arn == f"arn:aws:scheduler:us-east-1:{ACCOUNT}:schedule/default/{name}"

    got = scheduler.get_schedule(Name=name)
    assert got["Arn"] == arn
    assert got["GroupName"] == "default"
    assert got["State"] == "ENABLED"
    assert got["ScheduleExpressionTimezone"] == "Europe/Berlin"
    assert got["FlexibleTimeWindow"] == {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15}
    assert got["Target"]["Input"] == '{"k": 1}'
    assert got["Target"]["RetryPolicy"] == {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}
    assert isinstance(got["CreationDate"], datetime)

    scheduler.update_schedule(
        Name=name, ScheduleExpression="rate(7 days)", FlexibleTimeWindow={"Mode": "OFF"},
        State="DISABLED", Target=target("nowhere"),
    )
    got = scheduler.get_schedule(Name=name)
    assert (got["ScheduleExpression"], got["State"]) == ("rate(7 days)", "DISABLED")
    assert "Description" not in got, "an update replaces the whole schedule"

    listed = scheduler.list_schedules(NamePrefix=name)["Schedules"]
    assert [(s["Name"], s["State"], s["Target"]["Arn"]) for s in listed] == [(name, "DISABLED", function_arn("nowhere"))]
    assert scheduler.list_schedules(NamePrefix=name, State="ENABLED")["Schedules"] == []

    scheduler.delete_schedule(Name=name)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        scheduler.get_schedule(Name=name)
    assert error_code(excinfo) == "ResourceNotFoundException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_listing_pages_through_every_schedule(scheduler):
    prefix = f"page-{uuid.uuid4().hex[:6]}"
    for i in range(5):
        scheduler.create_schedule(
            Name=f"{prefix}-{i}", ScheduleExpression="rate(1 day)", FlexibleTimeWindow={"Mode": "OFF"},
            State="DISABLED", Target=target("nowhere"),
        )
    pages = scheduler.get_paginator("list_schedules").paginate(NamePrefix=prefix, PaginationConfig={"PageSize": 2})
    sizes = [len(page["Schedules"]) for page in pages]
    assert sizes == [2, 2, 1]
    for i in range(5):
        scheduler.delete_schedule(Name=f"{prefix}-{i}")


def test_groups_hold_schedules_and_tags_and_take_them_when_deleted(scheduler):
    group = f"group-{uuid.uuid4().hex[:8]}"
    group_arn = scheduler.create_schedule_group(Name=group, Tags=[{"Key": "team", "Value": "a"}])["ScheduleGroupArn"]
    assert group_arn == f"arn:aws:scheduler:us-east-1:{ACCOUNT}:schedule-group/{group}"
    assert scheduler.get_schedule_group(Name=group)["State"] == "ACTIVE"
    assert group in [g["Name"] for g in scheduler.list_schedule_groups(NamePrefix=group)["ScheduleGroups"]]

    scheduler.tag_resource(ResourceArn=group_arn, Tags=[{"Key": "env", "Value": "test"}])
    scheduler.untag_resource(ResourceArn=group_arn, TagKeys=["team"])
    assert scheduler.list_tags_for_resource(ResourceArn=group_arn)["Tags"] == [{"Key": "env", "Value": "test"}]

    scheduler.create_schedule(
        Name="inside", GroupName=group, ScheduleExpression="rate(1 hour)", FlexibleTimeWindow={"Mode": "OFF"},
        Target=target("nowhere"),
    )
    assert scheduler.get_schedule(Name="inside", GroupName=group)["GroupName"] == group
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        scheduler.get_schedule(Name="inside")
    assert error_code(excinfo) == "ResourceNotFoundException", "a schedule lives in its own group"

    scheduler.delete_schedule_group(Name=group)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        scheduler.get_schedule(Name="inside", GroupName=group)
    assert error_code(excinfo) == "ResourceNotFoundException"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        scheduler.create_schedule(
            Name="orphan", GroupName=group, ScheduleExpression="rate(1 hour)", FlexibleTimeWindow={"Mode": "OFF"},
            Target=target("nowhere"),
        )
    assert error_code(excinfo) == "ResourceNotFoundException"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        scheduler.delete_schedule_group(Name="default")
    assert error_code(excinfo) == "ValidationException"


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"ScheduleExpression": "rate(5 seconds)"}, "unit"),
        ({"ScheduleExpression": "cron(0 12 * * * *)"}, "'?'"),
        ({"ScheduleExpression": "cron(0 12 * * ?)"}, "six fields"),
        ({"ScheduleExpression": "every day"}, "Invalid Schedule Expression"),
        ({"ScheduleExpression": "at(next tuesday)"}, "at(yyyy-mm-ddThh:mm:ss)"),
        ({"ScheduleExpressionTimezone": "Mars/Olympus"}, "time zone"),
        ({"FlexibleTimeWindow": {"Mode": "FLEXIBLE"}}, "MaximumWindowInMinutes"),
        ({"Target": {"Arn": "arn:aws:kinesis:us-east-1:000000000000:stream/s", "RoleArn": ROLE}}, "Lambda function, SQS queue or SNS topic"),
        ({"Target": {"Arn": function_arn("f"), "RoleArn": "admin"}}, "RoleArn"),
        ({"Target": {"Arn": function_arn("f"), "RoleArn": ROLE, "RetryPolicy": {"MaximumRetryAttempts": 186}}}, "MaximumRetryAttempts"),
        ({"Target": {"Arn": function_arn("f"), "RoleArn": ROLE, "DeadLetterConfig": {"Arn": "arn:aws:sns:us-east-1:000000000000:t"}}}, "SQS queue"),
        ({"EndDate": datetime(2001, 1, 1, tzinfo=timezone.utc)}, "EndDate"),
    ],
)
def test_bad_schedules_get_validation_errors_naming_the_problem(scheduler, changes, complaint):
    request = {
        "Name": f"bad-{uuid.uuid4().hex[:8]}",
        "ScheduleExpression": "rate(1 hour)",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": target("f"),
        **changes,
    }
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        scheduler.create_schedule(**request)
    assert error_code(excinfo) == "ValidationException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert complaint in excinfo.value.response["Error"]["Message"]


def test_a_second_schedule_of_the_same_name_conflicts(scheduler):
    request = {"Name": f"twice-{uuid.uuid4().hex[:8]}", "ScheduleExpression": "rate(1 hour)",
               "FlexibleTimeWindow": {"Mode": "OFF"}, "State": "DISABLED", "Target": target("f")}
    scheduler.create_schedule(**request)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        scheduler.create_schedule(**request)
    assert error_code(excinfo) == "ConflictException"
    scheduler.delete_schedule(Name=request["Name"])


def test_the_aws_cli_manages_schedules(nimbus):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    created = nimbus.aws(
        "scheduler", "create-schedule", "--name", name, "--schedule-expression", "rate(2 hours)",
        "--flexible-time-window", "Mode=OFF", "--state", "DISABLED",
        "--target", f"Arn={function_arn('f')},RoleArn={ROLE}", "--profile", "nimbus", check=True,
    )
    assert json.loads(created.stdout)["ScheduleArn"].endswith(f"schedule/default/{name}")
    listed = json.loads(nimbus.aws("scheduler", "list-schedules", "--name-prefix", name, "--profile", "nimbus", check=True).stdout)
    assert [s["Name"] for s in listed["Schedules"]] == [name]
    nimbus.aws("scheduler", "delete-schedule", "--name", name, "--profile", "nimbus", check=True)


def test_a_one_time_schedule_fires_once_in_its_time_zone_then_deletes_itself(scheduler, lambda_client, unique_name, callbacks):
    create_function(lambda_client, unique_name, zip_function("py_callback"), Environment={"Variables": {"CALLBACK_URL": callbacks.url}})
    # Tokyo keeps no daylight saving time: UTC+9 all year.
    when = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=3)
    tokyo = (when + timedelta(hours=9)).strftime("%Y-%m-%dT%H:%M:%S")
    name = f"once-{uuid.uuid4().hex[:8]}"
    scheduler.create_schedule(
        Name=name, ScheduleExpression=f"at({tokyo})", ScheduleExpressionTimezone="Asia/Tokyo",
        FlexibleTimeWindow={"Mode": "OFF"}, ActionAfterCompletion="DELETE",
        Target=target(unique_name, Input=json.dumps({
            "time": "<aws.scheduler.scheduled-time>", "schedule": "<aws.scheduler.schedule-arn>",
            "attempt": "<aws.scheduler.attempt-number>",
        })),
    )
    posts = callbacks.wait_for(1, timeout=30)
    arrived = datetime.now(timezone.utc)
    assert len(posts) == 1
    assert posts[0]["event"] == {
        "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "schedule": f"arn:aws:scheduler:us-east-1:{ACCOUNT}:schedule/default/{name}",
        "attempt": "1",
    }
    assert arrived >= when

    def gone():
        try:
            scheduler.get_schedule(Name=name)
            return False
        except botocore.exceptions.ClientError as err:
            return err.response["Error"]["Code"] == "ResourceNotFoundException"

    assert eventually(gone)
    time.sleep(2)
    assert len(callbacks.posts) == 1


def test_a_disabled_schedule_fires_only_once_enabled(scheduler, lambda_client, unique_name, callbacks):
    create_function(lambda_client, unique_name, zip_function("py_callback"), Environment={"Variables": {"CALLBACK_URL": callbacks.url}})
    name = f"later-{uuid.uuid4().hex[:8]}"
    request = {"Name": name, "ScheduleExpression": "rate(1 hour)", "FlexibleTimeWindow": {"Mode": "OFF"},
               "Target": target(unique_name, Input='{"on": true}')}
    scheduler.create_schedule(State="DISABLED", **request)
    time.sleep(2)
    assert callbacks.posts == []
    scheduler.update_schedule(State="ENABLED", **request)
    assert [post["event"] for post in callbacks.wait_for(1, timeout=30)] == [{"on": True}]
    scheduler.delete_schedule(Name=name)


def test_a_firing_no_function_takes_is_retried_then_dead_lettered_to_a_bucket(nimbus, scheduler):
    s3 = nimbus.client("s3")
    bucket = f"dead-letters-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    name = f"lost-{uuid.uuid4().hex[:8]}"
    schedule_arn = scheduler.create_schedule(
        Name=name, ScheduleExpression="rate(1 hour)", FlexibleTimeWindow={"Mode": "OFF"},
        Target=target("no-such-function", Input='{"x": 1}',
                      RetryPolicy={"MaximumRetryAttempts": 1, "MaximumEventAgeInSeconds": 60},
                      DeadLetterConfig={"Arn": f"arn:aws:s3:::{bucket}"}),
    )["ScheduleArn"]
    prefix = f"aws/scheduler/dead-letter/default/{name}/"
    assert eventually(lambda: s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount") == 1, timeout=20)
    key = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"][0]["Key"]
    letter = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert letter["body"] == '{"x": 1}'
    attributes = letter["attributes"]
    assert attributes["ERROR_CODE"] == "ResourceNotFoundException"
    assert attributes["RETRY_ATTEMPTS"] == "1"
    assert attributes["SCHEDULE_ARN"] == schedule_arn
    assert attributes["TARGET_ARN"] == function_arn("no-such-function")
    assert key == prefix + attributes["EXECUTION_ID"]
    scheduler.delete_schedule(Name=name)


def test_a_rate_schedule_fires_once_a_minute_across_a_restart(fresh_nimbus, callbacks):
    server = fresh_nimbus()
    ensure_scheduler_role(server)
    create_function(server.lambda_client(), "ticker", zip_function("py_callback"),
                    Environment={"Variables": {"CALLBACK_URL": callbacks.url}})
    server.client("scheduler").create_schedule(
        Name="every-minute", ScheduleExpression="rate(1 minute)", FlexibleTimeWindow={"Mode": "OFF"},
        Target=target("ticker", Input=json.dumps({
            "time": "<aws.scheduler.scheduled-time>", "execution": "<aws.scheduler.execution-id>",
        })),
    )
    first = callbacks.wait_for(1, timeout=30)
    assert len(first) == 1, "a rate schedule fires when it is created"
    time.sleep(3)  # the event has left Lambda's queue
    server.kill()  # SIGKILL: nothing gets to tidy up
    fresh_nimbus()
    posts = callbacks.wait_for(2, timeout=90)
    time.sleep(5)
    posts = list(callbacks.posts)
    assert len(posts) == 2, f"once a minute, no duplicates across the restart: {posts}"
    times = [datetime.strptime(post["event"]["time"], "%Y-%m-%dT%H:%M:%SZ") for post in posts]
    assert times[1] - times[0] == timedelta(minutes=1)
    assert posts[0]["event"]["execution"] != posts[1]["event"]["execution"]
    assert posts[0]["request_id"] != posts[1]["request_id"]



def test_a_schedule_reaches_its_target_only_as_a_role_allowed_to_invoke_it(nimbus, scheduler, lambda_client, unique_name, callbacks):
    create_function(lambda_client, unique_name, zip_function("py_callback"), Environment={"Variables": {"CALLBACK_URL": callbacks.url}})
    s3 = nimbus.client("s3")
    bucket = f"dead-letters-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    suffix = uuid.uuid4().hex[:8]
    # Trusts Scheduler and may write dead letters, but not invoke the function.
    may_not_invoke = schedule_role(nimbus, f"no-invoke-{suffix}", SCHEDULER_TRUST,
                                   {"Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/*"})
    # May do anything, but does not trust Scheduler: nothing is sent as it.
    untrusting = schedule_role(nimbus, f"untrusting-{suffix}", {**SCHEDULER_TRUST, "Statement": [
        {**SCHEDULER_TRUST["Statement"][0], "Principal": {"Service": "lambda.amazonaws.com"}}]},
        {"Action": "*", "Resource": "*"})
    once = {"ScheduleExpression": "rate(1 hour)", "FlexibleTimeWindow": {"Mode": "OFF"}}
    retry = {"RetryPolicy": {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60},
             "DeadLetterConfig": {"Arn": f"arn:aws:s3:::{bucket}"}}
    for name, role in [(f"no-invoke-{suffix}", may_not_invoke), (f"untrusting-{suffix}", untrusting)]:
        scheduler.create_schedule(Name=name, Target={**target(unique_name, **retry), "RoleArn": role}, **once)

    prefix = f"aws/scheduler/dead-letter/default/no-invoke-{suffix}/"
    assert eventually(lambda: s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount") == 1, timeout=20)
    key = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"][0]["Key"]
    letter = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert letter["attributes"]["ERROR_CODE"] == "AccessDeniedException"
    assert "lambda:InvokeFunction" in letter["attributes"]["ERROR_MESSAGE"]
    time.sleep(3)
    assert callbacks.posts == [], "neither schedule invoked the function"
    assert s3.list_objects_v2(Bucket=bucket, Prefix=f"aws/scheduler/dead-letter/default/untrusting-{suffix}/")["KeyCount"] == 0

    # Allowed to invoke, the role's schedule reaches the function.
    nimbus.client("iam").put_role_policy(RoleName=f"no-invoke-{suffix}", PolicyName="invoke", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": function_arn(unique_name)}]}))
    scheduler.create_schedule(Name=f"allowed-{suffix}", Target={**target(unique_name, Input='{"ok": 1}'), "RoleArn": may_not_invoke}, **once)
    assert [post["event"] for post in callbacks.wait_for(1, timeout=30)] == [{"ok": 1}]
    for name in ["no-invoke", "untrusting", "allowed"]:
        scheduler.delete_schedule(Name=f"{name}-{suffix}")


def test_creating_a_schedule_needs_leave_to_pass_its_role(nimbus):
    iam = nimbus.client("iam")
    user = f"planner-{uuid.uuid4().hex[:6]}"
    iam.create_user(UserName=user)
    may_schedule = {"Effect": "Allow", "Action": "scheduler:CreateSchedule", "Resource": "*"}

    def allow(*statements):
        iam.put_user_policy(UserName=user, PolicyName="plan", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": list(statements)}))

    allow(may_schedule)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    planner = nimbus.client("scheduler", key_id=key["AccessKeyId"], secret=key["SecretAccessKey"])
    request = {"ScheduleExpression": "rate(1 hour)", "FlexibleTimeWindow": {"Mode": "OFF"}, "State": "DISABLED",
               "Target": target("nowhere")}
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        planner.create_schedule(Name=f"{user}-1", **request)
    assert error_code(excinfo) == "AccessDeniedException"
    assert "iam:PassRole" in excinfo.value.response["Error"]["Message"]

    allow(may_schedule, {"Effect": "Allow", "Action": "iam:PassRole", "Resource": SCHEDULER_ROLE,
                         "Condition": {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}})
    assert planner.create_schedule(Name=f"{user}-2", **request)["ScheduleArn"].endswith(f"/{user}-2")


def test_a_schedule_sends_to_a_queue_as_its_role(nimbus, scheduler):
    """A standard queue is a target: the firing's input becomes a message, sent as
    the schedule's role, which must be allowed sqs:SendMessage."""
    sqs = nimbus.client("sqs")
    url = sqs.create_queue(QueueName=f"ticks-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    role = schedule_role(nimbus, f"to-queue-{uuid.uuid4().hex[:6]}", SCHEDULER_TRUST,
                         {"Action": "sqs:SendMessage", "Resource": arn})
    when = (datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S")
    scheduler.create_schedule(Name=f"tick-{uuid.uuid4().hex[:6]}", ScheduleExpression=f"at({when})",
                              FlexibleTimeWindow={"Mode": "OFF"},
                              Target={"Arn": arn, "RoleArn": role, "Input": json.dumps({"tick": "<aws.scheduler.attempt-number>"})})
    got = []
    assert eventually(lambda: got.extend(sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])) or got,
                      timeout=30)
    assert json.loads(got[0]["Body"]) == {"tick": "1"}


def test_a_schedule_publishes_to_a_topic_as_its_role(nimbus, scheduler):
    """A topic is a target: the firing's input is published, as the schedule's role
    (allowed sns:Publish), to the topic's queue subscription."""
    sns, sqs = nimbus.client("sns"), nimbus.client("sqs")
    topic = sns.create_topic(Name=f"ticks-{uuid.uuid4().hex[:6]}")["TopicArn"]
    url = sqs.create_queue(QueueName=f"ticks-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
            "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": topic}}}]})})
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    role = schedule_role(nimbus, f"to-topic-{uuid.uuid4().hex[:6]}", SCHEDULER_TRUST,
                         {"Action": "sns:Publish", "Resource": topic})
    when = (datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S")
    scheduler.create_schedule(Name=f"tick-{uuid.uuid4().hex[:6]}", ScheduleExpression=f"at({when})",
                              FlexibleTimeWindow={"Mode": "OFF"},
                              Target={"Arn": topic, "RoleArn": role, "Input": json.dumps({"tick": "published"})})
    got = []
    assert eventually(lambda: got.extend(sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])) or got,
                      timeout=30)
    assert json.loads(got[0]["Body"]) == {"tick": "published"}
