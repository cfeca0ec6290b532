"""Hostile images: a malicious registry, started here, serves crafted manifests and
layers (a digest that is a path, symlinks planted to reach the host, a hard link out,
a gzip bomb, a blob longer than declared, an /etc/passwd that points at the host) to
ECS tasks, and a hostile layer pushed to nimbus's own registry backs a Lambda
function. Canary directories beside the server's data directory must come through
untouched; each task stops the way ECS stops a task whose image cannot be used, and
the function fails to become Active."""

import gzip
import hashlib
import io
import json
import os
import signal
import tarfile
import tempfile
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import botocore.exceptions
import pytest

from conftest import start_nimbus

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class MaliciousRegistry:
    """Enough of the OCI distribution API for a pull: `/v2/`, manifests by tag and
    blobs by digest, all from memory, whatever they say."""

    def __init__(self):
        self.manifests, self.blobs = {}, {}
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.do_GET(body=False)

            def do_GET(self, body=True):
                parts = self.path.split("?")[0].strip("/").split("/")
                found = None
                if parts == ["v2"]:
                    found = (b"{}", "application/json")
                elif len(parts) >= 4 and parts[-2] == "manifests":
                    data = registry.manifests.get(("/".join(parts[1:-2]), parts[-1]))
                    found = data and (data, MANIFEST)
                elif len(parts) >= 4 and parts[-2] == "blobs":
                    data = registry.blobs.get(parts[-1])
                    found = data and (data, "application/octet-stream")
                if not found:
                    self.send_response(404)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    if body:
                        self.wfile.write(b'{"errors":[{"code":"NAME_UNKNOWN","message":"unknown"}]}')
                    return
                data, content_type = found
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Docker-Content-Digest", sha256(data))
                self.end_headers()
                if body:
                    self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def image(self, name, layers, user=None, declared=None):
        """Serves an image of `layers` (each (digest, bytes); bytes served under the
        digest as given, their size as `declared` if given); its reference."""
        config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/true"]},
                  "rootfs": {"type": "layers", "diff_ids": [digest for digest, _ in layers]}}
        if user:
            config["config"]["User"] = user
        config = json.dumps(config).encode()
        self.blobs[sha256(config)] = config
        descriptors = []
        for digest, data in layers:
            self.blobs[digest] = data
            descriptors.append({"mediaType": LAYER, "digest": digest, "size": declared or len(data)})
        manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                               "config": {"mediaType": CONFIG, "digest": sha256(config), "size": len(config)},
                               "layers": descriptors}).encode()
        self.manifests[(name, "v1")] = manifest
        return f"{self.host}/{name}:v1"


def layer(*members) -> tuple:
    """A gzipped layer tar of (name, type, target-or-bytes) members, names as
    written; with its true digest."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, kind, value in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = value
                tar.addfile(info)
            elif kind == tarfile.REGTYPE:
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value))
            else:
                tar.addfile(info)
    data = gzip.compress(raw.getvalue())
    return sha256(data), data


@pytest.fixture(scope="module")
def place():
    """A directory holding the server's data directory and, beside it, canaries."""
    with tempfile.TemporaryDirectory(prefix="nimbus-hostile-") as directory:
        root = Path(directory)
        canary = root / "canary"
        (canary / "keep").mkdir(parents=True)
        (canary / "file").write_text("canary")
        (canary / "passwd").write_text("hostuser:x:4242:4242::/:/bin/sh\n")
        yield root


@pytest.fixture(scope="module")
def server(place):
    # A small layer bound, so the bomb below stays small.
    nimbus = start_nimbus(place / "data", env={"NIMBUS_IMAGE_LAYER_MAX_MB": "16"})
    try:
        yield nimbus
    finally:
        nimbus.kill(signal.SIGTERM)


@pytest.fixture(scope="module")
def ecs(server):
    client = server.client("ecs")
    client.create_cluster()
    return client


@pytest.fixture(scope="module")
def registry():
    served = MaliciousRegistry()
    yield served
    served.server.shutdown()


def assert_canary_intact(place):
    canary = place / "canary"
    assert sorted(p.name for p in canary.iterdir()) == ["file", "keep", "passwd"]
    assert (canary / "file").read_text() == "canary"
    assert (canary / "file").stat().st_nlink == 1
    assert list((canary / "keep").iterdir()) == []
    assert sorted(p.name for p in place.iterdir()) == ["canary", "data"]


def stopped_reason(ecs, image):
    family = f"hostile-{uuid.uuid4().hex[:8]}"
    definition = ecs.register_task_definition(family=family, networkMode="host", containerDefinitions=[
        {"name": "app", "image": image, "memory": 64, "essential": True}])["taskDefinition"]["taskDefinitionArn"]
    [task] = ecs.run_task(taskDefinition=definition)["tasks"]
    try:
        ecs.get_waiter("tasks_stopped").wait(tasks=[task["taskArn"]], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    except botocore.exceptions.WaiterError:
        raise AssertionError(json.dumps(ecs.describe_tasks(tasks=[task["taskArn"]]), default=str)) from None
    stopped = ecs.describe_tasks(tasks=[task["taskArn"]])["tasks"][0]
    assert stopped["stopCode"] == "TaskFailedToStart", stopped
    return stopped["stoppedReason"]


def test_a_digest_that_is_a_path_removes_nothing(place, ecs, registry):
    # From <data>/ecs/snapshots, this "digest" names the canary directory.
    traversal = "tmp/" + "../" * 4 + "canary"
    image = registry.image("traversal", [(traversal, b"not a layer")])
    reason = stopped_reason(ecs, image)
    assert reason.startswith("CannotPullContainerError"), reason
    assert "digest" in reason, reason
    assert_canary_intact(place)


@pytest.mark.parametrize("members", [
    # The case: plant `x -> <host dir>`, then white out through it.
    lambda canary: [("x", tarfile.SYMTYPE, str(canary)), ("x/.wh.file", tarfile.REGTYPE, b"")],
    lambda canary: [("x", tarfile.SYMTYPE, str(canary)), ("x/.wh..wh..opq", tarfile.REGTYPE, b"")],
    lambda canary: [("y", tarfile.SYMTYPE, "../" * 12 + str(canary).lstrip("/")),
                    ("y/keep/planted", tarfile.REGTYPE, b"x")],
    lambda canary: [("a", tarfile.SYMTYPE, "b"), ("b", tarfile.SYMTYPE, str(canary)),
                    ("a/planted", tarfile.REGTYPE, b"x")],
    lambda canary: [("h", tarfile.LNKTYPE, "../" * 12 + str(canary / "file").lstrip("/"))],
    lambda canary: [("x", tarfile.SYMTYPE, str(canary)), ("h", tarfile.LNKTYPE, "x/file")],
    lambda canary: [("../" * 12 + str(canary / "file").lstrip("/"), tarfile.REGTYPE, b"overwritten")],
], ids=["whiteout-through-symlink", "opaque-through-symlink", "climbing-symlink", "symlink-chain",
        "hardlink-out", "hardlink-through-symlink", "parent-dir-name"])
def test_layers_that_reach_for_the_host_fail_to_pull(place, ecs, registry, members):
    image = registry.image(f"tricks-{uuid.uuid4().hex[:6]}", [layer(*members(place / "canary"))])
    reason = stopped_reason(ecs, image)
    assert reason.startswith("CannotPullContainerError"), reason
    assert_canary_intact(place)


def test_a_gzip_bomb_stops_at_the_layer_bound(place, server, ecs, registry):
    bomb = layer(("zeros", tarfile.REGTYPE, bytes(64 << 20)))
    assert len(bomb[1]) < 1 << 20
    reason = stopped_reason(ecs, registry.image("bomb", [bomb]))
    assert reason.startswith("CannotPullContainerError") and "decompresses to more than" in reason, reason
    # Nothing half-unpacked stays behind.
    assert list((server.data_dir / "ecs" / "snapshots" / "tmp").iterdir()) == []
    assert_canary_intact(place)


def test_a_blob_longer_than_its_descriptor_is_cut_off(place, ecs, registry):
    long = layer(("noise", tarfile.REGTYPE, os.urandom(256 << 10)))
    reason = stopped_reason(ecs, registry.image("long", [long], declared=1024))
    assert reason.startswith("CannotPullContainerError") and "larger than its descriptor" in reason, reason
    assert_canary_intact(place)


def test_a_user_is_looked_up_in_the_image_never_on_the_host(place, ecs, registry):
    # /etc/passwd points at a host file naming `hostuser`; inside the image it leads nowhere.
    passwd = layer(("etc", tarfile.DIRTYPE, None), ("etc/passwd", tarfile.SYMTYPE, str(place / "canary" / "passwd")))
    image = registry.image("user", [passwd], user="hostuser")
    reason = stopped_reason(ecs, image)
    assert "unable to find user hostuser" in reason, reason
    assert_canary_intact(place)


def push(server, repo, layers):
    """Pushes an image of `layers` to the server's own registry over the OCI API, as
    a hostile client could; its URI."""
    ecr = server.client("ecr")
    ecr.create_repository(repositoryName=repo)
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    auth = {"Authorization": f"Basic {token}"}

    def call(method, path, data=None, headers=None):
        request = urllib.request.Request(path if path.startswith("http") else server.endpoint + path,
                                         data=data, method=method, headers={**auth, **(headers or {})})
        with urllib.request.urlopen(request, timeout=30) as response:
            return response

    def blob(data):
        started = call("POST", f"/v2/{repo}/blobs/uploads/", data=b"")
        location = started.headers["Location"]
        location = location if location.startswith("http") else server.endpoint + location
        separator = "&" if "?" in location else "?"
        call("PUT", f"{location}{separator}digest={sha256(data)}", data=data,
             headers={"Content-Type": "application/octet-stream"})
        return sha256(data)

    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/true"]},
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": blob(config), "size": len(config)},
        "layers": [{"mediaType": LAYER, "digest": blob(data), "size": len(data)} for _, data in layers],
    }).encode()
    call("PUT", f"/v2/{repo}/manifests/v1", data=manifest, headers={"Content-Type": MANIFEST})
    return f"{server.endpoint.removeprefix('http://')}/{repo}:v1"


def test_an_image_function_whose_layer_reaches_for_the_host_fails(place, server):
    canary = place / "canary"
    uri = push(server, f"hostile-{uuid.uuid4().hex[:6]}",
               [layer(("x", tarfile.SYMTYPE, str(canary)), ("x/.wh.file", tarfile.REGTYPE, b""))])
    client = server.client("lambda")
    name = f"hostile-{uuid.uuid4().hex[:6]}"
    client.create_function(FunctionName=name, PackageType="Image", Code={"ImageUri": uri},
                           Role="arn:aws:iam::000000000000:role/lambda-role")
    for _ in range(120):
        configuration = client.get_function_configuration(FunctionName=name)
        if configuration["State"] != "Pending":
            break
        time.sleep(0.5)
    assert configuration["State"] == "Failed", configuration
    assert "unpacking layer" in configuration["StateReason"], configuration
    assert_canary_intact(place)
