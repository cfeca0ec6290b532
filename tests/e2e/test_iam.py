"""IAM and STS: users, keys, roles and policies through boto3 and the aws CLI; every
request authorized by the caller's policies; functions running as their execution
role with an unmodified boto3."""

import io
import json
import uuid
import zipfile

import boto3
import botocore.config
import botocore.exceptions
import pytest

from conftest import LAMBDA_TRUST, create_function, invoke, zip_function

ACCOUNT = "000000000000"


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def policy(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action, resource="*"):
    return {"Effect": "Allow", "Action": action, "Resource": resource}


@pytest.fixture(scope="module")
def iam(nimbus):
    return nimbus.client("iam")


def user_with_keys(iam, name, *statements):
    iam.create_user(UserName=name)
    if statements:
        iam.put_user_policy(UserName=name, PolicyName="only", PolicyDocument=policy(*statements))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def as_keys(nimbus, service, keys, token=None):
    config = botocore.config.Config(retries={"max_attempts": 1})
    return boto3.client(service, endpoint_url=nimbus.endpoint, region_name="us-east-1", aws_access_key_id=keys[0],
                        aws_secret_access_key=keys[1], aws_session_token=token, config=config)


def test_users_roles_and_policies_have_aws_shapes(iam):
    name = f"alice-{uuid.uuid4().hex[:6]}"
    user = iam.create_user(UserName=name, Path="/team/")["User"]
    assert user["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/team/{name}"
    assert user["UserId"].startswith("AIDA")
    assert iam.get_user(UserName=name)["User"]["UserName"] == name
    assert name in [u["UserName"] for u in iam.list_users(PathPrefix="/team/")["Users"]]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        iam.create_user(UserName=name)
    assert error_code(excinfo) == "EntityAlreadyExists"

    key = iam.create_access_key(UserName=name)["AccessKey"]
    assert key["AccessKeyId"].startswith("AKIA") and key["Status"] == "Active"
    iam.update_access_key(UserName=name, AccessKeyId=key["AccessKeyId"], Status="Inactive")
    listed = iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
    assert [(k["AccessKeyId"], k["Status"]) for k in listed] == [(key["AccessKeyId"], "Inactive")]

    document = policy(allow("s3:GetObject", "arn:aws:s3:::photos/*"))
    iam.put_user_policy(UserName=name, PolicyName="read", PolicyDocument=document)
    got = iam.get_user_policy(UserName=name, PolicyName="read")
    assert got["PolicyDocument"] == json.loads(document), "documents come back URL-encoded, as boto3 expects"
    assert iam.list_user_policies(UserName=name)["PolicyNames"] == ["read"]

    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        iam.delete_user(UserName=name)
    assert error_code(excinfo) == "DeleteConflict"
    iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
    iam.delete_user_policy(UserName=name, PolicyName="read")
    iam.delete_user(UserName=name)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        iam.get_user(UserName=name)
    assert error_code(excinfo) == "NoSuchEntity"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_managed_policies_have_versions_and_attachments(iam):
    name = f"writers-{uuid.uuid4().hex[:6]}"
    arn = iam.create_policy(PolicyName=name, PolicyDocument=policy(allow("s3:PutObject")))["Policy"]["Arn"]
    assert arn == f"arn:aws:iam::{ACCOUNT}:policy/{name}"
    version = iam.create_policy_version(PolicyArn=arn, PolicyDocument=policy(allow("s3:*")), SetAsDefault=True)
    assert version["PolicyVersion"]["VersionId"] == "v2"
    assert iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"] == "v2"
    got = iam.get_policy_version(PolicyArn=arn, VersionId="v2")["PolicyVersion"]
    assert got["Document"]["Statement"][0]["Action"] == "s3:*"
    assert [v["VersionId"] for v in iam.list_policy_versions(PolicyArn=arn)["Versions"]] == ["v2", "v1"]

    role = f"worker-{uuid.uuid4().hex[:6]}"
    created = iam.create_role(RoleName=role, AssumeRolePolicyDocument=LAMBDA_TRUST, Description="runs jobs")["Role"]
    assert created["Arn"] == f"arn:aws:iam::{ACCOUNT}:role/{role}"
    assert created["AssumeRolePolicyDocument"] == json.loads(LAMBDA_TRUST)
    iam.attach_role_policy(RoleName=role, PolicyArn=arn)
    iam.attach_role_policy(RoleName=role, PolicyArn="arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess")
    attached = iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
    assert {p["PolicyName"] for p in attached} == {name, "AmazonS3ReadOnlyAccess"}
    assert iam.get_policy(PolicyArn=arn)["Policy"]["AttachmentCount"] == 1
    aws_policies = [p["PolicyName"] for p in iam.list_policies(Scope="AWS")["Policies"]]
    assert {"AdministratorAccess", "AWSLambdaBasicExecutionRole", "AmazonEC2ContainerRegistryReadOnly"} <= set(aws_policies)

    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        iam.delete_policy(PolicyArn=arn)
    assert error_code(excinfo) == "DeleteConflict"
    iam.detach_role_policy(RoleName=role, PolicyArn=arn)
    iam.delete_policy_version(PolicyArn=arn, VersionId="v1")
    iam.delete_policy(PolicyArn=arn)
    iam.detach_role_policy(RoleName=role, PolicyArn="arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess")
    iam.delete_role(RoleName=role)


@pytest.mark.parametrize("document", [
    "not json",
    json.dumps({"Version": "2012-10-17", "Statement": [{"Action": "s3:*", "Resource": "*"}]}),
    json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*"}]}),
    json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Principal": "*"}]}),
    json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "GetObject", "Resource": "*"}]}),
    json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*",
                                                        "Condition": {"StringSortOf": {"aws:username": "x"}}}]}),
])
def test_malformed_policy_documents_are_refused(iam, document):
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        iam.create_policy(PolicyName=f"bad-{uuid.uuid4().hex[:6]}", PolicyDocument=document)
    assert error_code(excinfo) == "MalformedPolicyDocument"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_add_permission_refuses_a_statement_iam_cannot_read(lambda_client, unique_name):
    create_function(lambda_client, unique_name, zip_function("py_probe"))
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        lambda_client.add_permission(FunctionName=unique_name, StatementId="bad", Action="lambda:InvokeFunction",
                                     Principal="alice")
    assert error_code(excinfo) == "InvalidParameterValueException"
    assert "Invalid principal" in excinfo.value.response["Error"]["Message"]
    lambda_client.add_permission(FunctionName=unique_name, StatementId="s3", Action="lambda:InvokeFunction",
                                 Principal="s3.amazonaws.com", SourceArn="arn:aws:s3:::uploads",
                                 SourceAccount=ACCOUNT)
    lambda_client.add_permission(FunctionName=unique_name, StatementId="account", Action="lambda:GetFunction",
                                 Principal=ACCOUNT)
    statements = json.loads(lambda_client.get_policy(FunctionName=unique_name)["Policy"])["Statement"]
    assert [statement["Sid"] for statement in statements] == ["s3", "account"]


def test_a_user_may_do_only_what_its_policy_allows(nimbus, iam, lambda_client):
    suffix = uuid.uuid4().hex[:6]
    allowed, other = f"allowed-{suffix}", f"other-{suffix}"
    for name in (allowed, other):
        create_function(lambda_client, name, zip_function("py_probe"))
    keys = user_with_keys(iam, f"invoker-{suffix}",
                          allow("lambda:InvokeFunction", f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{allowed}"))
    user_lambda = as_keys(nimbus, "lambda", keys)
    response, body = invoke(user_lambda, allowed, {"x": 1})
    assert response["StatusCode"] == 200 and body["event"] == {"x": 1}
    for attempt in (lambda: invoke(user_lambda, other, {}), lambda: user_lambda.delete_function(FunctionName=allowed),
                    lambda: user_lambda.list_functions()):
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            attempt()
        assert error_code(excinfo) == "AccessDeniedException"
        assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert f"user/invoker-{suffix}" in excinfo.value.response["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        as_keys(nimbus, "ecr", keys).create_repository(repositoryName=f"nope-{suffix}")
    assert "AccessDenied" in error_code(excinfo)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        as_keys(nimbus, "s3", keys).create_bucket(Bucket=f"nope-{suffix}")
    assert error_code(excinfo) == "AccessDenied"
    # An inactive key stops working at once.
    iam.update_access_key(UserName=f"invoker-{suffix}", AccessKeyId=keys[0], Status="Inactive")
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        invoke(user_lambda, allowed, {})
    assert error_code(excinfo) in ("UnrecognizedClientException", "InvalidClientTokenId")


def test_assume_role_checks_the_trust_policy(nimbus, iam):
    suffix = uuid.uuid4().hex[:6]
    user = f"assumer-{suffix}"
    keys = user_with_keys(iam, user, allow("sts:AssumeRole"))
    trusting, other = f"trusting-{suffix}", f"untrusting-{suffix}"
    iam.create_role(RoleName=trusting, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/{user}"}, "Action": "sts:AssumeRole"}]}))
    iam.attach_role_policy(RoleName=trusting, PolicyArn="arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess")
    iam.create_role(RoleName=other, AssumeRolePolicyDocument=LAMBDA_TRUST)
    sts = as_keys(nimbus, "sts", keys)
    assumed = sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{trusting}", RoleSessionName="job-1",
                              DurationSeconds=900)
    assert assumed["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{trusting}/job-1"
    credentials = assumed["Credentials"]
    session_keys = (credentials["AccessKeyId"], credentials["SecretAccessKey"])
    identity = as_keys(nimbus, "sts", session_keys, credentials["SessionToken"]).get_caller_identity()
    assert identity["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{trusting}/job-1"
    session_s3 = as_keys(nimbus, "s3", session_keys, credentials["SessionToken"])
    session_s3.list_buckets()  # AmazonS3ReadOnlyAccess
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        session_s3.create_bucket(Bucket=f"denied-{suffix}")
    assert error_code(excinfo) == "AccessDenied"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{other}", RoleSessionName="job-2")
    assert error_code(excinfo) == "AccessDenied"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        nimbus.client("sts").assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{trusting}", RoleSessionName="root")
    assert error_code(excinfo) == "AccessDenied", "root cannot assume roles"


def test_create_function_needs_a_role_that_trusts_lambda(iam, lambda_client, unique_name):
    untrusting = f"no-lambda-{uuid.uuid4().hex[:6]}"
    iam.create_role(RoleName=untrusting, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
    for role in (f"arn:aws:iam::{ACCOUNT}:role/{untrusting}", f"arn:aws:iam::{ACCOUNT}:role/missing-{uuid.uuid4().hex[:6]}"):
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            lambda_client.create_function(FunctionName=unique_name, Runtime="python3.12", Role=role,
                                          Handler="app.handler", Code={"ZipFile": zip_function("py_probe")})
        assert error_code(excinfo) == "InvalidParameterValueException"
        assert "cannot be assumed by Lambda" in excinfo.value.response["Error"]["Message"]


def test_a_function_runs_as_its_role_with_plain_boto3(nimbus, iam, lambda_client, unique_name, boto3_layer):
    s3 = nimbus.client("s3")
    bucket_a, bucket_b = f"a-{unique_name[-8:]}", f"b-{unique_name[-8:]}"
    for bucket in (bucket_a, bucket_b):
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="note.txt", Body=f"hello from {bucket}".encode())
    role = f"reader-{unique_name[-8:]}"
    role_arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=LAMBDA_TRUST)["Role"]["Arn"]
    iam.put_role_policy(RoleName=role, PolicyName="a", PolicyDocument=policy(allow("s3:GetObject", f"arn:aws:s3:::{bucket_a}/*")))
    layer = lambda_client.publish_layer_version(LayerName=f"boto3-{unique_name[-8:]}", Content={"ZipFile": boto3_layer})
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        info = zipfile.ZipInfo("app.py")
        info.external_attr = 0o644 << 16
        archive.writestr(info, (
            "import boto3\n"
            "def handler(event, context):\n"
            "    s3 = boto3.client('s3')\n"
            "    try:\n"
            "        return s3.get_object(Bucket=event['bucket'], Key='note.txt')['Body'].read().decode()\n"
            "    except s3.exceptions.ClientError as err:\n"
            "        return err.response['Error']['Code']\n"
        ))
    lambda_client.create_function(FunctionName=unique_name, Runtime="python3.12", Role=role_arn, Handler="app.handler",
                                  Code={"ZipFile": code.getvalue()}, Layers=[layer["LayerVersionArn"]], Timeout=30)
    lambda_client.get_waiter("function_active_v2").wait(FunctionName=unique_name)
    assert invoke(lambda_client, unique_name, {"bucket": bucket_a})[1] == f"hello from {bucket_a}"
    assert invoke(lambda_client, unique_name, {"bucket": bucket_b})[1] == "AccessDenied"
    # A policy attached later applies to the running environment's next call.
    iam.put_role_policy(RoleName=role, PolicyName="b", PolicyDocument=policy(allow("s3:GetObject", f"arn:aws:s3:::{bucket_b}/*")))
    assert invoke(lambda_client, unique_name, {"bucket": bucket_b})[1] == f"hello from {bucket_b}"


def test_the_aws_cli_manages_iam(nimbus):
    name = f"cli-{uuid.uuid4().hex[:6]}"
    created = nimbus.aws("iam", "create-user", "--user-name", name, "--profile", "nimbus", check=True)
    assert json.loads(created.stdout)["User"]["UserName"] == name
    identity = json.loads(nimbus.aws("sts", "get-caller-identity", "--profile", "nimbus", check=True).stdout)
    assert identity["Arn"] == f"arn:aws:iam::{ACCOUNT}:root"
    nimbus.aws("iam", "delete-user", "--user-name", name, "--profile", "nimbus", check=True)


def test_bucket_policies_grant_and_deny_alongside_identity_policies(nimbus, iam):
    s3 = nimbus.client("s3")
    suffix = uuid.uuid4().hex[:6]
    bucket = f"shared-{suffix}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="public/a.txt", Body=b"a")
    s3.put_object(Bucket=bucket, Key="secret/b.txt", Body=b"b")
    user = f"reader-{suffix}"
    keys = user_with_keys(iam, user, allow("s3:GetObject", f"arn:aws:s3:::{bucket}/secret/*"))
    user_s3 = as_keys(nimbus, "s3", keys)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        user_s3.get_object(Bucket=bucket, Key="public/a.txt")
    assert error_code(excinfo) == "AccessDenied"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.get_bucket_policy(Bucket=bucket)
    assert error_code(excinfo) == "NoSuchBucketPolicy"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        s3.put_bucket_policy(Bucket=bucket, Policy=policy(allow("s3:GetObject")))
    assert error_code(excinfo) == "MalformedPolicy", "a bucket policy needs a Principal"
    document = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/{user}"}, "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{bucket}/public/*"},
        {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/secret/*"}]})
    s3.put_bucket_policy(Bucket=bucket, Policy=document)
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(document)
    assert user_s3.get_object(Bucket=bucket, Key="public/a.txt")["Body"].read() == b"a"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        user_s3.get_object(Bucket=bucket, Key="secret/b.txt")
    assert error_code(excinfo) == "AccessDenied", "the bucket's explicit deny beats the user's allow"
    s3.delete_bucket_policy(Bucket=bucket)
    assert user_s3.get_object(Bucket=bucket, Key="secret/b.txt")["Body"].read() == b"b"
