"""The authorization walk: every operation the server routes (as `/_nimbus/operations`
lists them, with their declared authorization) is called with boto3 as

(a) an IAM user with no policy: AccessDenied;
(b) a user allowed exactly the declared action on the declared resource (its ARN
    template filled with the values the request carries), and the declared
    dependent actions: anything but AccessDenied;
(c) the same user with a Deny of the action on that resource added: AccessDenied. The
    Deny is in the resource's own policy where the service has one the caller can
    write Deny statements into (a bucket's, a repository's), else in the user's.

Operations IAM does not guard, and those that check their action as they run, are
declared so explicitly; the walk checks that list, and that an unguarded operation
answers a user with no policy. The walk fails if any routed operation is left out.
"""

import base64
import contextlib
import json
import re
import time
import uuid

import boto3
import botocore
import botocore.config
import botocore.exceptions
import pytest

from conftest import REGION

ACCOUNT = "000000000000"

# The boto3 client of each service, by the name the server reports.
CLIENTS = {
    "sts": "sts",
    "iam": "iam",
    "lambda": "lambda",
    "s3": "s3",
    "ecr": "ecr",
    "ecs": "ecs",
    "logs": "logs",
    "scheduler": "scheduler",
    "sqs": "sqs",
    "sns": "sns",
    "events": "events",
    "apigateway": "apigatewayv2",
}

# Request values by input member name, shared by every service, and the values of
# the ARN templates' placeholders they make.
WALK_ROLE = f"arn:aws:iam::{ACCOUNT}:role/walk-role"
VALUES = {
    # Lambda
    "FunctionName": "walk-fn",
    "LayerName": "walk-layer",
    "VersionNumber": 1,
    "Role": WALK_ROLE,
    "Resource": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:walk-fn",
    "StatementId": "walk-statement",
    "Action": "lambda:InvokeFunction",
    "Principal": "s3.amazonaws.com",
    # S3
    "Bucket": "walk-bucket",
    "Key": "walk-key",
    "CopySource": "walk-bucket/walk-source",
    "UploadId": "walk-upload",
    "PartNumber": 1,
    "Policy": json.dumps({"Version": "2012-10-17", "Statement": []}),
    # ECR
    "repositoryName": "walk-repo",
    "layerDigest": "sha256:" + "0" * 64,
    "layerDigests": ["sha256:" + "0" * 64],
    "uploadId": "walk-upload",
    "imageManifest": "{}",
    "policyText": json.dumps({"Version": "2012-10-17", "Statement": []}),
    "lifecyclePolicyText": json.dumps({"rules": [{
        "rulePriority": 1, "description": "walk", "action": {"type": "expire"},
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 100},
    }]}),
    # ECS
    "cluster": "walk-cluster",
    "clusterName": "walk-cluster",
    "clusters": ["walk-cluster"],
    "taskDefinition": "walk-family:1",
    "family": "walk-family",
    "task": "walk-task",
    "tasks": ["walk-task"],
    "service": "walk-service",
    "services": ["walk-service"],
    "serviceName": "walk-service",
    "containerInstances": ["walk-instance"],
    # Logs
    "logGroupName": "walk-group",
    "logStreamName": "walk-stream",
    "retentionInDays": 1,
    # Scheduler
    "ScheduleExpression": "rate(1 hour)",
    # Lambda's event source mappings
    "UUID": "walk-uuid",
    # SQS (the host of a queue URL is not read)
    "QueueUrl": f"http://localhost/{ACCOUNT}/walk-queue",
    "QueueName": "walk-queue",
    # SNS
    "TopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:walk-topic",
    "SubscriptionArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:walk-topic:walk-subscription",
    # EventBridge
    "Rule": "walk-rule",
    "ArchiveName": "walk-archive",
    "ReplayName": "walk-replay",
    # API Gateway
    "ApiId": "walk-api",
    "RouteId": "walk-route",
    "IntegrationId": "walk-integration",
    "StageName": "walk-stage",
    "AuthorizerId": "walk-authorizer",
    "DeploymentId": "walk-deployment",
    # API Gateway's REST APIs (v1)
    "restApiId": "walk-rest",
    "resourceId": "walk-resource",
    "parentId": "walk-resource",
    "httpMethod": "GET",
    "statusCode": "200",
    "deploymentId": "walk-deployment",
    "stageName": "walk-stage",
    "apiKey": "walk-apikey",
    "usagePlanId": "walk-plan",
    "keyId": "walk-apikey",
    # IAM
    "UserName": "walk-target",
    "RoleName": "walk-role",
    "PolicyName": "walk-policy",
    "PolicyArn": f"arn:aws:iam::{ACCOUNT}:policy/walk-policy",
    "PolicyDocument": json.dumps({"Version": "2012-10-17", "Statement": []}),
    "AssumeRolePolicyDocument": json.dumps({"Version": "2012-10-17", "Statement": []}),
    "AccessKeyId": "AKIAWALKWALKWALKWALK",
    "VersionId": "v1",
    "RoleArn": WALK_ROLE,
    "RoleSessionName": "walk",
}
PLACEHOLDERS = {
    "Partition": "aws",
    "Region": REGION,
    "Account": ACCOUNT,
    "FunctionName": "walk-fn",
    "LayerName": "walk-layer",
    "LayerVersion": "1",
    "BucketName": "walk-bucket",
    "ObjectName": "walk-key",
    "RepositoryName": "walk-repo",
    "ClusterName": "walk-cluster",
    "TaskDefinitionFamilyName": "walk-family",
    "TaskDefinitionRevisionNumber": "1",
    "TaskId": "walk-task",
    "ServiceName": "walk-service",
    "ContainerInstanceId": "walk-instance",
    "ResourceType": "cluster",
    "ResourcePath": "walk-cluster",
    "LogGroupName": "walk-group",
    "LogStreamName": "walk-stream",
    "GroupName": "default",
    "ScheduleName": "walk-schedule",
    "UserNameWithPath": "walk-target",
    "RoleNameWithPath": "walk-role",
    "PolicyNameWithPath": "walk-policy",
    "UUID": "walk-uuid",
    "QueueName": "walk-queue",
    "TopicName": "walk-topic",
    "EventBusName": "default",
    "RuleName": "walk-rule",
    "ArchiveName": "walk-archive",
    "ReplayName": "walk-replay",
    "ApiId": "walk-api",
    "RouteId": "walk-route",
    "IntegrationId": "walk-integration",
    "StageName": "walk-stage",
    "AuthorizerId": "walk-authorizer",
    "DeploymentId": "walk-deployment",
    "RestApiId": "walk-rest",
    "ResourceId": "walk-resource",
    "HttpMethod": "GET",
    "StatusCode": "200",
    "ApiKey": "walk-apikey",
    "UsagePlanId": "walk-plan",
    "KeyId": "walk-apikey",
}

GROUP_ARN = f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule-group/walk-sgroup"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:walk-queue"
# A move task's handle names its source queue, which the task's cancel acts on.
TASK_HANDLE = base64.b64encode(json.dumps({"taskId": "walk", "sourceArn": QUEUE_ARN, "key": "walk"}).encode()).decode()
# Per-operation request values and placeholders, where the shared ones do not fit.
OVERRIDES = {
    ("s3", "DeleteObjects"): {"Delete": {"Objects": [{"Key": "walk-key"}]}},
    ("ecr", "TagResource"): {"resourceArn": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/walk-repo"},
    ("ecr", "UntagResource"): {"resourceArn": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/walk-repo"},
    ("ecr", "ListTagsForResource"): {"resourceArn": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/walk-repo"},
    ("ecs", "TagResource"): {"resourceArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/walk-cluster"},
    ("ecs", "UntagResource"): {"resourceArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/walk-cluster"},
    ("ecs", "ListTagsForResource"): {"resourceArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/walk-cluster"},
    ("logs", "TagResource"): {"resourceArn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:walk-group"},
    ("logs", "UntagResource"): {"resourceArn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:walk-group"},
    ("logs", "ListTagsForResource"): {"resourceArn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:walk-group"},
    ("logs", "PutLogEvents"): {"logEvents": [{"timestamp": int(time.time() * 1000), "message": "walk"}]},
    ("scheduler", "TagResource"): {"ResourceArn": GROUP_ARN},
    ("scheduler", "UntagResource"): {"ResourceArn": GROUP_ARN},
    ("scheduler", "ListTagsForResource"): {"ResourceArn": GROUP_ARN},
    ("sqs", "StartMessageMoveTask"): {"SourceArn": QUEUE_ARN},
    ("sqs", "ListMessageMoveTasks"): {"SourceArn": QUEUE_ARN},
    ("sqs", "CancelMessageMoveTask"): {"TaskHandle": TASK_HANDLE},
    ("sns", "CreateTopic"): {"Name": "walk-topic"},
    ("sns", "TagResource"): {"ResourceArn": VALUES["TopicArn"]},
    ("sns", "UntagResource"): {"ResourceArn": VALUES["TopicArn"]},
    ("sns", "ListTagsForResource"): {"ResourceArn": VALUES["TopicArn"]},
    ("events", "CreateEventBus"): {"Name": "default"},
    ("events", "DeleteEventBus"): {"Name": "default"},
    **{("events", operation): {"Name": "walk-rule"} for operation in (
        "PutRule", "DescribeRule", "DeleteRule", "EnableRule", "DisableRule")},
}
SCHEDULE_GROUP_OPERATIONS = {
    "CreateScheduleGroup", "GetScheduleGroup", "DeleteScheduleGroup",
    "TagResource", "UntagResource", "ListTagsForResource",
}

# The operations that say IAM does not guard them, or that they check their action
# as they run (a role's trust policy; a listing filtered to what the caller may see).
UNGUARDED = {("sts", "GetCallerIdentity"), ("sts", "GetSessionToken")}
CHECKED_AS_THEY_RUN = {("sts", "AssumeRole"), ("ecr", "DescribeRepositories"), ("s3", "DeleteObjects")}


def value_for(shape, name, depth=0):
    """A value botocore accepts for `shape`: the shared value of its member name, else
    one built from the shape (required members only)."""
    if name in VALUES:
        return VALUES[name]
    kind = shape.type_name
    if kind == "structure":
        return {
            member: value_for(shape.members[member], member, depth + 1)
            for member in shape.members
            if member in shape.required_members or (member in VALUES and depth == 0)
        }
    if kind == "list":
        return [value_for(shape.member, "", depth + 1)]
    if kind == "map":
        return {"walk": value_for(shape.value, "", depth + 1)}
    if kind == "string":
        if shape.enum:
            return shape.enum[0]
        return "walk-" + "x" * max(0, shape.metadata.get("min", 0) - 5)
    if kind in ("integer", "long"):
        return max(1, shape.metadata.get("min", 1))
    if kind in ("double", "float"):
        return 1.0
    if kind == "boolean":
        return False
    if kind == "blob":
        return b"walk"
    if kind == "timestamp":
        return int(time.time())
    raise AssertionError(f"no value for shape {kind}")


def params_for(client, service, operation):
    model = client.meta.service_model.operation_model(operation)
    shape = model.input_shape
    params = {}
    if shape is not None:
        params = value_for(shape, "")
    params.update(OVERRIDES.get((service, operation), {}))
    if service == "scheduler" and "Name" in params:
        params["Name"] = "walk-sgroup" if operation in SCHEDULE_GROUP_OPERATIONS else "walk-schedule"
    return params


def resource_for(service, operation, template):
    placeholders = dict(PLACEHOLDERS)
    if service == "scheduler" and operation in SCHEDULE_GROUP_OPERATIONS:
        placeholders["GroupName"] = "walk-sgroup"
    # An optional part (`rule/[${EventBusName}/]${RuleName}`) is left out: the walk
    # uses the default bus.
    template = re.sub(r"\[[^\]]*\]", "", template)
    arn = re.sub(r"\$\{(\w+)\}", lambda m: placeholders[m.group(1)], template)
    assert "${" not in arn, arn
    return arn


def code_of(call):
    try:
        call()
        return "OK"
    except botocore.exceptions.ClientError as err:
        return err.response["Error"]["Code"]
    except botocore.exceptions.ParamValidationError as err:
        return f"a request botocore refuses ({err})"


def denied(code):
    # HEAD answers carry no body: S3's code is then the status.
    return code in ("AccessDenied", "AccessDeniedException", "403")


def policy(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


@pytest.fixture(scope="module")
def operations(nimbus):
    import urllib.request

    with urllib.request.urlopen(f"{nimbus.endpoint}/_nimbus/operations") as answer:
        return json.load(answer)["services"]


@pytest.fixture(scope="module")
def walkers(nimbus):
    """Two users: one with no policy, one whose policy each step replaces."""
    iam = nimbus.client("iam")
    suffix = uuid.uuid4().hex[:8]
    keys = {}
    for role in ("nobody", "allowed"):
        name = f"walk-{role}-{suffix}"
        iam.create_user(UserName=name)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        keys[role] = (name, key["AccessKeyId"], key["SecretAccessKey"])
    return iam, keys


class ResourcePolicies:
    """Denies through the resource's own policy: a bucket's or a repository's, set by
    the root user on the walk's bucket or repository (made if a step removed it)."""

    def __init__(self, nimbus):
        config = botocore.config.Config(retries={"max_attempts": 1}, signature_version="s3v4")
        self.s3 = nimbus.session().client("s3", endpoint_url=nimbus.endpoint, config=config)
        self.ecr = nimbus.client("ecr")

    def applies(self, service, operation, resource):
        # A resource being created has no policy yet.
        creates = operation in ("CreateBucket", "CreateRepository")
        return service in ("s3", "ecr") and resource != "*" and not creates

    def deny(self, service, principal, action, resource):
        statement = {"Sid": "walk", "Effect": "Deny", "Principal": {"AWS": principal}, "Action": action}
        if service == "s3":
            with contextlib.suppress(botocore.exceptions.ClientError):
                self.s3.create_bucket(Bucket="walk-bucket")
            self.s3.put_bucket_policy(Bucket="walk-bucket", Policy=policy({**statement, "Resource": resource}))
        else:
            with contextlib.suppress(botocore.exceptions.ClientError):
                self.ecr.create_repository(repositoryName="walk-repo")
            self.ecr.set_repository_policy(repositoryName="walk-repo", policyText=policy(statement))

    def lift(self, service):
        if service == "s3":
            self.s3.delete_bucket_policy(Bucket="walk-bucket")
        else:
            self.ecr.delete_repository_policy(repositoryName="walk-repo")


def client_name(service, op):
    """The boto3 client of an operation: API Gateway's REST APIs (v1) share v2's
    signing name, and their paths are not under `/v2/`."""
    if service == "apigateway" and not op["route"].split(" ", 1)[1].startswith("/v2/"):
        return "apigateway"
    return CLIENTS[service]


def client_as(nimbus, service, keys):
    config = botocore.config.Config(retries={"max_attempts": 1}, signature_version="s3v4" if service == "s3" else None)
    return boto3.client(service, endpoint_url=nimbus.endpoint, region_name=REGION, aws_access_key_id=keys[1],
                        aws_secret_access_key=keys[2], config=config)


def test_every_routed_operation_is_denied_allowed_and_denied_again(nimbus, operations, walkers):
    iam, keys = walkers
    resource_policies = ResourcePolicies(nimbus)
    allowed_arn = f"arn:aws:iam::{ACCOUNT}:user/{keys['allowed'][0]}"
    walked, failures = set(), []
    declared_unguarded, declared_in_operation = set(), set()
    for service in operations:
        name = service["name"]
        for op in service["operations"]:
            operation, authorization = op["name"], op["authorization"]
            nobody = client_as(nimbus, client_name(name, op), keys["nobody"])
            allowed = client_as(nimbus, client_name(name, op), keys["allowed"])
            walked.add((name, operation))
            params = params_for(nobody, name, operation)
            method = botocore.xform_name(operation)

            def call(client, method=method, params=params):
                return lambda: getattr(client, method)(**params)

            if authorization["action"] is None:
                declared_unguarded.add((name, operation))
                code = code_of(call(nobody))
                if denied(code):
                    failures.append(f"{name}.{operation}: unguarded, yet a user with no policy got {code}")
                continue
            if authorization["checked_in_operation"]:
                declared_in_operation.add((name, operation))
                continue
            action = authorization["action"]
            resource = resource_for(name, operation, authorization["resource"])
            code = code_of(call(nobody))
            if not denied(code):
                failures.append(f"{name}.{operation}: a user with no policy got {code}")
            allow = {"Effect": "Allow", "Action": action, "Resource": resource}
            statements = [allow]
            if authorization["dependent_actions"]:
                statements.append({"Effect": "Allow", "Action": authorization["dependent_actions"], "Resource": "*"})
            iam.put_user_policy(UserName=keys["allowed"][0], PolicyName="walk", PolicyDocument=policy(*statements))
            code = code_of(call(allowed))
            if denied(code):
                failures.append(f"{name}.{operation}: allowed {action} on {resource}, yet got {code}")
            if resource_policies.applies(name, operation, resource):
                where = "by the resource's policy"
                resource_policies.deny(name, allowed_arn, action, resource)
                code = code_of(call(allowed))
                resource_policies.lift(name)
            else:
                where = "by the user's policy"
                deny = {"Effect": "Deny", "Action": action, "Resource": resource}
                iam.put_user_policy(UserName=keys["allowed"][0], PolicyName="walk",
                                    PolicyDocument=policy(*statements, deny))
                code = code_of(call(allowed))
            if not denied(code):
                failures.append(f"{name}.{operation}: denied {action} on {resource} {where}, yet got {code}")
    routed = {(s["name"], op["name"]) for s in operations for op in s["operations"]}
    assert walked == routed
    assert {s["name"] for s in operations} == set(CLIENTS), "a service is missing from the walk"
    assert declared_unguarded == UNGUARDED
    assert declared_in_operation == CHECKED_AS_THEY_RUN
    assert not failures, "\n".join(failures)
