"""The registry with real clients: skopeo, podman and oras (oras-py) against `/v2/`,
logged in with `aws ecr get-login-password`, and the spec's errors for bad input."""

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
import requests

LAYERS = 3


def need(tool):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")


def run(*command, stdin=None, env=None):
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=300,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, f"{command}: {result.stderr}"
    return result.stdout


@pytest.fixture
def repo(nimbus):
    name = f"e2e/{uuid.uuid4().hex[:10]}"
    nimbus.aws("ecr", "create-repository", "--repository-name", name, "--profile", "nimbus", check=True)
    return name


@pytest.fixture(scope="module")
def password(nimbus):
    return nimbus.aws("ecr", "get-login-password", "--profile", "nimbus", check=True).stdout.strip()


def host(nimbus):
    return nimbus.endpoint.removeprefix("http://")


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """An OCI layout holding `image:v1`, built offline with umoci: an empty image and
    one layer of random bytes per `umoci insert`."""
    need("umoci")
    root = tmp_path_factory.mktemp("layout")
    image = root / "image"
    run("umoci", "init", "--layout", str(image))
    run("umoci", "new", "--image", f"{image}:v1")
    for n in range(LAYERS):
        data = root / f"data{n}"
        data.write_bytes(os.urandom(256 * 1024 * (n + 1)))
        run("umoci", "insert", "--image", f"{image}:v1", str(data), f"/data/{n}")
    return image


def layout_manifest(image: Path, tag="v1") -> bytes:
    index = json.loads((image / "index.json").read_text())
    [entry] = [m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
    return (image / "blobs" / "sha256" / entry["digest"].split(":")[1]).read_bytes()


def referenced_blobs(image: Path, manifest: bytes) -> dict:
    parsed = json.loads(manifest)
    digests = [parsed["config"]["digest"]] + [layer["digest"] for layer in parsed["layers"]]
    return {d: (image / "blobs" / "sha256" / d.split(":")[1]).read_bytes() for d in digests}


def skopeo(*args):
    # Each call keeps its own blob-info cache, so no run skips an upload because an
    # earlier one remembered the registry had the blob.
    return run("skopeo", "--tmpdir", "/tmp", *args, env={"XDG_DATA_HOME": os.environ.get("TMPDIR", "/tmp")})


def test_skopeo_round_trip_is_byte_identical(nimbus, repo, password, layout, tmp_path):
    need("skopeo")
    target = f"docker://{host(nimbus)}/{repo}:v1"
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds", f"AWS:{password}", f"oci:{layout}:v1", target)
    back = tmp_path / "back"
    skopeo("copy", "--src-tls-verify=false", "--src-creds", f"AWS:{password}", target, f"oci:{back}:v1")
    sent, received = layout_manifest(layout), layout_manifest(back)
    assert sent == received
    assert referenced_blobs(layout, sent) == referenced_blobs(back, received)
    assert len(json.loads(sent)["layers"]) == LAYERS

    images = nimbus.client("ecr").describe_images(repositoryName=repo)["imageDetails"]
    [detail] = images
    assert detail["imageTags"] == ["v1"]
    assert detail["imageDigest"] == "sha256:" + hashlib.sha256(sent).hexdigest()
    assert detail["imageSizeInBytes"] == sum(layer["size"] for layer in json.loads(sent)["layers"])
    assert detail["imageManifestMediaType"] == "application/vnd.oci.image.manifest.v1+json"


def test_a_multi_arch_index_round_trips(nimbus, repo, password, layout, tmp_path):
    need("skopeo")
    # An index of two platform images built from the same layers.
    manifest = layout_manifest(layout)
    multi = tmp_path / "multi"
    shutil.copytree(layout, multi)
    config = json.loads((multi / "blobs/sha256" / json.loads(manifest)["config"]["digest"].split(":")[1]).read_text())
    entries = []
    for arch in ("amd64", "arm64"):
        config["architecture"] = arch
        config_bytes = json.dumps(config).encode()
        config_digest = hashlib.sha256(config_bytes).hexdigest()
        (multi / "blobs/sha256" / config_digest).write_bytes(config_bytes)
        image = json.loads(manifest)
        image["config"] = {**image["config"], "digest": f"sha256:{config_digest}", "size": len(config_bytes)}
        image_bytes = json.dumps(image).encode()
        image_digest = hashlib.sha256(image_bytes).hexdigest()
        (multi / "blobs/sha256" / image_digest).write_bytes(image_bytes)
        entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": f"sha256:{image_digest}",
                        "size": len(image_bytes), "platform": {"architecture": arch, "os": "linux"}})
    index_bytes = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                              "manifests": entries}).encode()
    index_digest = hashlib.sha256(index_bytes).hexdigest()
    (multi / "blobs/sha256" / index_digest).write_bytes(index_bytes)
    (multi / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": f"sha256:{index_digest}",
        "size": len(index_bytes), "annotations": {"org.opencontainers.image.ref.name": "multi"}}]}))

    target = f"docker://{host(nimbus)}/{repo}:multi"
    skopeo("copy", "--all", "--dest-tls-verify=false", "--dest-creds", f"AWS:{password}", f"oci:{multi}:multi", target)
    back = tmp_path / "back"
    skopeo("copy", "--all", "--src-tls-verify=false", "--src-creds", f"AWS:{password}", target, f"oci:{back}:multi")
    assert layout_manifest(back, "multi") == index_bytes
    for entry in entries:
        assert (back / "blobs/sha256" / entry["digest"].split(":")[1]).exists()
    details = nimbus.client("ecr").describe_images(repositoryName=repo)["imageDetails"]
    assert {d["imageManifestMediaType"] for d in details} == {
        "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json"}


@pytest.fixture
def podman(tmp_path):
    """podman with storage and auth of the test's own, away from the host's (its
    runroot must be a short path)."""
    runroot = tempfile.mkdtemp(prefix="podman-", dir="/tmp")

    def call(*args, stdin=None):
        return run("podman", "--root", str(tmp_path / "storage"), "--runroot", runroot,
                   "--storage-driver", "vfs", *args, stdin=stdin,
                   env={"REGISTRY_AUTH_FILE": str(tmp_path / "auth.json")})

    yield call
    shutil.rmtree(runroot, ignore_errors=True)


def test_podman_login_push_and_pull(nimbus, repo, password, layout, podman):
    need("podman")
    need("skopeo")
    registry = host(nimbus)
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds", f"AWS:{password}", f"oci:{layout}:v1",
           f"docker://{registry}/{repo}:v1")
    assert "Login Succeeded" in podman("login", "--tls-verify=false", "-u", "AWS", "--password-stdin",
                                       registry, stdin=password)
    podman("pull", "--tls-verify=false", f"{registry}/{repo}:v1")
    podman("tag", f"{registry}/{repo}:v1", f"{registry}/{repo}:pushed")
    podman("push", "--tls-verify=false", f"{registry}/{repo}:pushed")
    listed = nimbus.client("ecr").list_images(repositoryName=repo)["imageIds"]
    assert {image.get("imageTag") for image in listed} >= {"v1", "pushed"}
    # A wrong password is refused at login.
    with pytest.raises(AssertionError):
        podman("login", "--tls-verify=false", "-u", "AWS", "--password-stdin", registry, stdin="wrong")


def test_an_oras_artifact_with_a_subject_is_a_referrer(nimbus, repo, password, layout, tmp_path):
    oras_provider = pytest.importorskip("oras.provider")
    oras_oci = pytest.importorskip("oras.oci")
    need("skopeo")
    registry = host(nimbus)
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds", f"AWS:{password}", f"oci:{layout}:v1",
           f"docker://{registry}/{repo}:v1")
    manifest = layout_manifest(layout)
    subject = "sha256:" + hashlib.sha256(manifest).hexdigest()
    client = oras_provider.Registry(hostname=registry, insecure=True)
    client.login(username="AWS", password=password, tls_verify=False, hostname=registry,
                 config_path=str(tmp_path / "config.json"))
    signature = tmp_path / "signature.txt"
    signature.write_text("signed")
    previous = os.getcwd()
    os.chdir(tmp_path)
    try:
        client.push(target=f"{registry}/{repo}:sig", files=["signature.txt:application/vnd.example.signature"],
                    subject=oras_oci.Subject("application/vnd.oci.image.manifest.v1+json", subject, len(manifest)))
    finally:
        os.chdir(previous)
    auth = ("AWS", password)
    listed = requests.get(f"{nimbus.endpoint}/v2/{repo}/referrers/{subject}", auth=auth, timeout=30)
    assert listed.status_code == 200
    assert listed.headers["Content-Type"] == "application/vnd.oci.image.index.v1+json"
    [referrer] = listed.json()["manifests"]
    pushed = requests.get(f"{nimbus.endpoint}/v2/{repo}/manifests/sig", auth=auth, timeout=30)
    assert referrer["digest"] == pushed.headers["Docker-Content-Digest"]
    filtered = requests.get(f"{nimbus.endpoint}/v2/{repo}/referrers/{subject}",
                            params={"artifactType": "application/vnd.example.none"}, auth=auth, timeout=30)
    assert filtered.json()["manifests"] == []
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"


# --- errors over plain HTTP -------------------------------------------------------


def error_code(response):
    return response.json()["errors"][0]["code"]


def blob_upload(nimbus, repo, password, data, claimed=None):
    claimed = claimed or "sha256:" + hashlib.sha256(data).hexdigest()
    return requests.post(f"{nimbus.endpoint}/v2/{repo}/blobs/uploads/", params={"digest": claimed}, data=data,
                         auth=("AWS", password), timeout=30)


def test_bad_input_gets_the_specs_errors(nimbus, repo, password):
    auth = ("AWS", password)
    base = f"{nimbus.endpoint}/v2/{repo}"
    wrong = blob_upload(nimbus, repo, password, b"data", claimed="sha256:" + "0" * 64)
    assert (wrong.status_code, error_code(wrong)) == (400, "DIGEST_INVALID")
    assert requests.head(f"{base}/blobs/sha256:{'0' * 64}", auth=auth, timeout=30).status_code == 404
    unknown = requests.get(f"{base}/blobs/sha256:{'0' * 64}", auth=auth, timeout=30)
    assert (unknown.status_code, error_code(unknown)) == (404, "BLOB_UNKNOWN")

    data = b"0123456789"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert blob_upload(nimbus, repo, password, data).status_code == 201
    part = requests.get(f"{base}/blobs/{digest}", headers={"Range": "bytes=2-4"}, auth=auth, timeout=30)
    assert (part.status_code, part.content, part.headers["Content-Range"]) == (206, b"234", "bytes 2-4/10")
    beyond = requests.get(f"{base}/blobs/{digest}", headers={"Range": "bytes=50-"}, auth=auth, timeout=30)
    assert (beyond.status_code, beyond.headers["Content-Range"]) == (416, "bytes */10")

    # A chunk out of order is refused and the upload can resume where it was.
    started = requests.post(f"{base}/blobs/uploads/", auth=auth, timeout=30)
    location = nimbus.endpoint + started.headers["Location"]
    first = requests.patch(location, data=data[:4], headers={"Content-Range": "0-3"}, auth=auth, timeout=30)
    assert (first.status_code, first.headers["Range"]) == (202, "0-3")
    skipped = requests.patch(location, data=data[6:], headers={"Content-Range": "6-9"}, auth=auth, timeout=30)
    assert skipped.status_code == 416
    assert requests.get(location, auth=auth, timeout=30).headers["Range"] == "0-3"
    rest = requests.put(location, params={"digest": digest}, data=data[4:],
                        headers={"Content-Range": "4-9"}, auth=auth, timeout=30)
    assert rest.status_code == 201

    for name in ["..%2Fetc", "UPPER", "a//b"]:
        response = requests.get(f"{nimbus.endpoint}/v2/{name}/manifests/latest", auth=auth, timeout=30)
        assert response.status_code in (400, 404), name
        assert error_code(response) in ("NAME_INVALID", "NAME_UNKNOWN")

    media = "application/vnd.oci.image.manifest.v1+json"
    missing = json.dumps({"schemaVersion": 2, "mediaType": media,
                          "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                     "digest": "sha256:" + "1" * 64, "size": 2}, "layers": []})
    response = requests.put(f"{base}/manifests/v1", data=missing, headers={"Content-Type": media}, auth=auth,
                            timeout=30)
    assert (response.status_code, error_code(response)) == (400, "MANIFEST_BLOB_UNKNOWN")
    mismatched = requests.put(f"{base}/manifests/v1", data=missing,
                              headers={"Content-Type": "application/vnd.oci.image.index.v1+json"}, auth=auth,
                              timeout=30)
    assert (mismatched.status_code, error_code(mismatched)) == (400, "MANIFEST_INVALID")
    huge = requests.put(f"{base}/manifests/v1", data=b"{" + b" " * (5 << 20) + b"}",
                        headers={"Content-Type": media}, auth=auth, timeout=60)
    assert huge.status_code == 413
    # Nothing of the failed pushes became visible.
    assert requests.get(f"{base}/tags/list", auth=auth, timeout=30).json()["tags"] == []


def test_private_repositories_need_credentials_and_a_policy_opens_them(nimbus, repo, password, layout):
    need("skopeo")
    registry = host(nimbus)
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds", f"AWS:{password}", f"oci:{layout}:v1",
           f"docker://{registry}/{repo}:v1")
    anonymous = requests.get(f"{nimbus.endpoint}/v2/{repo}/manifests/v1", timeout=30)
    assert (anonymous.status_code, error_code(anonymous)) == (401, "UNAUTHORIZED")
    assert anonymous.headers["WWW-Authenticate"].startswith('Bearer realm="')
    bad = requests.get(f"{nimbus.endpoint}/v2/{repo}/manifests/v1", auth=("AWS", "not-a-token"), timeout=30)
    assert bad.status_code == 401
    push = blob_upload(nimbus, repo, base64.b64encode(b"x").decode(), b"data")
    assert push.status_code == 401

    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*",
        "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]}]}
    nimbus.aws("ecr", "set-repository-policy", "--repository-name", repo, "--policy-text", json.dumps(policy),
               "--profile", "nimbus", check=True)
    inspected = json.loads(run("skopeo", "inspect", "--no-tags", "--tls-verify=false", "--no-creds",
                               f"docker://{registry}/{repo}:v1"))
    assert inspected["Digest"] == "sha256:" + hashlib.sha256(layout_manifest(layout)).hexdigest()
    # Pull only: an anonymous push is still refused.
    token = requests.get(f"{nimbus.endpoint}/v2/token", timeout=30).json()["token"]
    refused = requests.post(f"{nimbus.endpoint}/v2/{repo}/blobs/uploads/", headers={"Authorization": f"Bearer {token}"},
                            timeout=30)
    assert refused.status_code == 401


def test_immutable_tags_refuse_overwrites_through_both_apis(nimbus, repo, password, layout):
    need("skopeo")
    ecr = nimbus.client("ecr")
    ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="IMMUTABLE")
    registry = host(nimbus)
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds", f"AWS:{password}", f"oci:{layout}:v1",
           f"docker://{registry}/{repo}:v1")
    other = json.loads(layout_manifest(layout))
    other["annotations"] = {"changed": "yes"}
    with pytest.raises(ecr.exceptions.ImageTagAlreadyExistsException):
        ecr.put_image(repositoryName=repo, imageTag="v1", imageManifest=json.dumps(other))
    response = requests.put(f"{nimbus.endpoint}/v2/{repo}/manifests/v1", data=json.dumps(other),
                            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
                            auth=("AWS", password), timeout=30)
    assert (response.status_code, error_code(response)) == (400, "TAG_INVALID")
