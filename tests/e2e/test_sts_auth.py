"""Authentication through the edge, as the aws CLI, boto3, curl and raw signed
requests see it."""

import datetime
import json
import shutil
import subprocess
import time
import uuid

import botocore.exceptions
import pytest
import requests

from signing import sha256_hex, sign, utc_now

CALLER_IDENTITY = b"Action=GetCallerIdentity&Version=2011-06-15"


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def test_cli_prints_the_root_identity(nimbus):
    result = nimbus.aws("--profile", "nimbus", "sts", "get-caller-identity", check=True)
    identity = json.loads(result.stdout)
    assert identity == {
        "UserId": "000000000000",
        "Account": "000000000000",
        "Arn": "arn:aws:iam::000000000000:root",
    }


def test_boto3_sees_the_root_identity(nimbus):
    identity = nimbus.client("sts").get_caller_identity()
    assert identity["Arn"] == "arn:aws:iam::000000000000:root"
    assert identity["Account"] == "000000000000"
    assert identity["ResponseMetadata"]["RequestId"]


def test_a_wrong_secret_is_signature_does_not_match(nimbus):
    key_id, _ = nimbus.root_keys()
    result = nimbus.aws(
        "sts", "get-caller-identity", env={"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    )
    assert result.returncode != 0
    assert "SignatureDoesNotMatch" in result.stderr

    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        nimbus.client("sts", key_id=key_id, secret="not-the-secret").get_caller_identity()
    assert error_code(excinfo) == "SignatureDoesNotMatch"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_an_unknown_key_is_invalid_client_token_id(nimbus):
    env = {"AWS_ACCESS_KEY_ID": "AKIAUNKNOWNUNKNOWN00", "AWS_SECRET_ACCESS_KEY": "whatever"}
    result = nimbus.aws("sts", "get-caller-identity", env=env)
    assert result.returncode != 0
    assert "InvalidClientTokenId" in result.stderr

    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        nimbus.client("sts", key_id="AKIAUNKNOWNUNKNOWN00", secret="whatever").get_caller_identity()
    assert error_code(excinfo) == "InvalidClientTokenId"


def test_session_credentials_need_their_token_and_act_as_their_principal(nimbus):
    issued = nimbus.client("sts").get_session_token(DurationSeconds=900)["Credentials"]
    assert issued["AccessKeyId"].startswith("ASIA")
    remaining = issued["Expiration"] - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(minutes=14) < remaining <= datetime.timedelta(minutes=15)

    keys = dict(key_id=issued["AccessKeyId"], secret=issued["SecretAccessKey"])
    session = nimbus.client("sts", token=issued["SessionToken"], **keys)
    assert session.get_caller_identity()["Arn"] == "arn:aws:iam::000000000000:root"

    # The CLI with the same temporary credentials.
    env = {
        "AWS_ACCESS_KEY_ID": keys["key_id"],
        "AWS_SECRET_ACCESS_KEY": keys["secret"],
        "AWS_SESSION_TOKEN": issued["SessionToken"],
    }
    assert nimbus.aws("sts", "get-caller-identity", env=env).returncode == 0

    for token in (None, issued["SessionToken"][:-4] + "AAAA"):
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            nimbus.client("sts", token=token, **keys).get_caller_identity()
        assert error_code(excinfo) == "InvalidClientTokenId"

    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        session.get_session_token()
    assert error_code(excinfo) == "AccessDenied"


def test_session_duration_is_validated(nimbus):
    # botocore checks the bounds itself, so send what it would refuse to.
    body = b"Action=GetSessionToken&Version=2011-06-15&DurationSeconds=60"
    headers = sign(nimbus.endpoint + "/", body, keys=nimbus.root_keys())
    response = requests.post(nimbus.endpoint + "/", data=body, headers=headers, timeout=10)
    assert response.status_code == 400
    assert "<Code>ValidationError</Code>" in response.text
    assert "durationSeconds" in response.text


def test_a_presigned_url_works_until_it_expires(nimbus):
    # The signature covers the method, so presign for the GET that is sent.
    url = nimbus.client("sts").generate_presigned_url("get_caller_identity", ExpiresIn=2, HttpMethod="GET")
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert "<Arn>arn:aws:iam::000000000000:root</Arn>" in response.text

    time.sleep(3)
    expired = requests.get(url, timeout=10)
    assert expired.status_code == 403
    assert "<Code>RequestExpired</Code>" in expired.text

    fresh = nimbus.client("sts").generate_presigned_url("get_caller_identity", ExpiresIn=60, HttpMethod="GET")
    assert requests.post(fresh, timeout=10).status_code == 403, "signed for GET, sent as POST"
    tampered = requests.get(fresh.replace("GetCallerIdentity", "GetSessionToken"), timeout=10)
    assert tampered.status_code == 403


def test_presigned_get_caller_identity_as_eks_tokens_and_vault_use_it(nimbus):
    """`aws eks get-token` presigns GetCallerIdentity for GET with a signed
    x-k8s-aws-id header, and the cluster fetches the URL. botocore's presigner
    (SigV4QueryAuth) signs the empty payload's sha256 for every service but S3."""
    iam = nimbus.client("iam")
    name = f"eks-{uuid.uuid4().hex[:6]}"
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    sts = nimbus.client("sts", key_id=key["AccessKeyId"], secret=key["SecretAccessKey"])

    def add_cluster_id(request, **_):
        request.headers["x-k8s-aws-id"] = "my-cluster"

    sts.meta.events.register("before-sign.sts.GetCallerIdentity", add_cluster_id)
    url = sts.generate_presigned_url("get_caller_identity", Params={}, ExpiresIn=60, HttpMethod="GET")
    response = requests.get(url, headers={"x-k8s-aws-id": "my-cluster"}, timeout=10)
    assert response.status_code == 200, response.text
    assert f"<Arn>arn:aws:iam::000000000000:user/{name}</Arn>" in response.text
    other = requests.get(url, headers={"x-k8s-aws-id": "other-cluster"}, timeout=10)
    assert other.status_code == 403, "the cluster id is signed"
    sts.meta.events.unregister("before-sign.sts.GetCallerIdentity", add_cluster_id)

    # Session credentials travel in the URL as X-Amz-Security-Token.
    issued = sts.get_session_token(DurationSeconds=900)["Credentials"]
    session = nimbus.client("sts", key_id=issued["AccessKeyId"], secret=issued["SecretAccessKey"],
                            token=issued["SessionToken"])
    url = session.generate_presigned_url("get_caller_identity", ExpiresIn=60, HttpMethod="GET")
    assert "X-Amz-Security-Token=" in url
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert f"user/{name}</Arn>" in response.text

    # Without HttpMethod, botocore presigns for the operation's own method, POST;
    # the signature covers the method, so the URL works with a POST, as on AWS.
    url = sts.generate_presigned_url("get_caller_identity", ExpiresIn=60)
    response = requests.post(url, timeout=10)
    assert response.status_code == 200, response.text
    assert f"user/{name}</Arn>" in response.text
    assert requests.get(url, timeout=10).status_code == 403


def test_a_body_that_differs_from_its_signed_sha256_is_rejected(nimbus):
    keys = nimbus.root_keys()
    headers = sign(
        nimbus.endpoint + "/", CALLER_IDENTITY, {"X-Amz-Content-SHA256": sha256_hex(CALLER_IDENTITY)}, keys
    )
    assert requests.post(nimbus.endpoint + "/", data=CALLER_IDENTITY, headers=headers, timeout=10).status_code == 200

    other = b"Action=GetSessionToken&Version=2011-06-15"
    response = requests.post(nimbus.endpoint + "/", data=other, headers=headers, timeout=10)
    assert response.status_code == 400
    assert "<Code>SignatureDoesNotMatch</Code>" in response.text
    assert "x-amz-content-sha256" in response.text


def test_a_tampered_body_fails_the_signature(nimbus):
    headers = sign(nimbus.endpoint + "/", CALLER_IDENTITY, keys=nimbus.root_keys())
    other = b"Action=GetSessionToken&Version=2011-06-15"
    response = requests.post(nimbus.endpoint + "/", data=other, headers=headers, timeout=10)
    assert response.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in response.text


def test_unsigned_payloads_are_accepted_when_signed_as_such(nimbus):
    headers = sign(nimbus.endpoint + "/", CALLER_IDENTITY, {"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}, nimbus.root_keys())
    response = requests.post(nimbus.endpoint + "/", data=CALLER_IDENTITY, headers=headers, timeout=10)
    assert response.status_code == 200, response.text


def test_requests_signed_too_far_from_now_are_refused(nimbus):
    for offset in (datetime.timedelta(minutes=-16), datetime.timedelta(minutes=16)):
        headers = sign(nimbus.endpoint + "/", CALLER_IDENTITY, keys=nimbus.root_keys(), at=utc_now() + offset)
        response = requests.post(nimbus.endpoint + "/", data=CALLER_IDENTITY, headers=headers, timeout=10)
        assert response.status_code == 403
        assert "<Code>RequestExpired</Code>" in response.text

    headers = sign(nimbus.endpoint + "/", CALLER_IDENTITY, keys=nimbus.root_keys(), at=utc_now() - datetime.timedelta(minutes=14))
    assert requests.post(nimbus.endpoint + "/", data=CALLER_IDENTITY, headers=headers, timeout=10).status_code == 200


def test_a_credential_scoped_to_another_region_is_refused(nimbus):
    headers = sign(nimbus.endpoint + "/", CALLER_IDENTITY, keys=nimbus.root_keys(), region="eu-west-1")
    response = requests.post(nimbus.endpoint + "/", data=CALLER_IDENTITY, headers=headers, timeout=10)
    assert response.status_code == 403
    assert "eu-west-1" in response.text


def test_an_unknown_action_is_invalid_action(nimbus):
    body = b"Action=AssumeRoot&Version=2011-06-15"
    headers = sign(nimbus.endpoint + "/", body, keys=nimbus.root_keys())
    response = requests.post(nimbus.endpoint + "/", data=body, headers=headers, timeout=10)
    assert response.status_code == 400
    assert "<Code>InvalidAction</Code>" in response.text
    assert response.headers["x-amzn-RequestId"] in response.text


def test_an_operation_not_built_yet_answers_in_its_services_shape(nimbus):
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        nimbus.client("ecs").describe_capacity_providers()
    assert error_code(excinfo) == "UnknownOperationException"
    assert "DescribeCapacityProviders" in str(excinfo.value)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is installed by the test command")
def test_curl_signs_over_h2c(nimbus):
    key_id, secret = nimbus.root_keys()
    result = subprocess.run(
        [
            "curl", "-sS", "--fail-with-body", "--http2-prior-knowledge",
            "--aws-sigv4", "aws:amz:us-east-1:sts", "--user", f"{key_id}:{secret}",
            "-w", "\n%{http_version}",
            f"{nimbus.endpoint}/?Action=GetCallerIdentity&Version=2011-06-15",
        ],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    body, version = result.stdout.rsplit("\n", 1)
    assert version == "2"
    assert "<Arn>arn:aws:iam::000000000000:root</Arn>" in body


def test_permissive_mode_accepts_any_well_formed_signature(fresh_nimbus):
    server = fresh_nimbus("--auth", "permissive")
    identity = server.client("sts", key_id="123456789012", secret="anything").get_caller_identity()
    assert identity["Arn"] == "arn:aws:iam::123456789012:root"
    other = server.client("sts", key_id="test", secret="test").get_caller_identity()
    assert other["Account"] == "000000000000"
    assert requests.get(server.endpoint + "/_nimbus/health", timeout=10).json()["auth"] == "permissive"
    assert server.logged("permissive")
    # Still no entry without a signature at all.
    unsigned = requests.get(server.endpoint + "/?Action=GetCallerIdentity&Version=2011-06-15", timeout=10)
    assert unsigned.status_code == 403
