"""Fixtures that start the real nimbus binary and point real AWS clients at it."""

import configparser
import contextlib
import http.server
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import botocore.config
import pytest

import backends

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
# NIMBUS_E2E_BACKENDS=external runs every server on PostgreSQL and S3 (Garage) instead
# of the embedded SQLite and files: those named by NIMBUS_TEST_POSTGRES / NIMBUS_TEST_S3
# (scripts/test.sh starts them), else a pair started for the session.
EXTERNAL = os.environ.get("NIMBUS_E2E_BACKENDS", "embedded") == "external"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "embedded_only: inspects the embedded backends' files (SQLite, blob files in the data dir); "
                   "skipped when NIMBUS_E2E_BACKENDS=external")


def pytest_collection_modifyitems(config, items):
    if not EXTERNAL:
        return
    skip = pytest.mark.skip(reason="inspects the embedded backends' files; the servers run on PostgreSQL and S3")
    for item in items:
        if item.get_closest_marker("embedded_only"):
            item.add_marker(skip)


def nimbus_binary() -> str:
    binary = os.environ.get("NIMBUS_BIN") or str(REPO / "target" / "debug" / "nimbus")
    if not Path(binary).exists():
        raise RuntimeError(f"nimbus binary not found at {binary}; build it or set NIMBUS_BIN")
    return binary


def eventually(condition, timeout=10) -> bool:
    """Whether `condition` holds within `timeout` seconds, polling it."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@dataclass
class Nimbus:
    """A running `nimbus server` on a free port."""

    data_dir: Path
    process: subprocess.Popen
    endpoint: str
    stderr_lines: list = field(default_factory=list)

    @property
    def credentials_file(self) -> Path:
        return self.data_dir / "credentials"

    def root_keys(self) -> tuple[str, str]:
        parser = configparser.ConfigParser()
        parser.read(self.credentials_file)
        return parser["nimbus"]["aws_access_key_id"], parser["nimbus"]["aws_secret_access_key"]

    def session(self, key_id=None, secret=None, token=None) -> boto3.Session:
        if key_id is None:
            key_id, secret = self.root_keys()
        return boto3.Session(
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            aws_session_token=token,
            region_name=REGION,
        )

    def client(self, service: str, **keys):
        # No retries: a test must see the first answer, not a retried one.
        config = botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"})
        return self.session(**keys).client(service, endpoint_url=self.endpoint, config=config)

    def lambda_client(self):
        """A Lambda client for invokes that may take long or run many at once."""
        config = botocore.config.Config(retries={"max_attempts": 1}, max_pool_connections=64, read_timeout=120)
        return self.session().client("lambda", endpoint_url=self.endpoint, config=config)

    def aws(self, *args, env=None, check=False) -> subprocess.CompletedProcess:
        """Runs the aws CLI against this server with the profile the server wrote."""
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        full_env.update(
            AWS_SHARED_CREDENTIALS_FILE=str(self.credentials_file),
            AWS_CONFIG_FILE=os.devnull,
            AWS_MAX_ATTEMPTS="1",
        )
        full_env.update(env or {})
        command = ["aws", "--endpoint-url", self.endpoint, "--region", REGION, *args]
        return subprocess.run(command, env=full_env, capture_output=True, text=True, check=check, timeout=60)

    def logged(self, text, timeout=10) -> bool:
        """Whether the server wrote `text` to its log, waiting for the pipe to drain."""
        return eventually(lambda: any(text in line for line in self.stderr_lines), timeout)

    def kill(self, sig=signal.SIGKILL):
        if self.process.poll() is None:
            self.process.send_signal(sig)
        self.process.wait(timeout=30)


class ExternalBackends:
    """Where servers keep records and blobs in external mode: a database and a key
    prefix in the bucket of their own, by data dir, so a server restarted on the same
    data dir finds its state again."""

    def __init__(self):
        self.lock = threading.Lock()
        self.started = None  # the Backends started here, if the environment named none
        self.places = {}  # data dir -> (database, prefix)
        self.session = secrets.token_hex(3)

    def environment(self) -> dict:
        with self.lock:
            if os.environ.get("NIMBUS_TEST_POSTGRES") and os.environ.get("NIMBUS_TEST_S3"):
                return os.environ
            if self.started is None:
                started = backends.Backends(tempfile.mkdtemp(prefix="nimbus-backends-"))
                try:
                    started.start()
                except BaseException:
                    started.remove()
                    raise
                self.started = started
            return self.started.environment()

    def server_arguments(self, data_dir: Path) -> tuple[list, dict]:
        """The flags and environment running the server of `data_dir` on them."""
        known = self.environment()
        key = str(Path(data_dir).resolve())
        with self.lock:
            if key not in self.places:
                n = len(self.places)
                database, prefix = f"e2e_{self.session}_{n}", f"e2e-{self.session}-{n}"
                backends.create_database(known["NIMBUS_TEST_POSTGRES"], database)
                self.places[key] = (database, prefix)
            database, prefix = self.places[key]
        bucket = urllib.parse.urlsplit(known["NIMBUS_TEST_S3"])
        blobs = urllib.parse.urlunsplit(bucket._replace(path=f"{bucket.path.rstrip('/')}/{prefix}"))
        arguments = ["--metadata", backends.database_url(known["NIMBUS_TEST_POSTGRES"], database), "--blobs", blobs]
        env = {
            "NIMBUS_BLOBS_ACCESS_KEY_ID": known.get("NIMBUS_TEST_S3_ACCESS_KEY_ID", ""),
            "NIMBUS_BLOBS_SECRET_ACCESS_KEY": known.get("NIMBUS_TEST_S3_SECRET_ACCESS_KEY", ""),
        }
        return arguments, env

    def forget(self, data_dir: Path):
        """Drops the database of `data_dir`, whose servers have all stopped."""
        with self.lock:
            place = self.places.pop(str(Path(data_dir).resolve()), None)
        if place:
            with contextlib.suppress(Exception):
                backends.drop_database(self.environment()["NIMBUS_TEST_POSTGRES"], place[0])

    def close(self):
        """After the session's last server stopped: drops the databases left (of
        data dirs no fixture removed), and removes the backends started here."""
        for data_dir in list(self.places):
            self.forget(Path(data_dir))
        if self.started is not None:
            self.started.remove()
            self.started = None


EXTERNAL_BACKENDS = ExternalBackends()


@pytest.fixture(scope="session", autouse=True)
def external_backends():
    """The external backends of the session's servers, removed after the last has
    stopped if they were started here."""
    yield EXTERNAL_BACKENDS if EXTERNAL else None
    EXTERNAL_BACKENDS.close()


def start_nimbus(data_dir: Path, *args: str, env=None) -> Nimbus:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("NIMBUS_")}
    # Functions post to callback servers on this host's address, which sandboxes
    # reach only where the operator opened it.
    full_env["NIMBUS_EGRESS_ALLOW"] = f"{host_address()}/32"
    # In external mode, on a database and a bucket prefix of the data dir's own,
    # unless the test chose backends itself.
    chosen = {"--metadata", "--blobs"} & {arg.split("=")[0] for arg in args}
    if EXTERNAL and not chosen and not {"NIMBUS_METADATA", "NIMBUS_BLOBS"} & set(env or {}):
        external_args, external_env = EXTERNAL_BACKENDS.server_arguments(data_dir)
        args = (*external_args, *args)
        full_env.update(external_env)
    full_env.update(env or {})
    process = subprocess.Popen(
        [nimbus_binary(), "server", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )
    first_line = process.stdout.readline()
    match = re.search(r"listening on (https?://\S+)", first_line)
    if not match:
        process.wait(timeout=10)
        raise RuntimeError(f"nimbus did not start: {first_line}{process.stderr.read()}")
    nimbus = Nimbus(data_dir=data_dir, process=process, endpoint=match.group(1))

    # Drain both pipes so the server never blocks on a full one.
    def drain(stream, sink):
        for line in stream:
            sink.append(line)

    threading.Thread(target=drain, args=(process.stdout, []), daemon=True).start()
    threading.Thread(target=drain, args=(process.stderr, nimbus.stderr_lines), daemon=True).start()
    ensure_lambda_role(nimbus)
    return nimbus


def self_signed_certificate(directory: Path, addresses) -> tuple[Path, Path]:
    """A certificate and key (PEM) for `addresses` (IPs), made with openssl."""
    cert, key = directory / "edge.pem", directory / "edge.key"
    names = ",".join(f"IP:{address}" for address in addresses)
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=nimbus",
         "-addext", f"subjectAltName={names}", "-keyout", str(key), "-out", str(cert)],
        capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    return cert, key


LAMBDA_TRUST = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
})


def ensure_lambda_role(nimbus):
    """The execution role ROLE names, as every function needs one that exists and
    trusts Lambda; it may write logs and nothing else."""
    iam = nimbus.client("iam")
    try:
        iam.create_role(RoleName="lambda-role", AssumeRolePolicyDocument=LAMBDA_TRUST)
    except iam.exceptions.EntityAlreadyExistsException:
        return
    iam.attach_role_policy(RoleName="lambda-role",
                           PolicyArn="arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")


@pytest.fixture(scope="session", autouse=True)
def sweep_sandbox_cgroups():
    """Servers killed on purpose (SIGKILL) leave their sandboxes' empty cgroups behind
    until a server starts on the same data dir again; once every server of the session
    has stopped, they are removed here."""
    yield
    for hierarchy in Path("/sys/fs/cgroup").glob("*"):
        for parent in hierarchy.glob("nimbus-*"):
            for group in parent.iterdir():
                if group.is_dir():
                    with contextlib.suppress(OSError):
                        group.rmdir()
            with contextlib.suppress(OSError):
                parent.rmdir()


@pytest.fixture
def data_dir():
    with tempfile.TemporaryDirectory(prefix="nimbus-e2e-") as directory:
        yield Path(directory)
        EXTERNAL_BACKENDS.forget(Path(directory))


@pytest.fixture(scope="session")
def nimbus():
    """One server shared by the tests that do not restart or reconfigure it."""
    with tempfile.TemporaryDirectory(prefix="nimbus-e2e-") as directory:
        server = start_nimbus(Path(directory))
        try:
            yield server
        finally:
            server.kill(signal.SIGTERM)
            EXTERNAL_BACKENDS.forget(Path(directory))


@pytest.fixture
def fresh_nimbus(data_dir):
    """A server of the test's own, stopped at the end of the test."""
    servers = []

    def start(*args, env=None):
        server = start_nimbus(data_dir, *args, env=env)
        servers.append(server)
        return server

    yield start
    # Stopped gracefully, so the sandboxes' cgroups and containers go with them.
    for server in servers:
        server.kill(signal.SIGTERM)


# --- Lambda ---------------------------------------------------------------------

FUNCTIONS = Path(__file__).resolve().parent / "functions"
ROLE = "arn:aws:iam::000000000000:role/lambda-role"


def zip_directory(directory: Path) -> bytes:
    """The zip of a directory, keeping file modes (a `bootstrap` stays executable)."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                info = zipfile.ZipInfo.from_file(path, path.relative_to(directory).as_posix())
                with open(path, "rb") as source:
                    archive.writestr(info, source.read(), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def zip_function(name: str) -> bytes:
    return zip_directory(FUNCTIONS / name)


def create_function(client, name, code: bytes, runtime="python3.12", handler="app.handler", role=ROLE, **extra):
    """Creates a function and waits until it is Active."""
    client.create_function(
        FunctionName=name, Runtime=runtime, Role=role, Handler=handler, Code={"ZipFile": code}, **extra
    )
    client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})


def invoke(client, name, payload=None, **extra):
    """Invokes synchronously; returns (response, decoded payload)."""
    import json

    response = client.invoke(FunctionName=name, Payload=json.dumps(payload if payload is not None else {}), **extra)
    body = response["Payload"].read()
    return response, json.loads(body) if body else None


@pytest.fixture(scope="session")
def lambda_client(nimbus):
    return nimbus.lambda_client()


@pytest.fixture
def unique_name(request):
    """A function name no other test uses."""
    import uuid

    return f"{request.node.name[:40].replace('[', '-').replace(']', '')}-{uuid.uuid4().hex[:8]}"


# --- Callbacks from functions ---------------------------------------------------


def host_address() -> str:
    """This host's address on its default route: what a sandboxed function reaches
    the host by (its own 127.0.0.1 is the sandbox's loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))
        return probe.getsockname()[0]


class Callbacks:
    """An HTTP server on this host recording what functions post to it."""

    def __init__(self):
        self.posts = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.posts.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        address = host_address()
        self.server = http.server.ThreadingHTTPServer((address, 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://{address}:{self.server.server_address[1]}/"

    def wait_for(self, count, timeout=60):
        deadline = time.monotonic() + timeout
        while len(self.posts) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return list(self.posts)


@pytest.fixture
def callbacks():
    server = Callbacks()
    yield server
    server.server.shutdown()


@pytest.fixture(scope="session")
def boto3_layer():
    """boto3 and its dependencies as a layer, as the python runtime on AWS has them."""
    import io
    import zipfile

    site = Path(boto3.__file__).resolve().parent.parent
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for package in ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six.py"):
            root = site / package
            paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
            for path in paths:
                info = zipfile.ZipInfo.from_file(path, "python/" + path.relative_to(site).as_posix())
                archive.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()
