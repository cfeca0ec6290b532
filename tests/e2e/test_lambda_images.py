"""Container image functions (PackageType Image): Debian's python3.11 with AWS's
runtime interface client, awslambdaric, as the image's entrypoint, built offline with
umoci, pushed to nimbus's registry with podman logged in with ECR's token, then
deployed, configured, invoked and updated with boto3."""

import base64
import json
import shutil
import tempfile
import uuid

import boto3
import botocore.config
import botocore.exceptions
import pytest

import images
from conftest import ROLE, eventually, invoke
from test_registry import isolated, need

APP = """
import os
import sys


def handler(event, context):
    print("handled", context.aws_request_id, "in the image")
    return {"version": VERSION, "echo": event, "request_id": context.aws_request_id,
            "function_name": context.function_name, "memory": context.memory_limit_in_mb,
            "task_root": os.environ.get("LAMBDA_TASK_ROOT"), "cwd": os.getcwd(),
            "greeting": os.environ.get("GREETING"), "python": sys.version}


def other(event, context):
    return {"other": event, "version": VERSION}
"""


def app(version):
    return f"VERSION = {version}\n{APP}"


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """The OCI layout holding `v1` and `v2`, which differ in app.py's VERSION."""
    need("umoci", "podman")
    if not images.PYTHON.exists():
        pytest.skip(f"the image is built from Debian's {images.PYTHON}")
    return images.build_python_lambda_image(tmp_path_factory.mktemp("lambda-image"), {"v1": app(1), "v2": app(2)})


@pytest.fixture(scope="module")
def push(nimbus, layout, tmp_path_factory):
    """Pushes a tag of `layout` with podman (storage, state and login of its own, as
    in test_registry.py) to a repository of the module's own; returns the image URI
    and the digest podman pushed it as."""
    ecr = nimbus.client("ecr")
    repo = f"lambda/{uuid.uuid4().hex[:8]}"
    ecr.create_repository(repositoryName=repo)
    host = nimbus.endpoint.removeprefix("http://")
    state = tmp_path_factory.mktemp("podman")
    runroot = tempfile.mkdtemp(prefix="podman-", dir="/tmp")
    flags = ["--root", state / "storage", "--runroot", runroot, "--tmpdir", f"{runroot}/libpod",
             "--storage-driver", "vfs", "--network-config-dir", state / "networks"]

    def podman(*args, stdin=None):
        return isolated("podman", *map(str, flags), *map(str, args), stdin=stdin,
                        env={"REGISTRY_AUTH_FILE": str(state / "auth.json")})

    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, password = base64.b64decode(token).decode().split(":", 1)
    podman("login", "--tls-verify=false", "-u", user, "--password-stdin", host, stdin=password)
    pushed = {}

    def push_tag(tag):
        if tag not in pushed:
            image_id = podman("pull", f"oci:{layout}:{tag}").stdout.split()[-1]
            uri = f"{host}/{repo}:{tag}"
            podman("push", "--tls-verify=false", "--digestfile", state / tag, image_id, uri)
            digest = (state / tag).read_text().strip()
            [detail] = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": tag}])["imageDetails"]
            assert detail["imageDigest"] == digest
            pushed[tag] = uri, digest
        return pushed[tag]

    yield push_tag
    shutil.rmtree(runroot, ignore_errors=True)


def create_image_function(client, name, uri, **extra):
    """Creates an image function and waits until it is Active; returns CreateFunction's answer."""
    created = client.create_function(FunctionName=name, PackageType="Image", Code={"ImageUri": uri}, Role=ROLE, **extra)
    client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.5, "MaxAttempts": 240})
    return created


def wait_updated(client, name):
    client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.5, "MaxAttempts": 240})


def logged(logs, group, text) -> bool:
    try:
        events = logs.filter_log_events(logGroupName=group, filterPattern=f'"{text}"')["events"]
    except logs.exceptions.ResourceNotFoundException:
        return False
    return any(text in event["message"] for event in events)


def test_an_image_function_runs_its_handler_with_awslambdaric(nimbus, lambda_client, push, unique_name):
    uri, digest = push("v1")
    created = create_image_function(lambda_client, unique_name, uri, MemorySize=256,
                                    Environment={"Variables": {"GREETING": "hi"}})
    assert created["PackageType"] == "Image"

    response, body = invoke(lambda_client, unique_name, {"hello": "image"})
    assert "FunctionError" not in response, body
    request_id = response["ResponseMetadata"]["RequestId"]
    assert body.pop("python").startswith("3.11.")
    assert body == {
        "version": 1, "echo": {"hello": "image"}, "request_id": request_id, "function_name": unique_name,
        "memory": "256",  # awslambdaric passes AWS_LAMBDA_FUNCTION_MEMORY_SIZE on as it is
        "task_root": "/var/task", "cwd": "/var/task", "greeting": "hi",
    }

    described = lambda_client.get_function(FunctionName=unique_name)
    configuration = described["Configuration"]
    assert configuration["PackageType"] == "Image"
    assert "Runtime" not in configuration and "Handler" not in configuration
    assert configuration["CodeSha256"] == digest.removeprefix("sha256:")
    assert described["Code"]["RepositoryType"] == "ECR"
    assert described["Code"]["ImageUri"] == uri
    assert described["Code"]["ResolvedImageUri"] == f"{uri.rsplit(':', 1)[0]}@{digest}"

    logs = nimbus.client("logs")
    assert eventually(lambda: logged(logs, f"/aws/lambda/{unique_name}", f"handled {request_id} in the image"))


def test_image_config_command_picks_another_handler(lambda_client, push, unique_name):
    uri, _ = push("v1")
    create_image_function(lambda_client, unique_name, uri)
    lambda_client.update_function_configuration(FunctionName=unique_name, ImageConfig={"Command": ["app.other"]})
    wait_updated(lambda_client, unique_name)
    configuration = lambda_client.get_function_configuration(FunctionName=unique_name)
    assert configuration["ImageConfigResponse"]["ImageConfig"]["Command"] == ["app.other"]
    response, body = invoke(lambda_client, unique_name, {"n": 2})
    assert "FunctionError" not in response, body
    assert body == {"other": {"n": 2}, "version": 1}


def test_update_function_code_moves_to_a_new_tag(lambda_client, push, unique_name):
    first, _ = push("v1")
    create_image_function(lambda_client, unique_name, first)
    assert invoke(lambda_client, unique_name)[1]["version"] == 1
    second, digest = push("v2")
    lambda_client.update_function_code(FunctionName=unique_name, ImageUri=second)
    wait_updated(lambda_client, unique_name)
    response, body = invoke(lambda_client, unique_name)
    assert "FunctionError" not in response, body
    assert body["version"] == 2
    described = lambda_client.get_function(FunctionName=unique_name)
    assert described["Code"]["ResolvedImageUri"].endswith(f"@{digest}")
    assert described["Configuration"]["CodeSha256"] == digest.removeprefix("sha256:")


@pytest.mark.parametrize("request_for", [
    lambda uri: {"PackageType": "Image", "Code": {"ImageUri": uri}, "Runtime": "python3.12"},
    lambda uri: {"PackageType": "Image", "Code": {"ImageUri": uri}, "Handler": "app.handler"},
    lambda uri: {"PackageType": "Image", "Code": {"ImageUri": uri.rsplit(":", 1)[0] + ":missing"}},
    lambda uri: {"PackageType": "Image", "Code": {"ImageUri": uri.rsplit("/", 2)[0] + "/no/such-repository:v1"}},
    lambda uri: {"PackageType": "Zip", "Code": {"ImageUri": uri}, "Runtime": "python3.12", "Handler": "app.handler"},
], ids=["runtime", "handler", "missing-tag", "missing-repository", "zip-with-image-uri"])
def test_bad_image_functions_are_refused(lambda_client, push, unique_name, request_for):
    uri, _ = push("v1")
    request = request_for(uri)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        lambda_client.create_function(FunctionName=unique_name, Role=ROLE, **request)
    assert error_code(excinfo) == "InvalidParameterValueException", excinfo.value.response["Error"]["Message"]
    if request["Code"]["ImageUri"] != uri:
        assert "does not exist" in excinfo.value.response["Error"]["Message"]


def test_only_a_caller_who_may_pull_the_image_creates_a_function_from_it(nimbus, push, unique_name):
    """Lambda checks at create that the caller may pull the image, as AWS does."""
    uri, _ = push("v1")
    repository = uri.split("/", 1)[1].rsplit(":", 1)[0]
    iam = nimbus.client("iam")
    user = f"imager-{uuid.uuid4().hex[:6]}"
    iam.create_user(UserName=user)
    deploy = [{"Effect": "Allow", "Action": ["lambda:CreateFunction", "lambda:GetFunction", "iam:PassRole"],
               "Resource": "*"}]

    def allow(statements):
        iam.put_user_policy(UserName=user, PolicyName="deploy", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": statements}))

    allow(deploy)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    client = boto3.client("lambda", endpoint_url=nimbus.endpoint, region_name="us-east-1",
                          aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                          config=botocore.config.Config(retries={"max_attempts": 1}))
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client.create_function(FunctionName=unique_name, PackageType="Image", Code={"ImageUri": uri}, Role=ROLE)
    assert error_code(excinfo) == "AccessDeniedException"
    assert "ecr:BatchGetImage" in excinfo.value.response["Error"]["Message"]

    allow([*deploy, {"Effect": "Allow", "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                     "Resource": f"arn:aws:ecr:us-east-1:000000000000:repository/{repository}"}])
    created = client.create_function(FunctionName=unique_name, PackageType="Image", Code={"ImageUri": uri}, Role=ROLE)
    assert created["PackageType"] == "Image"
