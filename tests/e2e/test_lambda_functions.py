"""The Lambda control plane through the aws CLI and boto3."""

import base64
import io
import json
import urllib.request
import uuid
import zipfile

import boto3
import botocore.config
import botocore.exceptions
import pytest

from conftest import ROLE, create_function, invoke, zip_directory, zip_function


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def test_cli_deploys_invokes_updates_publishes_and_aliases(nimbus, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "app.py").write_text("def handler(event, context):\n    return {'greeting': 'hello ' + event['name']}\n")
    zip_path = tmp_path / "function.zip"
    zip_path.write_bytes(zip_directory(source))

    created = nimbus.aws(
        "lambda", "create-function", "--function-name", "cli-fn", "--runtime", "python3.12",
        "--role", ROLE, "--handler", "app.handler", "--zip-file", f"fileb://{zip_path}", "--profile", "nimbus",
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["State"] == "Pending"
    assert nimbus.aws("lambda", "wait", "function-active-v2", "--function-name", "cli-fn", "--profile", "nimbus").returncode == 0

    out = tmp_path / "out.json"
    invoked = nimbus.aws(
        "lambda", "invoke", "--function-name", "cli-fn", "--payload", '{"name": "nimbus"}', str(out), "--profile", "nimbus",
    )
    assert invoked.returncode == 0, invoked.stderr
    assert json.loads(out.read_text()) == {"greeting": "hello nimbus"}

    (source / "app.py").write_text("def handler(event, context):\n    return {'greeting': 'hi ' + event['name']}\n")
    zip_path.write_bytes(zip_directory(source))
    updated = nimbus.aws(
        "lambda", "update-function-code", "--function-name", "cli-fn", "--zip-file", f"fileb://{zip_path}", "--profile", "nimbus",
    )
    assert updated.returncode == 0, updated.stderr
    assert json.loads(updated.stdout)["LastUpdateStatus"] == "InProgress"
    assert nimbus.aws("lambda", "wait", "function-updated-v2", "--function-name", "cli-fn", "--profile", "nimbus").returncode == 0

    published = nimbus.aws("lambda", "publish-version", "--function-name", "cli-fn", "--profile", "nimbus")
    assert json.loads(published.stdout)["Version"] == "1"
    alias = nimbus.aws(
        "lambda", "create-alias", "--function-name", "cli-fn", "--name", "live", "--function-version", "1", "--profile", "nimbus",
    )
    assert json.loads(alias.stdout)["AliasArn"] == "arn:aws:lambda:us-east-1:000000000000:function:cli-fn:live"
    through_alias = nimbus.aws(
        "lambda", "invoke", "--function-name", "cli-fn", "--qualifier", "live", "--payload", '{"name": "alias"}', str(out),
        "--profile", "nimbus",
    )
    assert json.loads(through_alias.stdout)["ExecutedVersion"] == "1"
    assert json.loads(out.read_text()) == {"greeting": "hi alias"}


def test_get_function_links_to_the_code(lambda_client, unique_name):
    code = zip_function("py_probe")
    create_function(lambda_client, unique_name, code, Tags={"team": "core"})
    described = lambda_client.get_function(FunctionName=unique_name)
    assert described["Configuration"]["CodeSha256"] == base64.b64encode(__import__("hashlib").sha256(code).digest()).decode()
    assert described["Tags"] == {"team": "core"}
    with urllib.request.urlopen(described["Code"]["Location"], timeout=10) as response:
        assert response.read() == code
    tampered = described["Code"]["Location"].replace("signature=", "signature=00")
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(tampered, timeout=10)
    assert excinfo.value.code == 403


def zip_with(entries):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "overrides, code",
    [
        ({"FunctionName": "bad name!"}, "ValidationException"),
        ({"Timeout": 901}, "ValidationException"),
        ({"MemorySize": 10241}, "ValidationException"),
        ({"Runtime": "python2.7"}, "InvalidParameterValueException"),
        ({"Runtime": "cobol"}, "ValidationException"),
        ({"Role": "not-a-role"}, "ValidationException"),
        ({"Environment": {"Variables": {"BIG": "x" * 5000}}}, "InvalidParameterValueException"),
        ({"Environment": {"Variables": {"AWS_REGION": "eu-west-1"}}}, "InvalidParameterValueException"),
        ({"Code": {"ZipFile": b"this is not a zip"}}, "InvalidParameterValueException"),
        ({"Code": {"ZipFile": zip_with([("../escape.py", "x = 1")])}}, "InvalidParameterValueException"),
        ({"Code": {"ZipFile": zip_with([("/etc/absolute.py", "x = 1")])}}, "InvalidParameterValueException"),
    ],
)
def test_create_function_enforces_limits_and_rules(lambda_client, unique_name, overrides, code):
    request = dict(
        FunctionName=unique_name, Runtime="python3.12", Role=ROLE, Handler="app.handler",
        Code={"ZipFile": zip_function("py_probe")},
    )
    request.update(overrides)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        lambda_client.create_function(**request)
    assert error_code(excinfo) == code, excinfo.value.response["Error"]["Message"]


def test_missing_handler_duplicates_and_unknown_functions(lambda_client, unique_name):
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        lambda_client.create_function(
            FunctionName=unique_name, Runtime="python3.12", Role=ROLE, Code={"ZipFile": zip_function("py_probe")}
        )
    assert error_code(excinfo) == "InvalidParameterValueException"

    create_function(lambda_client, unique_name, zip_function("py_probe"))
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        create_function(lambda_client, unique_name, zip_function("py_probe"))
    assert error_code(excinfo) == "ResourceConflictException"

    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        lambda_client.get_function(FunctionName=unique_name + "-missing")
    assert error_code(excinfo) == "ResourceNotFoundException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404

    lambda_client.delete_function(FunctionName=unique_name)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        lambda_client.get_function_configuration(FunctionName=unique_name)
    assert error_code(excinfo) == "ResourceNotFoundException"


def test_list_functions_paginates(lambda_client, unique_name):
    names = [f"{unique_name}-{i}" for i in range(3)]
    for name in names:
        create_function(lambda_client, name, zip_function("py_probe"))
    first = lambda_client.list_functions(MaxItems=2)
    assert len(first["Functions"]) == 2 and "NextMarker" in first
    listed = [
        f["FunctionName"]
        for page in lambda_client.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 2})
        for f in page["Functions"]
    ]
    assert all(name in listed for name in names)
    assert len(listed) == len(set(listed))


def test_versions_and_weighted_aliases(lambda_client, unique_name):
    create_function(lambda_client, unique_name, zip_function("py_probe"), Description="one")
    assert lambda_client.publish_version(FunctionName=unique_name)["Version"] == "1"
    # Nothing changed: publishing again returns the same version.
    assert lambda_client.publish_version(FunctionName=unique_name)["Version"] == "1"
    lambda_client.update_function_configuration(FunctionName=unique_name, Description="two")
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=unique_name, WaiterConfig={"Delay": 0.2})
    assert lambda_client.publish_version(FunctionName=unique_name)["Version"] == "2"
    versions = [v["Version"] for v in lambda_client.list_versions_by_function(FunctionName=unique_name)["Versions"]]
    assert versions == ["$LATEST", "1", "2"]

    lambda_client.create_alias(
        FunctionName=unique_name, Name="canary", FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}},
    )
    executed = {invoke(lambda_client, unique_name, Qualifier="canary")[0]["ExecutedVersion"] for _ in range(30)}
    assert executed == {"1", "2"}

    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        lambda_client.delete_function(FunctionName=unique_name, Qualifier="2")
    assert error_code(excinfo) == "ResourceConflictException"
    lambda_client.update_alias(FunctionName=unique_name, Name="canary", RoutingConfig={"AdditionalVersionWeights": {}})
    lambda_client.delete_function(FunctionName=unique_name, Qualifier="2")
    assert [a["Name"] for a in lambda_client.list_aliases(FunctionName=unique_name)["Aliases"]] == ["canary"]
    lambda_client.delete_alias(FunctionName=unique_name, Name="canary")

    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        lambda_client.create_alias(FunctionName=unique_name, Name="nope", FunctionVersion="9")
    assert error_code(excinfo) == "ResourceNotFoundException"


def test_concurrency_tags_and_account_settings(lambda_client, unique_name):
    create_function(lambda_client, unique_name, zip_function("py_probe"))
    arn = lambda_client.get_function_configuration(FunctionName=unique_name)["FunctionArn"]
    before = lambda_client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
    lambda_client.put_function_concurrency(FunctionName=unique_name, ReservedConcurrentExecutions=7)
    assert lambda_client.get_function_concurrency(FunctionName=unique_name)["ReservedConcurrentExecutions"] == 7
    assert lambda_client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == before - 7
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        lambda_client.put_function_concurrency(FunctionName=unique_name, ReservedConcurrentExecutions=995)
    assert error_code(excinfo) == "InvalidParameterValueException"
    lambda_client.delete_function_concurrency(FunctionName=unique_name)
    assert "ReservedConcurrentExecutions" not in lambda_client.get_function_concurrency(FunctionName=unique_name)

    lambda_client.tag_resource(Resource=arn, Tags={"a": "1", "b": "2"})
    lambda_client.untag_resource(Resource=arn, TagKeys=["a"])
    assert lambda_client.list_tags(Resource=arn)["Tags"] == {"b": "2"}


def test_revision_ids_guard_updates(lambda_client, unique_name):
    create_function(lambda_client, unique_name, zip_function("py_probe"))
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        lambda_client.update_function_configuration(FunctionName=unique_name, Timeout=10, RevisionId="stale")
    assert error_code(excinfo) == "PreconditionFailedException"


def test_code_in_a_bucket_is_read_with_the_callers_own_permissions(nimbus, unique_name):
    """Lambda reads Code.S3Bucket as the caller, as AWS does: a deployer allowed to
    create functions but not to read the object gets S3's AccessDenied back."""
    iam, s3 = nimbus.client("iam"), nimbus.client("s3")
    bucket = f"code-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="app.zip", Body=zip_function("py_callback"))
    user = f"deployer-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    allowed = [
        {"Effect": "Allow", "Action": ["lambda:CreateFunction", "lambda:GetFunction"], "Resource": "*"},
        {"Effect": "Allow", "Action": "iam:PassRole", "Resource": ROLE},
    ]

    def allow(statements):
        iam.put_user_policy(UserName=user, PolicyName="deploy", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": statements}))

    allow(allowed)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    deployer = boto3.client(
        "lambda", endpoint_url=nimbus.endpoint, region_name="us-east-1", aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"], config=botocore.config.Config(retries={"max_attempts": 1}))
    create = dict(FunctionName=unique_name, Runtime="python3.12", Role=ROLE, Handler="app.handler",
                  Code={"S3Bucket": bucket, "S3Key": "app.zip"})

    with pytest.raises(botocore.exceptions.ClientError) as denied:
        deployer.create_function(**create)
    assert error_code(denied) == "InvalidParameterValueException"
    assert "S3 Error Code: AccessDenied" in denied.value.response["Error"]["Message"]

    allow([*allowed, {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/app.zip"}])
    assert deployer.create_function(**create)["FunctionName"] == unique_name
