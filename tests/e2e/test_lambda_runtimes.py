"""Custom runtimes with AWS's own runtime interface clients: a Rust binary built on
the `lambda_runtime` crate, and Python's `awslambdaric`."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FUNCTIONS, REPO, create_function, invoke, zip_directory

# What a `provided` function's bootstrap finds first on its PATH.
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"


@pytest.fixture(scope="session")
def rust_bootstrap():
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "e2e-functions"
    subprocess.run(
        ["cargo", "build", "--release", "--quiet", "--manifest-path", str(FUNCTIONS / "rust_hello" / "Cargo.toml"),
         "--target-dir", str(target)],
        check=True, timeout=900,
    )
    return target / "release" / "rust_hello"


def test_a_rust_lambda_runtime_function(lambda_client, unique_name, rust_bootstrap, tmp_path):
    shutil.copy(rust_bootstrap, tmp_path / "bootstrap")
    create_function(lambda_client, unique_name, zip_directory(tmp_path), runtime="provided.al2023", handler="bootstrap")
    response, body = invoke(lambda_client, unique_name, {"hello": "rust"})
    assert "FunctionError" not in response, body
    assert body == {
        "echo": {"hello": "rust"},
        "request_id": response["ResponseMetadata"]["RequestId"],
        "function": unique_name,
        "memory": 128,
    }
    failed, error = invoke(lambda_client, unique_name, {"fail": True})
    assert failed["FunctionError"] == "Unhandled"
    assert error["errorMessage"] == "asked to fail"


def sandbox_python_version():
    python = shutil.which("python3", path=SANDBOX_PATH)
    if python is None:
        pytest.skip("no python3 on the sandbox PATH")
    output = subprocess.run([python, "--version"], capture_output=True, text=True, check=True).stdout
    major, minor = output.split()[1].split(".")[:2]
    return f"{major}.{minor}"


def test_awslambdaric_as_a_custom_runtime(lambda_client, unique_name, tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", str(tmp_path),
         "--only-binary=:all:", "--python-version", sandbox_python_version(), "--implementation", "cp",
         "--platform", "manylinux2014_x86_64", "awslambdaric"],
        check=True, timeout=300,
    )
    (tmp_path / "app.py").write_text(
        "def handler(event, context):\n"
        "    return {'ric': True, 'event': event, 'function': context.function_name}\n"
    )
    bootstrap = tmp_path / "bootstrap"
    bootstrap.write_text('#!/bin/sh\ncd "$LAMBDA_TASK_ROOT"\nexec python3 -m awslambdaric app.handler\n')
    bootstrap.chmod(0o755)
    create_function(lambda_client, unique_name, zip_directory(tmp_path), runtime="provided.al2023", handler="app.handler")
    response, body = invoke(lambda_client, unique_name, {"n": 1})
    assert "FunctionError" not in response, body
    assert body == {"ric": True, "event": {"n": 1}, "function": unique_name}


def test_a_custom_runtime_without_bootstrap(lambda_client, unique_name):
    create_function(lambda_client, unique_name, zip_directory(FUNCTIONS / "py_probe"), runtime="provided.al2", handler="x")
    response, body = invoke(lambda_client, unique_name)
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.InvalidEntrypoint"


def test_aws_lambda_events_reads_api_gateway_events(nimbus, lambda_client, unique_name, rust_bootstrap, tmp_path):
    """An HTTP API's payload formats 2.0 and 1.0 and a REST API's proxy event, each
    read by `aws_lambda_events`' types in a Rust function."""
    import requests

    from conftest import REGION

    shutil.copy(rust_bootstrap, tmp_path / "bootstrap")
    create_function(lambda_client, unique_name, zip_directory(tmp_path), runtime="provided.al2023", handler="bootstrap")
    arn = lambda_client.get_function(FunctionName=unique_name)["Configuration"]["FunctionArn"]
    lambda_client.add_permission(FunctionName=unique_name, StatementId="apigw", Action="lambda:InvokeFunction",
                                 Principal="apigateway.amazonaws.com",
                                 SourceArn=f"arn:aws:execute-api:{REGION}:000000000000:*")
    http = nimbus.client("apigatewayv2")
    api_id = http.create_api(Name=unique_name, ProtocolType="HTTP")["ApiId"]
    for key, version in (("GET /two/{id}", "2.0"), ("GET /one/{id}", "1.0")):
        integration = http.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=arn,
                                              PayloadFormatVersion=version)["IntegrationId"]
        http.create_route(ApiId=api_id, RouteKey=key, Target=f"integrations/{integration}")
    http.create_stage(ApiId=api_id, StageName="s", AutoDeploy=True)
    base = f"{nimbus.endpoint}/_nimbus/execute-api/{api_id}/s"
    assert requests.get(f"{base}/two/7", timeout=60).json() == {
        "format": "2.0", "route": "GET /two/{id}", "path": "/two/7", "parameters": {"id": "7"}, "stage": "s"}
    assert requests.get(f"{base}/one/8", timeout=60).json() == {
        "format": "1.0", "method": "GET", "resource": "/one/{id}", "path": "/one/8", "parameters": {"id": "8"},
        "stage": "s"}

    rest = nimbus.client("apigateway")
    api = rest.create_rest_api(name=unique_name)
    proxy = rest.create_resource(restApiId=api["id"], parentId=api["rootResourceId"], pathPart="{proxy+}")["id"]
    rest.put_method(restApiId=api["id"], resourceId=proxy, httpMethod="ANY", authorizationType="NONE")
    rest.put_integration(restApiId=api["id"], resourceId=proxy, httpMethod="ANY", type="AWS_PROXY",
                         integrationHttpMethod="POST",
                         uri=f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{arn}/invocations")
    rest.create_deployment(restApiId=api["id"], stageName="Prod")
    answered = requests.post(f"{nimbus.endpoint}/_nimbus/execute-api/{api['id']}/Prod/a/b", json={}, timeout=60)
    assert answered.json() == {"format": "1.0", "method": "POST", "resource": "/{proxy+}", "path": "/a/b",
                               "parameters": {"proxy": "a/b"}, "stage": "Prod"}
