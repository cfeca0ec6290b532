"""`nimbus migrate-store`: a deployment moved from the embedded defaults to PostgreSQL +
S3 (Garage) and back keeps its buckets, objects, functions, users and root keys, and
the command refuses a target that already holds records."""

import io
import os
import signal
import subprocess
import urllib.parse

import boto3.s3.transfer
import pytest

import backends
from conftest import (EXTERNAL_BACKENDS, create_function, invoke, nimbus_binary, start_nimbus,
                      zip_function)

EMBEDDED = ("--metadata", "sqlite", "--blobs", "file")
BIG = os.urandom(20 << 20)


@pytest.fixture
def target(request):
    """A fresh database and bucket prefix on the external backends, with the server
    flags and environment naming them."""
    known = EXTERNAL_BACKENDS.environment()
    name = f"migrate_{abs(hash(request.node.nodeid)) % 10**8}_{os.getpid()}"
    database = backends.create_database(known["NIMBUS_TEST_POSTGRES"], name)
    bucket = urllib.parse.urlsplit(known["NIMBUS_TEST_S3"])
    blobs = urllib.parse.urlunsplit(bucket._replace(path=f"/{name}"))
    env = {
        "NIMBUS_BLOBS_ACCESS_KEY_ID": known["NIMBUS_TEST_S3_ACCESS_KEY_ID"],
        "NIMBUS_BLOBS_SECRET_ACCESS_KEY": known["NIMBUS_TEST_S3_SECRET_ACCESS_KEY"],
    }
    yield database, blobs, env
    backends.drop_database(known["NIMBUS_TEST_POSTGRES"], name)


def migrate(*args, env=None):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("NIMBUS_")}
    full_env.update(env or {})
    return subprocess.run([nimbus_binary(), "migrate-store", *args], capture_output=True, text=True,
                          env=full_env, timeout=300)


def fill(server):
    s3 = server.client("s3")
    s3.create_bucket(Bucket="moving")
    s3.put_object(Bucket="moving", Key="small.txt", Body=b"hello")
    # Multipart, so the object is assembled from parts in the blob store.
    config = boto3.s3.transfer.TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20)
    s3.upload_fileobj(io.BytesIO(BIG), "moving", "big.bin", Config=config)
    create_function(server.lambda_client(), "mover", zip_function("py_probe"))
    server.client("iam").create_user(UserName="alice")


def check(server, root_keys):
    assert server.root_keys() == root_keys
    s3 = server.client("s3")
    assert s3.get_object(Bucket="moving", Key="small.txt")["Body"].read() == b"hello"
    assert s3.get_object(Bucket="moving", Key="big.bin")["Body"].read() == BIG
    response, _ = invoke(server.lambda_client(), "mover", {})
    assert response["StatusCode"] == 200 and "FunctionError" not in response
    assert server.client("iam").get_user(UserName="alice")["User"]["UserName"] == "alice"


def test_a_deployment_moves_to_postgres_and_s3_and_back(tmp_path, target):
    database, blobs, env = target
    first = start_nimbus(tmp_path / "first", *EMBEDDED)
    try:
        fill(first)
        root_keys = first.root_keys()
    finally:
        first.kill(signal.SIGTERM)

    there = migrate("--from-data-dir", str(tmp_path / "first"), "--to-metadata", database, "--to-blobs", blobs, env=env)
    assert there.returncode == 0, there.stderr
    assert "verified" in there.stdout and "s3.objects" in there.stdout

    again = migrate("--from-data-dir", str(tmp_path / "first"), "--to-metadata", database, "--to-blobs", blobs, env=env)
    assert again.returncode != 0 and "already holds records" in again.stderr

    moved = start_nimbus(tmp_path / "moved", "--metadata", database, "--blobs", blobs, env=env)
    try:
        check(moved, root_keys)
    finally:
        moved.kill(signal.SIGTERM)

    back = migrate("--from-data-dir", str(tmp_path / "moved"), "--from-metadata", database, "--from-blobs", blobs,
                   "--to-data-dir", str(tmp_path / "back"), "--to-metadata", "sqlite", "--to-blobs", "file", env=env)
    assert back.returncode == 0, back.stderr
    returned = start_nimbus(tmp_path / "back", *EMBEDDED)
    try:
        check(returned, root_keys)
    finally:
        returned.kill(signal.SIGTERM)


def test_a_running_server_is_not_migrated_from(tmp_path, target):
    database, blobs, env = target
    running = start_nimbus(tmp_path / "live", *EMBEDDED)
    try:
        refused = migrate("--from-data-dir", str(tmp_path / "live"), "--to-metadata", database, "--to-blobs", blobs,
                          env=env)
        assert refused.returncode != 0 and "stop it first" in refused.stderr
    finally:
        running.kill(signal.SIGTERM)
