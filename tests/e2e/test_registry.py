"""The registry with real clients: skopeo, podman and oras (oras-py) against `/v2/`,
logged in with `aws ecr get-login-password`, the ECR API's view of what they pushed,
and the spec's errors for bad input over raw HTTP.

Runs alone with `pytest tests/e2e/test_registry.py`; needs root, skopeo, podman and
umoci (scripts/test.sh installs them)."""

import base64
import gzip
import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from urllib.parse import urljoin

import pytest
import requests

import images
from images import INDEX, MANIFEST, sha256

# As root, skopeo and podman remember here which blobs a registry holds, whatever
# XDG_DATA_HOME says; one that remembers skips an upload or tries a mount instead.
BLOB_INFO_CACHE = "/var/lib/containers/cache"
PULL_POLICY = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": "*",
    "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]}]}


def need(*tools):
    if os.geteuid() != 0:
        pytest.skip("skopeo and podman run as root here, each in a mount namespace of its own")
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


def run(*command, stdin=None, env=None, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=300,
                            env={**os.environ, **(env or {})})
    if check:
        assert result.returncode == 0, f"{command}: {result.stderr}"
    return result


def isolated(*command, stdin=None, env=None, check=True) -> subprocess.CompletedProcess:
    """A skopeo or podman command in a mount namespace of its own, over an empty
    blob-info cache: every run talks to the registry afresh and the host's cache is
    left alone."""
    os.makedirs(BLOB_INFO_CACHE, exist_ok=True)
    script = f'mount -t tmpfs tmpfs {BLOB_INFO_CACHE} && exec "$@"'
    return run("unshare", "--mount", "sh", "-c", script, "sh", *command, stdin=stdin, env=env, check=check)


def skopeo(*args, check=True) -> subprocess.CompletedProcess:
    return isolated("skopeo", *args, check=check)


def push(layout, tag, target, password, *flags):
    """skopeo copy of `layout:tag` to `docker://target` as AWS:password."""
    skopeo("copy", *flags, "--dest-tls-verify=false", "--dest-creds", f"AWS:{password}",
           f"oci:{layout}:{tag}", f"docker://{target}")


def pull(source, password, layout, tag, *flags):
    skopeo("copy", *flags, "--src-tls-verify=false", "--src-creds", f"AWS:{password}",
           f"docker://{source}", f"oci:{layout}:{tag}")


class Registry:
    """Raw OCI distribution requests for one repository, as AWS:<password> (Basic),
    with other credentials, or anonymously (`auth=None`)."""

    def __init__(self, endpoint, repo, auth=None):
        self.endpoint, self.repo = endpoint, repo
        self.session = requests.Session()
        self.session.auth = auth

    def request(self, method, path, **kwargs) -> requests.Response:
        """`path` is under `/v2/<repo>/`; a Location header's path or URL passes as is."""
        if path.startswith(("/", "http")):
            url = urljoin(self.endpoint, path)
        else:
            url = f"{self.endpoint}/v2/{self.repo}/{path}"
        return self.session.request(method, url, timeout=60, **kwargs)

    def push_blob(self, data, digest=None) -> requests.Response:
        """A single POST with the blob and its digest: optional in the spec (Debian's
        docker-registry answers 202 and drops the body), and no client here sends it."""
        return self.request("POST", "blobs/uploads/", params={"digest": digest or sha256(data)}, data=data)

    def push_chunked(self, data, chunk_size, digest=None) -> requests.Response:
        """POST, one PATCH per chunk with its Content-Range, then the closing PUT."""
        location = self.request("POST", "blobs/uploads/").headers["Location"]
        for start in range(0, len(data), chunk_size):
            chunk = data[start:start + chunk_size]
            patched = self.request("PATCH", location, data=chunk,
                                   headers={"Content-Range": f"{start}-{start + len(chunk) - 1}",
                                            "Content-Type": "application/octet-stream"})
            assert patched.status_code == 202, patched.text
            location = patched.headers["Location"]
        return self.request("PUT", location, params={"digest": digest or sha256(data)})

    def blob(self, digest) -> bytes:
        response = self.request("GET", f"blobs/{digest}")
        assert response.status_code == 200, response.text
        return response.content

    def put_manifest(self, reference, body: bytes, media_type=MANIFEST) -> requests.Response:
        return self.request("PUT", f"manifests/{reference}", data=body, headers={"Content-Type": media_type})

    def push_image(self, reference, layers: list[bytes]) -> bytes:
        """Pushes a config and `layers` (chunked), then their manifest; returns it."""
        diff_ids = [sha256(layer) for layer in layers]
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
        for blob in [config, *layers]:
            assert self.push_chunked(blob, 1 << 20).status_code == 201
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config),
                       "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(layer),
                        "size": len(layer)} for layer in layers]}).encode()
        assert self.put_manifest(reference, manifest).status_code == 201
        return manifest


def error_code(response):
    return response.json()["errors"][0]["code"]


def create_repository(nimbus) -> str:
    name = f"e2e/{uuid.uuid4().hex[:10]}"
    nimbus.aws("ecr", "create-repository", "--repository-name", name, "--profile", "nimbus", check=True)
    return name


@pytest.fixture
def repo(nimbus):
    return create_repository(nimbus)


@pytest.fixture(scope="module")
def password(nimbus):
    return nimbus.aws("ecr", "get-login-password", "--profile", "nimbus", check=True).stdout.strip()


@pytest.fixture
def api(nimbus, repo, password):
    return Registry(nimbus.endpoint, repo, ("AWS", password))


@pytest.fixture
def host(nimbus):
    """The registry's host:port, as image references name it."""
    return nimbus.endpoint.removeprefix("http://")


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """An OCI layout holding `v1`: three layers of random bytes, built with umoci."""
    need("umoci")
    path = tmp_path_factory.mktemp("layout") / "image"
    images.build_image(path, "v1")
    return path


@pytest.fixture
def podman(tmp_path):
    """podman with storage, state and logins of the test's own, away from the host's.
    vfs stores plain directories, whatever filesystem /tmp is (overlay also works on
    this VM). podman refuses a runroot over 50 characters, and its database records
    the first one it saw, so every call shares one short path."""
    need("podman")
    runroot = tempfile.mkdtemp(prefix="podman-", dir="/tmp")
    flags = ["--root", tmp_path / "storage", "--runroot", runroot, "--tmpdir", f"{runroot}/libpod",
             "--storage-driver", "vfs", "--network-config-dir", tmp_path / "networks"]

    def call(*args, stdin=None, check=True):
        return isolated("podman", *map(str, flags), *args, stdin=stdin, check=check,
                        env={"REGISTRY_AUTH_FILE": str(tmp_path / "auth.json")})

    yield call
    shutil.rmtree(runroot, ignore_errors=True)


def test_skopeo_round_trip_is_byte_identical(nimbus, repo, password, host, layout, tmp_path):
    need("skopeo")
    push(layout, "v1", f"{host}/{repo}:v1", password, "--preserve-digests")
    back = tmp_path / "back"
    pull(f"{host}/{repo}:v1", password, back, "v1", "--preserve-digests")
    assert images.reachable(back, "v1") == images.reachable(layout, "v1")

    sent = images.manifest(layout, "v1")
    [detail] = nimbus.client("ecr").describe_images(repositoryName=repo)["imageDetails"]
    assert detail["imageTags"] == ["v1"]
    assert detail["imageDigest"] == sha256(sent)
    assert detail["imageSizeInBytes"] == sum(layer["size"] for layer in json.loads(sent)["layers"])
    assert detail["imageManifestMediaType"] == MANIFEST


def test_a_multi_arch_index_round_trips(nimbus, repo, password, host, tmp_path):
    need("skopeo", "umoci")
    sent = tmp_path / "sent"
    index = images.build_index(sent, "multi", ("amd64", "arm64"))
    push(sent, "multi", f"{host}/{repo}:multi", password, "--all", "--preserve-digests")
    back = tmp_path / "back"
    pull(f"{host}/{repo}:multi", password, back, "multi", "--all", "--preserve-digests")
    assert images.manifest(back, "multi") == index
    assert images.reachable(back, "multi") == images.reachable(sent, "multi")

    details = nimbus.client("ecr").describe_images(repositoryName=repo)["imageDetails"]
    by_type = {}
    for detail in details:
        by_type.setdefault(detail["imageManifestMediaType"], []).append(detail)
    [tagged] = by_type[INDEX]
    assert (tagged["imageDigest"], tagged["imageTags"]) == (sha256(index), ["multi"])
    assert {d["imageDigest"] for d in by_type[MANIFEST]} == {m["digest"] for m in json.loads(index)["manifests"]}


def test_podman_login_pull_and_push_to_another_repository(nimbus, repo, password, host, layout, podman):
    need("skopeo")
    push(layout, "v1", f"{host}/{repo}:v1", password)
    login = podman("login", "--tls-verify=false", "-u", "AWS", "--password-stdin", host, stdin=password)
    assert "Login Succeeded" in login.stdout
    podman("pull", "--tls-verify=false", f"{host}/{repo}:v1")
    other = create_repository(nimbus)
    podman("tag", f"{host}/{repo}:v1", f"{host}/{other}:pushed")
    podman("push", "--tls-verify=false", f"{host}/{other}:pushed")

    # podman compresses the layers afresh, so their digests change; the config, and
    # the uncompressed layers it names, must not.
    sent = json.loads(images.manifest(layout, "v1"))
    target = Registry(nimbus.endpoint, other, ("AWS", password))
    pushed = target.request("GET", "manifests/pushed", headers={"Accept": MANIFEST})
    assert pushed.status_code == 200
    manifest = pushed.json()
    assert manifest["config"]["digest"] == sent["config"]["digest"]
    diff_ids = json.loads(target.blob(manifest["config"]["digest"]))["rootfs"]["diff_ids"]
    assert [sha256(gzip.decompress(target.blob(layer["digest"]))) for layer in manifest["layers"]] == diff_ids
    assert len(diff_ids) == 3

    wrong = podman("login", "--tls-verify=false", "-u", "AWS", "--password-stdin", host, stdin="wrong",
                   check=False)
    assert wrong.returncode != 0


def test_an_oras_artifact_with_a_subject_is_a_referrer(nimbus, repo, password, host, api, layout, tmp_path):
    oras_provider = pytest.importorskip("oras.provider")
    oras_oci = pytest.importorskip("oras.oci")
    need("skopeo")
    push(layout, "v1", f"{host}/{repo}:v1", password)
    image = images.manifest(layout, "v1")
    client = oras_provider.Registry(hostname=host, insecure=True)
    config = str(tmp_path / "config.json")
    client.login(username="AWS", password=password, tls_verify=False, hostname=host, config_path=config)
    signature = tmp_path / "signature.txt"
    signature.write_text("signed")
    client.push(target=f"{host}/{repo}:sig", config_path=config, disable_path_validation=True,
                files=[f"{signature}:application/vnd.example.signature"],
                subject=oras_oci.Subject(MANIFEST, sha256(image), len(image)))

    listed = api.request("GET", f"referrers/{sha256(image)}")
    assert listed.status_code == 200
    assert listed.headers["Content-Type"] == INDEX
    [referrer] = listed.json()["manifests"]
    assert referrer["digest"] == api.request("HEAD", "manifests/sig").headers["Docker-Content-Digest"]


def test_a_manifest_with_a_subject_is_listed_by_artifact_type(api):
    image = api.push_image("v1", [os.urandom(1000)])
    empty = b"{}"
    assert api.push_blob(empty).status_code == 201
    sbom = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST, "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(empty), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(empty), "size": 2}],
        "subject": {"mediaType": MANIFEST, "digest": sha256(image), "size": len(image)}}).encode()
    pushed = api.put_manifest(sha256(sbom), sbom)
    assert pushed.status_code == 201
    assert pushed.headers["OCI-Subject"] == sha256(image)

    listed = api.request("GET", f"referrers/{sha256(image)}").json()["manifests"]
    assert listed == [{"mediaType": MANIFEST, "digest": sha256(sbom), "size": len(sbom),
                       "artifactType": "application/vnd.example.sbom"}]
    other = api.request("GET", f"referrers/{sha256(image)}", params={"artifactType": "application/vnd.example.sig"})
    assert other.json()["manifests"] == []
    assert other.headers["OCI-Filters-Applied"] == "artifactType"


def test_login_passwords_access_keys_and_bearer_tokens(nimbus, repo, password, api):
    assert api.request("GET", "tags/list").status_code == 200
    assert Registry(nimbus.endpoint, repo, nimbus.root_keys()).request("GET", "tags/list").status_code == 200

    # The flow clients follow: a 401 names the realm, which trades Basic credentials
    # for a Bearer token.
    challenged = Registry(nimbus.endpoint, repo).request("GET", "/v2/")
    assert challenged.status_code == 401
    assert challenged.headers["WWW-Authenticate"].startswith("Bearer ")
    challenge = dict(re.findall(r'(\w+)="([^"]*)"', challenged.headers["WWW-Authenticate"]))
    assert challenge["realm"] == f"{nimbus.endpoint}/v2/token"
    issued = requests.get(challenge["realm"], params={"service": challenge["service"],
                                                      "scope": f"repository:{repo}:pull,push"},
                          auth=("AWS", password), timeout=30)
    assert issued.status_code == 200
    bearer = Registry(nimbus.endpoint, repo)
    bearer.session.headers["Authorization"] = f"Bearer {issued.json()['token']}"
    assert bearer.push_blob(b"pushed with a token").status_code == 201

    for wrong in [("AWS", "not-a-token"), (nimbus.root_keys()[0], "wrong-secret")]:
        refused = Registry(nimbus.endpoint, repo, wrong).push_blob(b"data")
        assert (refused.status_code, error_code(refused)) == (401, "UNAUTHORIZED")


def test_bad_input_gets_the_specs_errors(api):
    wrong = api.push_blob(b"data", digest="sha256:" + "0" * 64)
    assert (wrong.status_code, error_code(wrong)) == (400, "DIGEST_INVALID")
    unknown = api.request("GET", f"blobs/sha256:{'0' * 64}")
    assert (unknown.status_code, error_code(unknown)) == (404, "BLOB_UNKNOWN")
    assert api.request("HEAD", f"blobs/sha256:{'0' * 64}").status_code == 404

    data = b"0123456789"
    assert api.push_chunked(data, 3).status_code == 201
    part = api.request("GET", f"blobs/{sha256(data)}", headers={"Range": "bytes=2-4"})
    assert (part.status_code, part.content, part.headers["Content-Range"]) == (206, b"234", "bytes 2-4/10")
    beyond = api.request("GET", f"blobs/{sha256(data)}", headers={"Range": "bytes=50-"})
    assert (beyond.status_code, beyond.headers["Content-Range"]) == (416, "bytes */10")

    # A chunk out of order is refused and the upload resumes where it was.
    location = api.request("POST", "blobs/uploads/").headers["Location"]
    first = api.request("PATCH", location, data=data[:4], headers={"Content-Range": "0-3"})
    assert (first.status_code, first.headers["Range"]) == (202, "0-3")
    assert api.request("PATCH", location, data=data[6:], headers={"Content-Range": "6-9"}).status_code == 416
    assert api.request("GET", location).headers["Range"] == "0-3"
    rest = api.request("PUT", location, params={"digest": sha256(data)}, data=data[4:],
                       headers={"Content-Range": "4-9"})
    assert rest.status_code == 201

    # `..%2Fetc` reaches the server as `../etc`; requests would fold a plain `..`.
    for name in ["..%2Fetc", "UPPER", "a//b"]:
        response = api.request("GET", f"/v2/{name}/manifests/latest")
        assert (response.status_code, error_code(response)) == (400, "NAME_INVALID"), name

    missing = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                          "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                     "digest": "sha256:" + "1" * 64, "size": 2}, "layers": []}).encode()
    response = api.put_manifest("v1", missing)
    assert (response.status_code, error_code(response)) == (400, "MANIFEST_BLOB_UNKNOWN")
    mismatched = api.put_manifest("v1", missing, media_type=INDEX)
    assert (mismatched.status_code, error_code(mismatched)) == (400, "MANIFEST_INVALID")
    huge = api.put_manifest("v1", b"{" + b" " * (5 << 20) + b"}")
    assert huge.status_code == 413
    # Nothing of the failed pushes became visible.
    assert api.request("GET", "tags/list").json()["tags"] == []


def test_private_repositories_need_credentials_and_a_policy_opens_them(nimbus, repo, password, host, layout):
    need("skopeo")
    push(layout, "v1", f"{host}/{repo}:v1", password)
    image = images.manifest(layout, "v1")
    anonymous = Registry(nimbus.endpoint, repo)
    refused = anonymous.request("GET", "manifests/v1")
    assert (refused.status_code, error_code(refused)) == (401, "UNAUTHORIZED")
    assert refused.headers["WWW-Authenticate"].startswith(f'Bearer realm="{nimbus.endpoint}/v2/token"')
    assert skopeo("inspect", "--no-tags", "--tls-verify=false", "--no-creds", f"docker://{host}/{repo}:v1",
                  check=False).returncode != 0

    nimbus.aws("ecr", "set-repository-policy", "--repository-name", repo, "--policy-text", json.dumps(PULL_POLICY),
               "--profile", "nimbus", check=True)
    inspected = json.loads(skopeo("inspect", "--no-tags", "--tls-verify=false", "--no-creds",
                                  f"docker://{host}/{repo}:v1").stdout)
    assert inspected["Digest"] == sha256(image)
    assert anonymous.request("GET", "manifests/v1", headers={"Accept": MANIFEST}).content == image
    # Pull only: an anonymous push is still refused, with or without a token.
    assert anonymous.push_blob(b"data").status_code == 401
    token = requests.get(f"{nimbus.endpoint}/v2/token", timeout=30).json()["token"]
    anonymous.session.headers["Authorization"] = f"Bearer {token}"
    assert anonymous.push_blob(b"data").status_code == 401


def test_immutable_tags_refuse_overwrites_through_both_apis(nimbus, repo, password, host, api, layout):
    need("skopeo")
    ecr = nimbus.client("ecr")
    ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="IMMUTABLE")
    push(layout, "v1", f"{host}/{repo}:v1", password)
    other = json.loads(images.manifest(layout, "v1"))
    other["annotations"] = {"changed": "yes"}
    with pytest.raises(ecr.exceptions.ImageTagAlreadyExistsException):
        ecr.put_image(repositoryName=repo, imageTag="v1", imageManifest=json.dumps(other))
    response = api.put_manifest("v1", json.dumps(other).encode())
    assert (response.status_code, error_code(response)) == (400, "TAG_INVALID")


def test_iam_users_pull_and_push_as_their_policies_allow(nimbus, repo, password, host, layout, tmp_path):
    need("skopeo")
    push(layout, "v1", f"{host}/{repo}:v1", password)
    iam = nimbus.client("iam")
    suffix = uuid.uuid4().hex[:6]

    def user(name, *policies):
        iam.create_user(UserName=name)
        for arn in policies:
            iam.attach_user_policy(UserName=name, PolicyArn=arn)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return f"{key['AccessKeyId']}:{key['SecretAccessKey']}"

    reader = user(f"puller-{suffix}", "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly")
    stranger = user(f"stranger-{suffix}")
    source = f"docker://{host}/{repo}:v1"
    pulled = skopeo("copy", "--src-tls-verify=false", "--src-creds", reader, source, f"oci:{tmp_path}/out:v1", check=False)
    assert pulled.returncode == 0, pulled.stderr
    refused = skopeo("copy", "--src-tls-verify=false", "--src-creds", stranger, source, f"oci:{tmp_path}/no:v1", check=False)
    assert refused.returncode != 0
    pushed = skopeo("copy", "--dest-tls-verify=false", "--dest-creds", reader, f"oci:{layout}:v1",
                    f"docker://{host}/{repo}:by-reader", check=False)
    assert pushed.returncode != 0, "a read-only user cannot push"


@pytest.mark.parametrize("document", [
    "not json",
    json.dumps({"Version": "2012-10-17", "Statement": []}),
    json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:BatchGetImage"}]}),
    json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "BatchGetImage"}]}),
    json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "alice"},
                                                        "Action": "ecr:BatchGetImage"}]}),
    json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "ecr:*",
                                                        "Condition": {"IpAddressish": {"aws:SourceIp": "10.0.0.0/8"}}}]}),
])
def test_set_repository_policy_refuses_what_iam_cannot_read(nimbus, repo, document):
    ecr = nimbus.client("ecr")
    with pytest.raises(ecr.exceptions.InvalidParameterException) as excinfo:
        ecr.set_repository_policy(repositoryName=repo, policyText=document)
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "Invalid repository policy provided" in excinfo.value.response["Error"]["Message"]
    with pytest.raises(ecr.exceptions.RepositoryPolicyNotFoundException):
        ecr.get_repository_policy(repositoryName=repo)


def test_anonymous_pulls_honour_the_policys_conditions(nimbus, repo):
    ecr = nimbus.client("ecr")
    anonymous = Registry(nimbus.endpoint, repo)

    def allow_listing_from(cidr, **statement):
        ecr.set_repository_policy(repositoryName=repo, policyText=json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": "*", "Action": "ecr:ListImages",
                "Condition": {"IpAddress": {"aws:SourceIp": cidr}}, **statement}]}))
        return anonymous.request("GET", "tags/list")

    assert allow_listing_from("127.0.0.0/8").status_code == 200
    refused = allow_listing_from("203.0.113.0/24")
    assert (refused.status_code, error_code(refused)) == (401, "UNAUTHORIZED")
    # A statement for another repository's ARN does not open this one.
    other = f"arn:aws:ecr:us-east-1:000000000000:repository/{repo}-other"
    assert allow_listing_from("127.0.0.0/8", Resource=other).status_code == 401


def test_a_deactivated_key_cannot_log_in_nor_use_its_tokens(nimbus, repo, host, podman):
    iam = nimbus.client("iam")
    name = f"pusher-{uuid.uuid4().hex[:6]}"
    iam.create_user(UserName=name)
    iam.attach_user_policy(UserName=name, PolicyArn="arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPowerUser")
    key = iam.create_access_key(UserName=name)["AccessKey"]
    keys = {"key_id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    token = nimbus.client("ecr", **keys).get_authorization_token()["authorizationData"][0]["authorizationToken"]
    password = base64.b64decode(token).decode().removeprefix("AWS:")

    def login(user, secret):
        return podman("login", "--tls-verify=false", "-u", user, "--password-stdin", host, stdin=secret, check=False)

    assert login("AWS", password).returncode == 0
    assert login(key["AccessKeyId"], key["SecretAccessKey"]).returncode == 0
    assert Registry(nimbus.endpoint, repo, ("AWS", password)).request("GET", "tags/list").status_code == 200

    iam.update_access_key(UserName=name, AccessKeyId=key["AccessKeyId"], Status="Inactive")
    assert login("AWS", password).returncode != 0, "a token issued before the key was deactivated"
    assert login(key["AccessKeyId"], key["SecretAccessKey"]).returncode != 0
    refused = Registry(nimbus.endpoint, repo, ("AWS", password)).request("GET", "tags/list")
    assert (refused.status_code, error_code(refused)) == (401, "UNAUTHORIZED")

    iam.update_access_key(UserName=name, AccessKeyId=key["AccessKeyId"], Status="Active")
    assert login("AWS", password).returncode == 0
