"""S3 with real clients: the aws CLI's `s3` commands and boto3, path-style and
virtual-hosted addressing, streamed uploads in each payload mode clients send."""

import base64
import contextlib
import hashlib
import hmac
import json
import os
import socket
import threading
import time
import urllib.parse
import uuid
import zipfile

import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials
import botocore.exceptions
import pytest
import requests

from conftest import REGION, ROLE, create_function, eventually, invoke, zip_function


@pytest.fixture
def s3(nimbus):
    config = botocore.config.Config(retries={"max_attempts": 1}, signature_version="s3v4")
    return nimbus.session().client("s3", endpoint_url=nimbus.endpoint, config=config)


@pytest.fixture
def bucket(s3):
    name = f"e2e-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def cli(nimbus, *args):
    result = nimbus.aws("s3", *args, "--profile", "nimbus")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_aws_cli_copies_lists_presigns_and_removes(nimbus, tmp_path):
    name = f"cli-{uuid.uuid4().hex[:12]}"
    cli(nimbus, "mb", f"s3://{name}")
    source = tmp_path / "src"
    (source / "nested").mkdir(parents=True)
    payloads = {"a.txt": b"alpha\n", "nested/b.bin": os.urandom(300_000), "nested/with space+é.txt": b"odd name"}
    for relative, data in payloads.items():
        (source / relative).write_bytes(data)
    cli(nimbus, "sync", str(source), f"s3://{name}/tree")
    listed = cli(nimbus, "ls", "--recursive", f"s3://{name}")
    for relative in payloads:
        assert f"tree/{relative}" in listed
    assert "PRE nested/" in cli(nimbus, "ls", f"s3://{name}/tree/")

    back = tmp_path / "back"
    cli(nimbus, "cp", "--recursive", f"s3://{name}/tree", str(back))
    for relative, data in payloads.items():
        assert (back / relative).read_bytes() == data

    url = cli(nimbus, "presign", f"s3://{name}/tree/a.txt", "--expires-in", "60").strip()
    assert requests.get(url, timeout=30).content == b"alpha\n"
    cli(nimbus, "rm", "--recursive", f"s3://{name}/tree")
    assert cli(nimbus, "ls", "--recursive", f"s3://{name}") == ""
    cli(nimbus, "rb", f"s3://{name}")


def test_objects_keep_their_bytes_metadata_and_checksums(s3, bucket):
    data = os.urandom(2_000_000)
    put = s3.put_object(Bucket=bucket, Key="blob", Body=data, ContentType="application/x-test",
                        Metadata={"owner": "e2e"}, ChecksumAlgorithm="CRC32")
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="blob", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ContentType"] == "application/x-test"
    assert got["Metadata"] == {"owner": "e2e"}
    assert got["ChecksumCRC32"] == put["ChecksumCRC32"]
    part = s3.get_object(Bucket=bucket, Key="blob", Range="bytes=100-199")
    assert part["Body"].read() == data[100:200]
    assert part["ContentRange"] == f"bytes 100-199/{len(data)}"
    assert s3.head_object(Bucket=bucket, Key="blob")["ContentLength"] == len(data)

    with pytest.raises(s3.exceptions.ClientError) as not_modified:
        s3.get_object(Bucket=bucket, Key="blob", IfNoneMatch=put["ETag"])
    assert not_modified.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(s3.exceptions.ClientError) as failed:
        s3.get_object(Bucket=bucket, Key="blob", IfMatch='"not-it"')
    assert failed.value.response["Error"]["Code"] == "PreconditionFailed"
    with pytest.raises(s3.exceptions.ClientError) as unsatisfiable:
        s3.get_object(Bucket=bucket, Key="blob", Range=f"bytes={len(data)}-")
    assert unsatisfiable.value.response["Error"]["Code"] == "InvalidRange"


def test_bad_input_gets_s3s_errors_and_nothing_partial(s3, bucket):
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=bucket, Key="missing")
    with pytest.raises(s3.exceptions.NoSuchBucket):
        s3.list_objects_v2(Bucket=f"missing-{uuid.uuid4().hex[:8]}")
    with pytest.raises(s3.exceptions.ClientError) as bad_md5:
        s3.put_object(Bucket=bucket, Key="md5", Body=b"abc",
                      ContentMD5=base64.b64encode(hashlib.md5(b"xyz").digest()).decode())
    assert bad_md5.value.response["Error"]["Code"] == "BadDigest"
    with pytest.raises(s3.exceptions.ClientError) as bad_name:
        s3.create_bucket(Bucket="Not_A_Bucket")
    assert bad_name.value.response["Error"]["Code"] == "InvalidBucketName"
    with pytest.raises(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="keep", Body=b"x")
    with pytest.raises(s3.exceptions.ClientError) as not_empty:
        s3.delete_bucket(Bucket=bucket)
    assert not_empty.value.response["Error"]["Code"] == "BucketNotEmpty"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["keep"]


def test_listing_pages_and_groups_by_delimiter(s3, bucket):
    keys = ["a/1", "a/2", "b/1", "c", "d/e/f"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    seen, token = [], None
    while True:
        extra = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket=bucket, MaxKeys=2, **extra)
        seen += [o["Key"] for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert seen == keys
    grouped = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [o["Key"] for o in grouped["Contents"]] == ["c"]
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["a/", "b/", "d/"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="a/")["Contents"]] == ["a/1", "a/2"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, StartAfter="b/1")["Contents"]] == ["c", "d/e/f"]


def signed(nimbus, method, url, headers, payload):
    """A request signed as S3's SigV4 signer does, declaring `payload` as its
    `x-amz-content-sha256` (a mode rather than a hash); returns it with the secret."""

    class Signer(botocore.auth.S3SigV4Auth):
        def payload(self, request):
            return payload

    key_id, secret = nimbus.root_keys()
    request = botocore.awsrequest.AWSRequest(method=method, url=url, headers=headers)
    Signer(botocore.credentials.Credentials(key_id, secret), "s3", REGION).add_auth(request)
    return request, secret


def test_virtual_hosted_addressing(nimbus, s3, bucket):
    s3.put_object(Bucket=bucket, Key="dir/key", Body=b"by host")
    port = nimbus.endpoint.rsplit(":", 1)[1]
    host = f"{bucket}.localhost:{port}"
    request, _ = signed(nimbus, "GET", f"http://{host}/dir/key", {}, "UNSIGNED-PAYLOAD")
    headers = {**dict(request.headers.items()), "Host": host}
    response = requests.get(f"http://127.0.0.1:{port}/dir/key", headers=headers, timeout=30)
    assert (response.status_code, response.content) == (200, b"by host")


def chunked_upload(nimbus, bucket, key, chunks, tamper=False):
    """A PUT with STREAMING-AWS4-HMAC-SHA256-PAYLOAD, each chunk signed in a chain
    from the request's signature, as the SDKs' streaming signers do."""
    url = f"{nimbus.endpoint}/{bucket}/{key}"
    encoded_length = sum(len(f"{len(c):x};chunk-signature={'0' * 64}\r\n") + len(c) + 2 for c in chunks + [b""])
    headers = {
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(sum(map(len, chunks))),
        "content-length": str(encoded_length),
    }
    request, secret = signed(nimbus, "PUT", url, headers, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
    amz_date = request.headers["X-Amz-Date"]
    scope = f"{amz_date[:8]}/{REGION}/s3/aws4_request"
    key_bytes = ("AWS4" + secret).encode()
    for part in (amz_date[:8], REGION, "s3", "aws4_request"):
        key_bytes = hmac.new(key_bytes, part.encode(), hashlib.sha256).digest()
    previous = request.headers["Authorization"].rsplit("Signature=", 1)[1]
    body = b""
    for chunk in chunks + [b""]:
        to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous,
                             hashlib.sha256(b"").hexdigest(), hashlib.sha256(chunk).hexdigest()])
        previous = hmac.new(key_bytes, to_sign.encode(), hashlib.sha256).hexdigest()
        sent = chunk[:-1] + b"!" if tamper and chunk else chunk
        body += f"{len(chunk):x};chunk-signature={previous}\r\n".encode() + sent + b"\r\n"
    return requests.put(url, data=body, headers=dict(request.headers.items()), timeout=30)


def test_signed_aws_chunked_uploads_are_checked_chunk_by_chunk(nimbus, s3, bucket):
    chunks = [os.urandom(65536), os.urandom(65536), os.urandom(1000)]
    response = chunked_upload(nimbus, bucket, "chunked", chunks)
    assert response.status_code == 200, response.text
    assert s3.get_object(Bucket=bucket, Key="chunked")["Body"].read() == b"".join(chunks)

    tampered = chunked_upload(nimbus, bucket, "tampered", chunks, tamper=True)
    assert tampered.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in tampered.text
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=bucket, Key="tampered")


def test_multipart_uploads_server_side_copies_and_batch_deletes(nimbus, s3, bucket, tmp_path):
    big = tmp_path / "big"
    big.write_bytes(os.urandom(20_000_000))
    # Above 8 MB the CLI uploads in parts, and copies with UploadPartCopy.
    cli(nimbus, "cp", str(big), f"s3://{bucket}/big")
    assert s3.head_object(Bucket=bucket, Key="big")["ETag"].endswith('-3"')
    cli(nimbus, "cp", f"s3://{bucket}/big", f"s3://{bucket}/copied")
    cli(nimbus, "cp", f"s3://{bucket}/copied", str(tmp_path / "back"))
    assert (tmp_path / "back").read_bytes() == big.read_bytes()

    upload = s3.create_multipart_upload(Bucket=bucket, Key="parts")["UploadId"]
    small = s3.upload_part(Bucket=bucket, Key="parts", UploadId=upload, PartNumber=1, Body=b"too small")
    last = s3.upload_part(Bucket=bucket, Key="parts", UploadId=upload, PartNumber=2, Body=b"end")
    assert [p["PartNumber"] for p in s3.list_parts(Bucket=bucket, Key="parts", UploadId=upload)["Parts"]] == [1, 2]
    with pytest.raises(s3.exceptions.ClientError) as too_small:
        s3.complete_multipart_upload(Bucket=bucket, Key="parts", UploadId=upload, MultipartUpload={"Parts": [
            {"PartNumber": 1, "ETag": small["ETag"]}, {"PartNumber": 2, "ETag": last["ETag"]}]})
    assert too_small.value.response["Error"]["Code"] == "EntityTooSmall"
    with pytest.raises(s3.exceptions.ClientError) as absent:
        s3.head_object(Bucket=bucket, Key="parts")
    assert absent.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    s3.abort_multipart_upload(Bucket=bucket, Key="parts", UploadId=upload)
    with pytest.raises(s3.exceptions.NoSuchUpload):
        s3.list_parts(Bucket=bucket, Key="parts", UploadId=upload)

    copied = s3.copy_object(Bucket=bucket, Key="small-copy", CopySource={"Bucket": bucket, "Key": "big"},
                            MetadataDirective="REPLACE", Metadata={"kind": "copy"})
    assert copied["CopyObjectResult"]["ETag"] == s3.head_object(Bucket=bucket, Key="big")["ETag"]
    assert s3.head_object(Bucket=bucket, Key="small-copy")["Metadata"] == {"kind": "copy"}
    deleted = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "big"}, {"Key": "copied"}, {"Key": "absent"}]})
    assert sorted(d["Key"] for d in deleted["Deleted"]) == ["absent", "big", "copied"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["small-copy"]


def test_functions_take_their_code_from_a_bucket(nimbus, s3, bucket, lambda_client, unique_name):
    s3.put_object(Bucket=bucket, Key="code/probe.zip", Body=zip_function("py_probe"))
    lambda_client.create_function(FunctionName=unique_name, Runtime="python3.12", Role=ROLE, Handler="app.handler",
                                  Code={"S3Bucket": bucket, "S3Key": "code/probe.zip"})
    lambda_client.get_waiter("function_active_v2").wait(FunctionName=unique_name,
                                                        WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    _, body = invoke(lambda_client, unique_name, {"from": "s3"})
    assert body["event"] == {"from": "s3"}
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as missing:
        lambda_client.update_function_code(FunctionName=unique_name, S3Bucket=bucket, S3Key="code/absent.zip")
    assert "NoSuchKey" in missing.value.response["Error"]["Message"]


def test_an_upload_triggers_its_function_with_s3s_event(nimbus, s3, bucket, lambda_client, unique_name,
                                                         callbacks, tmp_path):
    create_function(lambda_client, unique_name, zip_function("py_callback"),
                    Environment={"Variables": {"CALLBACK_URL": callbacks.url}})
    arn = lambda_client.get_function(FunctionName=unique_name)["Configuration"]["FunctionArn"]
    configuration = {"LambdaFunctionConfigurations": [{
        "Id": "jpegs", "LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "in/"}, {"Name": "suffix", "Value": ".jpg"}]}},
    }]}
    # Without a resource policy letting S3 invoke the function, the configuration is refused.
    with pytest.raises(s3.exceptions.ClientError) as refused:
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=configuration)
    assert refused.value.response["Error"]["Code"] == "InvalidArgument"
    lambda_client.add_permission(FunctionName=unique_name, StatementId="s3", Action="lambda:InvokeFunction",
                                 Principal="s3.amazonaws.com", SourceArn=f"arn:aws:s3:::{bucket}")
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=configuration)
    stored = s3.get_bucket_notification_configuration(Bucket=bucket)["LambdaFunctionConfigurations"]
    assert [(c["Id"], c["LambdaFunctionArn"]) for c in stored] == [("jpegs", arn)]

    photo = tmp_path / "my cat.jpg"
    photo.write_bytes(b"\xff\xd8 not really a jpeg")
    cli(nimbus, "cp", str(photo), f"s3://{bucket}/in/my cat.jpg")
    [post] = callbacks.wait_for(1)
    [record] = post["event"]["Records"]
    assert record["eventSource"] == "aws:s3"
    assert record["eventName"] == "ObjectCreated:Put"
    assert record["s3"]["bucket"]["name"] == bucket
    assert record["s3"]["configurationId"] == "jpegs"
    assert record["s3"]["object"]["key"] == "in/my+cat.jpg"
    assert record["s3"]["object"]["size"] == photo.stat().st_size

    # Filters that do not match trigger nothing.
    s3.put_object(Bucket=bucket, Key="in/notes.txt", Body=b"text")
    s3.put_object(Bucket=bucket, Key="elsewhere/cat.jpg", Body=b"jpeg")
    time.sleep(3)
    assert len(callbacks.posts) == 1


def test_an_upload_makes_a_function_write_a_derived_object_with_boto3(nimbus, s3, lambda_client, unique_name,
                                                                        boto3_layer, tmp_path):
    """The AWS tutorial's shape: `aws s3 cp` into one bucket, a python function (plain
    boto3, as its execution role) writes a derived object to another."""
    iam = nimbus.client("iam")
    source, target = f"in-{unique_name[-8:]}", f"out-{unique_name[-8:]}"
    for name in (source, target):
        s3.create_bucket(Bucket=name)
    role = f"thumbnailer-{unique_name[-8:]}"
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    role_arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName=role, PolicyName="io", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{source}/*"},
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{target}/*"}]}))
    layer = lambda_client.publish_layer_version(LayerName=f"boto3-{unique_name[-8:]}", Content={"ZipFile": boto3_layer})
    app = (
        "import urllib.parse\n"
        "import boto3\n"
        "s3 = boto3.client('s3')\n"
        "def handler(event, context):\n"
        "    for record in event['Records']:\n"
        "        key = urllib.parse.unquote_plus(record['s3']['object']['key'])\n"
        "        body = s3.get_object(Bucket=record['s3']['bucket']['name'], Key=key)['Body'].read()\n"
        f"        s3.put_object(Bucket='{target}', Key='derived/' + key, Body=body.upper())\n"
    )
    code = tmp_path / "code.zip"
    with zipfile.ZipFile(code, "w") as archive:
        info = zipfile.ZipInfo("app.py")
        info.external_attr = 0o644 << 16
        archive.writestr(info, app)
    lambda_client.create_function(FunctionName=unique_name, Runtime="python3.12", Role=role_arn, Handler="app.handler",
                                  Code={"ZipFile": code.read_bytes()}, Layers=[layer["LayerVersionArn"]], Timeout=30)
    lambda_client.get_waiter("function_active_v2").wait(FunctionName=unique_name)
    lambda_client.add_permission(FunctionName=unique_name, StatementId="s3", Action="lambda:InvokeFunction",
                                 Principal="s3.amazonaws.com", SourceArn=f"arn:aws:s3:::{source}")
    arn = lambda_client.get_function(FunctionName=unique_name)["Configuration"]["FunctionArn"]
    s3.put_bucket_notification_configuration(Bucket=source, NotificationConfiguration={"LambdaFunctionConfigurations": [
        {"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"],
         "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": ".txt"}]}}}]})

    photo = tmp_path / "photo one.txt"
    photo.write_bytes(b"a small photo")
    cli(nimbus, "cp", str(photo), f"s3://{source}/photo one.txt")
    (tmp_path / "skip.bin").write_bytes(b"no")
    cli(nimbus, "cp", str(tmp_path / "skip.bin"), f"s3://{source}/skip.bin")

    def derived():
        try:
            return s3.get_object(Bucket=target, Key="derived/photo one.txt")["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None

    assert eventually(lambda: derived() is not None, timeout=60)
    assert derived() == b"A SMALL PHOTO"
    time.sleep(1)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=target)["Contents"]] == ["derived/photo one.txt"], \
        "the suffix filter let nothing else through"


# --- Trust boundaries ---------------------------------------------------------------


def user_client(nimbus, *statements):
    """An S3 client for a new IAM user whose only policy holds `statements`."""
    iam = nimbus.client("iam")
    name = f"s3-user-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="only",
                        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": list(statements)}))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    config = botocore.config.Config(retries={"max_attempts": 1}, signature_version="s3v4")
    session = nimbus.session(key["AccessKeyId"], key["SecretAccessKey"])
    return session.client("s3", endpoint_url=nimbus.endpoint, config=config)


def bucket_policy(s3, bucket, *statements):
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": list(statements)}))


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def test_a_batch_delete_is_authorized_key_by_key(nimbus, s3, bucket):
    for key in ["allowed/a", "allowed/b", "allowed/kept-by-policy", "other/c"]:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    bucket_policy(s3, bucket, {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",
                               "Resource": f"arn:aws:s3:::{bucket}/allowed/kept-by-policy"})
    user = user_client(nimbus, {"Effect": "Allow", "Action": "s3:DeleteObject",
                                "Resource": f"arn:aws:s3:::{bucket}/allowed/*"})

    keys = ["allowed/a", "other/c", "allowed/kept-by-policy", "allowed/b"]
    result = user.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in keys]})
    assert sorted(d["Key"] for d in result["Deleted"]) == ["allowed/a", "allowed/b"]
    assert sorted((e["Key"], e["Code"]) for e in result["Errors"]) == [
        ("allowed/kept-by-policy", "AccessDenied"), ("other/c", "AccessDenied")]
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == ["allowed/kept-by-policy", "other/c"]


def copy_with_raw_source(client, bucket, key, header):
    """CopyObject with `x-amz-copy-source` sent exactly as given (boto3 would encode it)."""
    def raw_source(request, **_):
        del request.headers["x-amz-copy-source"]
        request.headers["x-amz-copy-source"] = header

    client.meta.events.register_first("before-sign.s3.CopyObject", raw_source)
    try:
        return client.copy_object(Bucket=bucket, Key=key, CopySource="placeholder/placeholder")
    finally:
        client.meta.events.unregister("before-sign.s3.CopyObject", raw_source)


def test_a_copy_source_is_authorized_as_the_object_it_copies(nimbus, s3, bucket):
    source = f"e2e-src-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=source)
    s3.put_object(Bucket=source, Key="public/a", Body=b"public")
    s3.put_object(Bucket=source, Key="secret/b", Body=b"secret")
    user = user_client(
        nimbus,
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/*"},
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
        {"Effect": "Deny", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{source}/secret/*"})

    # However the source is encoded, the object authorized is the object copied.
    copy_with_raw_source(user, bucket, "copy", f"{source}%2Fpublic%2Fa")
    assert s3.get_object(Bucket=bucket, Key="copy")["Body"].read() == b"public"
    for header in [f"%2F{source}/secret/b", f"{source}%2Fsecret%2Fb", f"/{source}/secret/b"]:
        with pytest.raises(botocore.exceptions.ClientError) as denied:
            copy_with_raw_source(user, bucket, "leak", header)
        assert error_code(denied) == "AccessDenied", header
    # A version is read with s3:GetObjectVersion, which the user lacks.
    with pytest.raises(botocore.exceptions.ClientError) as denied:
        user.copy_object(Bucket=bucket, Key="leak", CopySource={"Bucket": source, "Key": "public/a", "VersionId": "null"})
    assert error_code(denied) == "AccessDenied"
    with pytest.raises(botocore.exceptions.ClientError) as malformed:
        copy_with_raw_source(user, bucket, "leak", f"{source}%FF/public/a")
    assert error_code(malformed) == "InvalidArgument"

    # The source bucket's own policy takes part.
    bucket_policy(s3, source, {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
                               "Resource": f"arn:aws:s3:::{source}/public/*"})
    with pytest.raises(botocore.exceptions.ClientError) as denied:
        user.copy_object(Bucket=bucket, Key="leak", CopySource={"Bucket": source, "Key": "public/a"})
    assert error_code(denied) == "AccessDenied"
    with pytest.raises(botocore.exceptions.ClientError) as absent:
        s3.head_object(Bucket=bucket, Key="leak")
    assert absent.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_objects_do_not_outlive_a_bucket_deleted_while_they_are_written(s3):
    name = f"e2e-race-{uuid.uuid4().hex[:12]}"
    for _ in range(5):
        s3.create_bucket(Bucket=name)
        stop = threading.Event()

        def write(worker):
            # Each object is deleted again, so the bucket is empty now and then and
            # DeleteBucket gets its chance while other PUTs are in flight.
            for n in range(100_000):
                if stop.is_set():
                    return
                key = f"w{worker}/{n}"
                # Once the bucket is gone these fail; what counts is what is left.
                with contextlib.suppress(botocore.exceptions.ClientError):
                    s3.put_object(Bucket=name, Key=key, Body=b"x")
                    s3.delete_object(Bucket=name, Key=key)

        writers = [threading.Thread(target=write, args=(n,)) for n in range(8)]
        for writer in writers:
            writer.start()
        try:
            while True:
                try:
                    s3.delete_bucket(Bucket=name)
                    break
                except botocore.exceptions.ClientError as err:
                    assert err.response["Error"]["Code"] == "BucketNotEmpty"
        finally:
            stop.set()
            for writer in writers:
                writer.join(timeout=60)
        s3.create_bucket(Bucket=name)
        assert s3.list_objects_v2(Bucket=name)["KeyCount"] == 0, "an object outlived its bucket"
        s3.delete_bucket(Bucket=name)


def test_an_answer_before_the_body_closes_the_connection(nimbus, s3, bucket):
    # botocore sends PutObject with `Expect: 100-continue` and, given a final answer
    # instead of 100, skips the body and reuses the connection: the server must not
    # read that next request as the rest of the skipped body.
    host = nimbus.endpoint.split("//", 1)[1]

    def exchange(connection, method, path, body, expect=False):
        headers = {"Content-Length": str(len(body)), **({"Expect": "100-continue"} if expect else {})}
        request, _ = signed(nimbus, method, f"{nimbus.endpoint}{path}", headers, "UNSIGNED-PAYLOAD")
        head = "".join(f"{name}: {value}\r\n" for name, value in request.headers.items())
        connection.sendall(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{head}\r\n".encode())
        if not expect:
            connection.sendall(body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += connection.recv(65536)
        head, _, rest = answer.partition(b"\r\n\r\n")
        fields = dict(line.split(": ", 1) for line in head.decode().lower().split("\r\n")[1:])
        while len(rest) < int(fields.get("content-length", 0)):
            rest += connection.recv(65536)
        return head.split(b" ")[1], fields

    address, port = host.rsplit(":", 1)
    with socket.create_connection((address, int(port)), timeout=30) as connection:
        status, fields = exchange(connection, "PUT", f"/{bucket}/kept", b"body")
        assert (status, fields.get("connection")) == (b"200", None)
        status, fields = exchange(connection, "PUT", f"/{bucket}-missing/key", b"x", expect=True)
        assert (status, fields.get("connection")) == (b"404", "close")
        assert connection.recv(1) == b"", "the connection stays open after a body it did not read"
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"body"


def test_slow_readers_do_not_stall_writers(nimbus, s3, bucket):
    s3.put_object(Bucket=bucket, Key="large", Body=os.urandom(16 << 20))
    url = urllib.parse.urlsplit(s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "large"}))
    request = f"GET {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\n\r\n".encode()
    readers = []
    try:
        # More readers than tokio's blocking pool has threads (512), each reading one
        # byte and then nothing, with a small receive window so the server's writes stop.
        for _ in range(600):
            reader = socket.socket()
            reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            reader.settimeout(30)
            reader.connect((url.hostname, url.port))
            reader.sendall(request)
            readers.append(reader)
        for reader in readers:
            assert reader.recv(1) == b"H", "every reader's response starts"

        done = threading.Event()
        writer = threading.Thread(target=lambda: (s3.put_object(Bucket=bucket, Key="written", Body=b"x"), done.set()))
        writer.start()
        writer.join(timeout=30)
        assert done.is_set(), "a PUT waited for slow readers"
    finally:
        for reader in readers:
            reader.close()
    assert s3.get_object(Bucket=bucket, Key="written")["Body"].read() == b"x"
