"""nimbus on external backends: records in PostgreSQL, blobs in an S3 bucket (Garage).
The data dir is only a cache then: a server on a new, empty one serves everything
again. An outage of either backend is answered with 503 ServiceUnavailable, quickly,
and heals by itself once the backend is back. A backend unreachable at start is a
start error naming it.

These run in both modes, on a PostgreSQL and a Garage of their own, which they stop
and start again."""

import io
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import botocore.config
import botocore.exceptions
import pytest
import requests
from boto3.s3.transfer import TransferConfig

import backends
from conftest import create_function, eventually, invoke, nimbus_binary, start_nimbus, zip_function

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def external():
    """A PostgreSQL and a Garage of this module's own."""
    pair = backends.Backends(tempfile.mkdtemp(prefix="nimbus-backends-"))
    try:
        yield pair.start()
    finally:
        pair.remove()


@pytest.fixture
def place(external):
    """A database and a bucket prefix of the test's own, as server flags and their
    environment; both backends are running again after the test."""
    name = f"t_{secrets.token_hex(4)}"
    database = external.postgres.create_database(name)
    blobs = f"s3://{backends.BUCKET}/{name}?endpoint={external.garage.endpoint}&region={backends.REGION}"
    env = {
        "NIMBUS_BLOBS_ACCESS_KEY_ID": external.garage.access_key_id,
        "NIMBUS_BLOBS_SECRET_ACCESS_KEY": external.garage.secret_access_key,
    }
    yield ["--metadata", database, "--blobs", blobs], env
    external.postgres.start()
    external.garage.start()


@pytest.fixture
def servers():
    """Starts servers on data dirs of their own; stops them and removes the dirs."""
    started, directories = [], []

    def start(args, env):
        directory = Path(tempfile.mkdtemp(prefix="nimbus-e2e-"))
        directories.append(directory)
        server = start_nimbus(directory, *args, env=env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill(signal.SIGTERM)
    for directory in directories:
        shutil.rmtree(directory, ignore_errors=True)


def client(server, service):
    """A client that sees the first answer (botocore retries 503s otherwise) and
    gives up on a hang."""
    config = botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5,
                                    read_timeout=30, s3={"addressing_style": "path"})
    return server.session().client(service, endpoint_url=server.endpoint, config=config)


def unavailable(call):
    """Calls `call`, which must fail with 503 ServiceUnavailable (not hang: the
    client's read timeout would fail it otherwise); returns the error."""
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        call()
    response = excinfo.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 503, response
    assert response["Error"]["Code"] == "ServiceUnavailable", response
    return excinfo.value


def health(server) -> dict:
    response = requests.get(server.endpoint + "/_nimbus/health", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def succeeds(call) -> bool:
    try:
        call()
        return True
    except botocore.exceptions.ClientError:
        return False


def test_state_lives_in_the_backends_and_the_data_dir_is_a_cache(servers, place):
    args, env = place
    first = servers(args, env)
    s3, lambda_client = client(first, "s3"), first.lambda_client()
    s3.create_bucket(Bucket="kept")
    small, large = os.urandom(MiB), os.urandom(20 * MiB)
    s3.put_object(Bucket="kept", Key="small.bin", Body=small)
    # Multipart: 20 MiB in parts of 5 MiB.
    transfer = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    s3.upload_fileobj(io.BytesIO(large), "kept", "dir/large.bin", Config=transfer)
    assert s3.get_object(Bucket="kept", Key="small.bin")["Body"].read() == small
    assert s3.get_object(Bucket="kept", Key="dir/large.bin")["Body"].read() == large
    create_function(lambda_client, "kept-fn", zip_function("py_probe"))
    response, body = invoke(lambda_client, "kept-fn", {"n": 1})
    assert response["StatusCode"] == 200 and "FunctionError" not in response, body
    assert body["event"] == {"n": 1}
    keys = first.root_keys()
    first.kill(signal.SIGTERM)

    # A server on the same backends and a new, empty data dir has it all.
    second = servers(args, env)
    assert second.root_keys() == keys
    s3, lambda_client = client(second, "s3"), second.lambda_client()
    assert "kept" in [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]
    listed = s3.list_objects_v2(Bucket="kept")["Contents"]
    assert {(o["Key"], o["Size"]) for o in listed} == {("small.bin", MiB), ("dir/large.bin", 20 * MiB)}
    assert s3.get_object(Bucket="kept", Key="small.bin")["Body"].read() == small
    assert s3.get_object(Bucket="kept", Key="dir/large.bin")["Body"].read() == large
    assert lambda_client.get_function(FunctionName="kept-fn")["Configuration"]["State"] == "Active"
    response, body = invoke(lambda_client, "kept-fn", {"n": 2})
    assert response["StatusCode"] == 200 and "FunctionError" not in response, body
    assert body["event"] == {"n": 2}


def test_a_postgres_outage_is_503_and_heals_without_a_restart(servers, place, external):
    args, env = place
    server = servers(args, env)
    lambda_client, s3 = client(server, "lambda"), client(server, "s3")
    s3.create_bucket(Bucket="before")
    assert health(server)["backends"]["metadata"] == "ok"

    external.postgres.stop()
    unavailable(lambda_client.list_functions)
    unavailable(s3.list_buckets)
    assert eventually(lambda: health(server)["backends"]["metadata"] != "ok", timeout=15), health(server)

    external.postgres.start()
    assert eventually(lambda: succeeds(lambda_client.list_functions), timeout=30)
    assert "before" in [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]
    s3.create_bucket(Bucket="after")
    assert eventually(lambda: health(server)["backends"]["metadata"] == "ok", timeout=15), health(server)


def test_an_s3_outage_is_503_and_heals_without_a_restart(servers, place, external):
    args, env = place
    server = servers(args, env)
    s3 = client(server, "s3")
    s3.create_bucket(Bucket="objects")
    s3.put_object(Bucket="objects", Key="a", Body=b"stored before")
    assert health(server)["backends"]["blobs"] == "ok"

    external.garage.stop()
    unavailable(lambda: s3.get_object(Bucket="objects", Key="a")["Body"].read())
    unavailable(lambda: s3.put_object(Bucket="objects", Key="b", Body=b"during"))
    assert eventually(lambda: health(server)["backends"]["blobs"] != "ok", timeout=15), health(server)

    external.garage.start()
    assert eventually(lambda: succeeds(lambda: s3.get_object(Bucket="objects", Key="a")), timeout=30)
    assert s3.get_object(Bucket="objects", Key="a")["Body"].read() == b"stored before"
    s3.put_object(Bucket="objects", Key="b", Body=b"after")
    assert s3.get_object(Bucket="objects", Key="b")["Body"].read() == b"after"
    assert eventually(lambda: health(server)["backends"]["blobs"] == "ok", timeout=15), health(server)


def start_fails(tmp_path, *args, env=None):
    """Runs `nimbus server` with `args`, which must exit non-zero (not keep running);
    returns what it wrote."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("NIMBUS_")}
    full_env.update(env or {})
    try:
        done = subprocess.run(
            [nimbus_binary(), "server", "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0", *args],
            capture_output=True, text=True, env=full_env, timeout=30,
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"nimbus server kept running with {args}: {expired.stdout}{expired.stderr}")
    assert done.returncode != 0, f"{done.stdout}{done.stderr}"
    return done.stdout + done.stderr


def test_an_unreachable_postgres_is_a_start_error_naming_it(tmp_path):
    port = backends.free_port()
    output = start_fails(tmp_path, "--metadata", f"postgres://nimbus@127.0.0.1:{port}/x")
    assert "postgres" in output.lower() and f"127.0.0.1:{port}" in output, output


def test_a_missing_bucket_is_a_start_error_naming_it(tmp_path, external):
    output = start_fails(
        tmp_path, "--blobs", f"s3://no-such-bucket?endpoint={external.garage.endpoint}&region={backends.REGION}",
        env={"NIMBUS_BLOBS_ACCESS_KEY_ID": external.garage.access_key_id,
             "NIMBUS_BLOBS_SECRET_ACCESS_KEY": external.garage.secret_access_key})
    assert "bucket no-such-bucket does not exist" in output, output


def test_outages_under_load_lose_no_acknowledged_write(servers, place, external):
    """Writers keep putting objects while PostgreSQL and then Garage stop for a few
    seconds each: every failure meanwhile is a retryable 503, writes succeed again
    without a restart, and every write that was acknowledged is there afterwards."""
    args, env = place
    server = servers(args, env)
    s3 = client(server, "s3")
    s3.create_bucket(Bucket="load")
    acknowledged, failures, stop = {}, [], threading.Event()

    def writer(n):
        own = client(server, "s3")
        sequence = 0
        while not stop.is_set():
            key, body = f"w{n}/{sequence}", os.urandom(64 * 1024 + sequence)
            sequence += 1
            try:
                own.put_object(Bucket="load", Key=key, Body=body)
                acknowledged[key] = body
            except botocore.exceptions.ClientError as error:
                failures.append(error.response["ResponseMetadata"]["HTTPStatusCode"])
                time.sleep(0.1)
            except botocore.exceptions.BotoCoreError as error:
                failures.append(type(error).__name__)
                time.sleep(0.1)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        for backend in (external.postgres, external.garage):
            assert eventually(lambda: len(acknowledged) >= 20, timeout=60)
            before = len(failures)
            backend.stop()
            assert eventually(lambda: len(failures) > before, timeout=30), "no write failed while a backend was down"
            time.sleep(3)
            backend.start()
            healed = len(acknowledged)
            assert eventually(lambda: len(acknowledged) > healed + 10, timeout=60), "writes did not resume"
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert set(failures) == {503}, f"failures other than 503: {sorted(set(failures))}"
    for key, body in acknowledged.items():
        assert s3.get_object(Bucket="load", Key=key)["Body"].read() == body, key
    listed = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="load"):
        listed.update(o["Key"] for o in page.get("Contents", []))
    assert set(acknowledged) <= listed
