"""Function URLs with curl and signed requests: payload format 2.0 in, status,
headers, cookies and body out, by host name and by path, CORS, and AWS_IAM URLs
refusing unsigned calls."""

import json
import subprocess

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest
import requests

from conftest import REGION, create_function, zip_function


@pytest.fixture
def url(lambda_client, unique_name):
    """Creates a py_web function with a URL of `auth_type`; returns (url, url id)."""

    def make(auth_type="NONE", **extra):
        create_function(lambda_client, unique_name, zip_function("py_web"))
        created = lambda_client.create_function_url_config(FunctionName=unique_name, AuthType=auth_type, **extra)
        address = created["FunctionUrl"]
        return address, address.removeprefix("http://").split(".", 1)[0]

    return make


def curl(*args):
    result = subprocess.run(["curl", "-s", "-i", *args], capture_output=True, text=True, timeout=60, check=True)
    head, _, body = result.stdout.partition("\n\n")  # text mode turned CRLF into LF
    status = int(head.split()[1])
    headers = [line.split(":", 1) for line in head.splitlines()[1:] if ":" in line]
    return status, [(name.lower(), value.strip()) for name, value in headers], body


def test_curl_gets_the_functions_status_headers_cookies_and_body(nimbus, lambda_client, unique_name, url):
    address, url_id = url(Cors={"AllowOrigins": ["https://app.example"], "AllowMethods": ["POST"], "MaxAge": 60})
    assert address.endswith("/") and ".lambda-url.us-east-1.localhost:" in address
    assert lambda_client.get_function_url_config(FunctionName=unique_name)["AuthType"] == "NONE"
    port = nimbus.endpoint.rsplit(":", 1)[1]
    # By host name (no DNS needed with an explicit Host header) and by path.
    for target in ([f"http://127.0.0.1:{port}/some/path?x=1&x=2", "-H", f"Host: {url_id}.lambda-url.{REGION}.localhost:{port}"],
                   [f"{nimbus.endpoint}/_nimbus/lambda-url/{url_id}/some/path?x=1&x=2"]):
        status, headers, body = curl(*target, "-H", "Cookie: c=3; d=4", "-H", "Origin: https://app.example",
                                     "-d", "sent body")
        assert status == 201
        assert ("x-seen-method", "POST") in headers
        assert [value for name, value in headers if name == "set-cookie"] == ["a=1", "b=2; Path=/"]
        assert ("access-control-allow-origin", "https://app.example") in headers
        seen = json.loads(body)
        assert seen == {"path": "/some/path", "cookies": ["c=3", "d=4"], "body": "sent body", "query": "x=1&x=2",
                        "version": "2.0"}

    status, _, body = curl(f"{nimbus.endpoint}/_nimbus/lambda-url/{url_id}/")
    assert status == 201 and json.loads(body)["path"] == "/"

    status, headers, body = curl(f"{nimbus.endpoint}/_nimbus/lambda-url/{url_id}/plain?q=2")
    assert status == 200 and ("content-type", "application/json") in headers
    assert json.loads(body) == {"plain": True, "query": {"q": "2"}}
    status, _, _ = curl(f"{nimbus.endpoint}/_nimbus/lambda-url/{url_id}/fail")
    assert status == 502
    # A CORS preflight is answered without the function.
    status, headers, _ = curl("-X", "OPTIONS", f"{nimbus.endpoint}/_nimbus/lambda-url/{url_id}/x",
                              "-H", "Origin: https://app.example", "-H", "Access-Control-Request-Method: POST")
    assert status == 200
    assert ("access-control-allow-methods", "POST") in headers and ("access-control-max-age", "60") in headers

    lambda_client.delete_function_url_config(FunctionName=unique_name)
    status, _, _ = curl(f"{nimbus.endpoint}/_nimbus/lambda-url/{url_id}/plain")
    assert status == 404
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function_url_config(FunctionName=unique_name)


def test_aws_iam_urls_refuse_unsigned_calls_and_serve_signed_ones(nimbus, url):
    address, url_id = url("AWS_IAM")
    target = f"{nimbus.endpoint}/_nimbus/lambda-url/{url_id}/plain"
    assert requests.get(target, timeout=30).status_code == 403
    key_id, secret = nimbus.root_keys()
    request = botocore.awsrequest.AWSRequest(method="GET", url=target)
    botocore.auth.SigV4Auth(botocore.credentials.Credentials(key_id, secret), "lambda", REGION).add_auth(request)
    signed = requests.get(target, headers=dict(request.headers.items()), timeout=30)
    assert signed.status_code == 200, signed.text
    assert signed.json()["plain"] is True
