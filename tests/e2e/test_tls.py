"""HTTPS on the edge: --tls-cert and --tls-key make the edge's port take TLS next to
plain HTTP, and requests that came over TLS carry aws:SecureTransport true, which
bucket policies such as the CDK bootstrap's require."""

import json
import uuid

import pytest

from conftest import self_signed_certificate


@pytest.fixture
def certificate(tmp_path):
    return self_signed_certificate(tmp_path, ["127.0.0.1"])


DENY_INSECURE = {
    "Version": "2012-10-17",
    "Statement": [{"Sid": "AllowSSLRequestsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                   "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}],
}


def test_https_and_plain_http_share_the_port_and_secure_transport_is_true_over_tls(
        fresh_nimbus, certificate, monkeypatch):
    cert, key = certificate
    # boto3 trusts the edge's certificate as clients of a private CA do.
    monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))
    server = fresh_nimbus("--tls-cert", str(cert), "--tls-key", str(key))
    assert server.endpoint.startswith("https://127.0.0.1:")
    plain = server.endpoint.replace("https://", "http://")
    assert server.client("sts").get_caller_identity()["Account"] == "000000000000"

    iam = server.client("iam")
    user = f"tls-{uuid.uuid4().hex[:6]}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    created = iam.create_access_key(UserName=user)["AccessKey"]
    keys = {"key_id": created["AccessKeyId"], "secret": created["SecretAccessKey"]}
    bucket = f"tls-{uuid.uuid4().hex[:8]}"
    server.client("s3").create_bucket(Bucket=bucket)
    server.client("s3").put_bucket_policy(Bucket=bucket, Policy=json.dumps({
        **DENY_INSECURE,
        "Statement": [{**DENY_INSECURE["Statement"][0],
                       "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}))

    secure = server.client("s3", **keys)
    secure.put_object(Bucket=bucket, Key="k", Body=b"over tls")
    assert secure.get_object(Bucket=bucket, Key="k")["Body"].read() == b"over tls"

    insecure = server.session(**keys).client("s3", endpoint_url=plain)
    with pytest.raises(insecure.exceptions.ClientError) as denied:
        insecure.get_object(Bucket=bucket, Key="k")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"

    # The aws CLI over HTTPS with the certificate as its CA bundle.
    listed = server.aws("s3api", "list-buckets", env={"AWS_CA_BUNDLE": str(cert), "AWS_PROFILE": "nimbus"})
    assert listed.returncode == 0, listed.stderr
    assert bucket in listed.stdout


def test_a_key_without_its_certificate_is_refused_at_start(fresh_nimbus, certificate):
    cert, _ = certificate
    with pytest.raises(RuntimeError, match="--tls-cert and --tls-key must be given together"):
        fresh_nimbus("--tls-cert", str(cert))
