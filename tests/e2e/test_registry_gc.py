"""The registry's garbage collection, running online: deleting images frees exactly
the blobs nothing references any more, and a blob pushed just before its manifest
survives collections that run in between."""

import base64
import hashlib
import json
import time
import urllib.error
import urllib.request

import pytest

from conftest import eventually

GRACE = 4


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Pusher:
    """Pushes blobs and manifests over plain OCI distribution requests."""

    def __init__(self, nimbus, repo):
        token = nimbus.client("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
        self.auth = "Basic " + token  # already base64("AWS:<password>")
        self.base = f"{nimbus.endpoint}/v2/{repo}"

    def request(self, method, path, data=None, content_type=None):
        headers = {"Authorization": self.auth}
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def blob(self, data: bytes) -> dict:
        status, body = self.request("POST", f"/blobs/uploads/?digest={digest(data)}", data)
        assert status == 201, body
        return {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(data), "size": len(data)}

    def manifest(self, tag, config: dict, layers: list) -> str:
        config = dict(config, mediaType="application/vnd.oci.image.config.v1+json")
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config, "layers": layers,
        }).encode()
        status, body = self.request("PUT", f"/manifests/{tag}", manifest, "application/vnd.oci.image.manifest.v1+json")
        assert status == 201, body
        return digest(manifest)


def stored_files(nimbus) -> int:
    return sum(1 for path in (nimbus.data_dir / "registry" / "blobs" / "sha256").rglob("*") if path.is_file())


@pytest.mark.embedded_only  # counts the blob files under the data dir
def test_deleting_images_frees_exactly_their_unreferenced_blobs(fresh_nimbus):
    nimbus = fresh_nimbus("--registry-gc-interval", "1", "--registry-gc-grace", str(GRACE))
    ecr = nimbus.client("ecr")
    ecr.create_repository(repositoryName="gc")
    push = Pusher(nimbus, "gc")
    shared = push.blob(b"shared layer " * 1000)
    doomed = push.manifest("doomed", push.blob(b'{"doomed":1}'), [shared, push.blob(b"own layer " * 500)])
    push.manifest("kept", push.blob(b'{"kept":1}'), [shared])
    before = stored_files(nimbus)
    assert before == 6  # two configs, two layers, two manifests

    ecr.batch_delete_image(repositoryName="gc", imageIds=[{"imageDigest": doomed}])
    # The doomed manifest's bytes, its config and its own layer go; nothing else.
    assert eventually(lambda: stored_files(nimbus) == before - 3, timeout=30), stored_files(nimbus)
    time.sleep(GRACE + 2)
    assert stored_files(nimbus) == before - 3
    status, _ = push.request("GET", "/manifests/kept")
    assert status == 200
    status, body = push.request("GET", f"/blobs/{shared['digest']}")
    assert status == 200 and body == b"shared layer " * 1000


def test_a_blob_pushed_before_its_manifest_survives_collections_in_between(fresh_nimbus):
    nimbus = fresh_nimbus("--registry-gc-interval", "1", "--registry-gc-grace", str(GRACE))
    nimbus.client("ecr").create_repository(repositoryName="race")
    push = Pusher(nimbus, "race")
    layer = push.blob(b"a layer still without its manifest " * 100)
    config = push.blob(b'{"race":1}')
    time.sleep(GRACE / 2)  # collections run meanwhile
    push.manifest("v1", config, [layer])
    time.sleep(GRACE + 2)  # and after: the manifest now holds the blobs
    status, body = push.request("GET", f"/blobs/{layer['digest']}")
    assert status == 200 and body == b"a layer still without its manifest " * 100


@pytest.mark.embedded_only  # counts the blob files under the data dir
def test_an_unreferenced_upload_is_collected_after_its_grace(fresh_nimbus):
    nimbus = fresh_nimbus("--registry-gc-interval", "1", "--registry-gc-grace", "1")
    nimbus.client("ecr").create_repository(repositoryName="orphan")
    push = Pusher(nimbus, "orphan")
    orphan = push.blob(b"never referenced")
    assert stored_files(nimbus) == 1
    assert eventually(lambda: stored_files(nimbus) == 0, timeout=30)
    status, _ = push.request("HEAD", f"/blobs/{orphan['digest']}")
    assert status == 404
