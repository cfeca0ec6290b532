"""Throwaway PostgreSQL and Garage (S3) instances for running nimbus on external
backends: each in a directory of its own, on free loopback ports.

Standard library only: scripts/test.sh runs it with the system python3 before the
venv exists, and conftest imports it.

    python3 tests/e2e/backends.py start DIR   # starts both detached, prints `export` lines
    python3 tests/e2e/backends.py stop DIR    # stops both and removes DIR

The exported variables are what the Rust tests and the end-to-end suite look for:
NIMBUS_TEST_POSTGRES (a superuser URL to create databases through), NIMBUS_TEST_S3
(the bucket `nimbus`), NIMBUS_TEST_S3_ACCESS_KEY_ID / NIMBUS_TEST_S3_SECRET_ACCESS_KEY.
"""

import contextlib
import glob
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
USER = "nimbus"
BUCKET = "nimbus"
REGION = "garage"
# Each nimbus server keeps a pool of up to NIMBUS_METADATA_POOL (16) connections; the
# suite runs a dozen servers at once at most, and the Rust tests their own.
MAX_CONNECTIONS = 400


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready within {timeout} s")
        time.sleep(0.1)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours is gone for our purposes.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return False
    return True


def stop_pid(pid_file: Path, sig=signal.SIGINT, timeout=30):
    """Stops the process `pid_file` names with `sig` (SIGKILL after `timeout`)."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    pid_file.unlink(missing_ok=True)


def log_tail(path: Path, lines=30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


# --- PostgreSQL -----------------------------------------------------------------


def postgres_bin() -> Path:
    """Debian's server binaries: /usr/lib/postgresql/<version>/bin, newest first."""
    if os.environ.get("NIMBUS_PG_BIN"):
        return Path(os.environ["NIMBUS_PG_BIN"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise RuntimeError("no PostgreSQL server under /usr/lib/postgresql (apt-get install postgresql)")
    return Path(found[-1]).parent


def server_user() -> dict:
    """Popen arguments running the servers as `postgres`: neither initdb nor postgres
    runs as root."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": pwd.getpwnam("postgres").pw_gid, "extra_groups": []}


def parse_postgres_url(url: str) -> dict:
    parts = urllib.parse.urlsplit(url)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": str(parts.port or 5432),
        "user": urllib.parse.unquote(parts.username or USER),
        "password": urllib.parse.unquote(parts.password or ""),
        "database": parts.path.lstrip("/") or "postgres",
    }


def psql(url: str, sql: str, timeout=60) -> str:
    """Runs `sql` through the database `url` names; returns what psql printed."""
    target = parse_postgres_url(url)
    env = {**os.environ, "PGPASSWORD": target["password"], "PGCONNECT_TIMEOUT": "10"}
    done = subprocess.run(
        [str(postgres_bin() / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
         "-h", target["host"], "-p", target["port"], "-U", target["user"], "-d", target["database"], "-c", sql],
        env=env, capture_output=True, text=True, timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"psql {sql!r} failed: {done.stderr.strip()}")
    return done.stdout


def database_url(url: str, database: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + database))


def create_database(url: str, name: str) -> str:
    """Creates the empty database `name` on the server `url` names (a superuser's);
    returns its URL."""
    psql(url, f'CREATE DATABASE "{name}"')
    return database_url(url, name)


def drop_database(url: str, name: str):
    psql(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Postgres:
    """A PostgreSQL server in `directory` on a loopback port, trusting every local
    connection; the superuser is `nimbus`."""

    def __init__(self, directory, port=None):
        self.directory = Path(directory)
        self.data = self.directory / "data"
        self.port = port or free_port()
        self.pid_file = self.directory / "postgres.pid"
        self.log = self.directory / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgres://{USER}@127.0.0.1:{self.port}/postgres"

    def _prepare(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        if (self.data / "PG_VERSION").exists():
            return
        user = server_user()
        if user:
            # postgres must reach its directory: everything above it traversable.
            for parent in [self.directory, *self.directory.parents]:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    parent.chmod(mode | 0o001)
            shutil.chown(self.directory, "postgres", "postgres")
        done = subprocess.run(
            [str(postgres_bin() / "initdb"), "-D", str(self.data), "-U", USER, "--auth=trust",
             "--encoding=UTF8", "--locale=C", "--no-sync"],
            capture_output=True, text=True, timeout=120, **user,
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stdout}{done.stderr}")

    def start(self, timeout=60):
        if self.running():
            return self
        self._prepare()
        with open(self.log, "ab") as log:
            process = subprocess.Popen(
                [str(postgres_bin() / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-k", str(self.directory), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                 "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                 "-c", f"max_connections={MAX_CONNECTIONS}", "-c", "shared_buffers=128MB"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                cwd=self.directory, **server_user(),
            )
        self.pid_file.write_text(f"{process.pid}\n")

        def ready():
            if process.poll() is not None:
                raise RuntimeError(f"postgres exited ({process.returncode}):\n{log_tail(self.log)}")
            return subprocess.run(
                [str(postgres_bin() / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER],
                capture_output=True, timeout=10,
            ).returncode == 0

        try:
            wait_for(ready, timeout, f"PostgreSQL on port {self.port}")
        except TimeoutError as error:
            raise TimeoutError(f"{error}:\n{log_tail(self.log)}") from None
        return self

    def stop(self):
        """A fast shutdown: open connections are closed, the data stays."""
        stop_pid(self.pid_file, signal.SIGINT)

    def running(self) -> bool:
        with contextlib.suppress(OSError, ValueError):
            return process_alive(int(self.pid_file.read_text()))
        return False

    def create_database(self, name) -> str:
        return create_database(self.url, name)

    def drop_database(self, name):
        drop_database(self.url, name)


# --- Garage ---------------------------------------------------------------------


def garage_bin() -> str:
    candidates = [os.environ.get("GARAGE_BIN"), shutil.which("garage")]
    for target in (os.environ.get("CARGO_TARGET_DIR"), REPO / "target", Path.home() / ".cache/nimbus/target"):
        if target:
            candidates.append(str(Path(target) / "garage-root" / "bin" / "garage"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    raise RuntimeError("garage not found: build it with `cargo install garage --locked --root $target_dir/garage-root` "
                       "or set GARAGE_BIN")


class Garage:
    """A single-node Garage in `directory` with the bucket `nimbus`, which one key may
    read, write and own."""

    def __init__(self, directory, state=None):
        self.directory = Path(directory)
        self.config = self.directory / "garage.toml"
        self.pid_file = self.directory / "garage.pid"
        self.log = self.directory / "garage.log"
        state = state or {}
        self.rpc_port = state.get("rpc_port") or free_port()
        self.s3_port = state.get("s3_port") or free_port()
        self.admin_port = state.get("admin_port") or free_port()
        self.access_key_id = state.get("access_key_id") or "GK" + secrets.token_hex(12)
        self.secret_access_key = state.get("secret_access_key") or secrets.token_hex(32)

    def state(self) -> dict:
        return {
            "rpc_port": self.rpc_port, "s3_port": self.s3_port, "admin_port": self.admin_port,
            "access_key_id": self.access_key_id, "secret_access_key": self.secret_access_key,
        }

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def url(self) -> str:
        """The bucket as nimbus's --blobs takes it."""
        return f"s3://{BUCKET}?endpoint={self.endpoint}&region={REGION}"

    def cli(self, *args, check=True, timeout=60) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GARAGE_")}
        done = subprocess.run([garage_bin(), "-c", str(self.config), *args], capture_output=True, text=True,
                              timeout=timeout, env=env)
        if check and done.returncode != 0:
            raise RuntimeError(f"garage {' '.join(args)} failed: {done.stdout}{done.stderr}")
        return done

    def _write_config(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.config.exists():
            return False
        self.config.write_text(f"""\
metadata_dir = "{self.directory / 'meta'}"
data_dir = "{self.directory / 'data'}"
db_engine = "lmdb"
metadata_fsync = false
data_fsync = false
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{self.rpc_port}"
rpc_public_addr = "127.0.0.1:{self.rpc_port}"
rpc_secret = "{secrets.token_hex(32)}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{self.s3_port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{self.admin_port}"
admin_token = "{secrets.token_hex(16)}"
""")
        self.config.chmod(0o600)
        return True

    def healthy(self) -> bool:
        """Whether the admin API says the cluster serves requests."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def start(self, timeout=60):
        if self.running():
            return self
        first = self._write_config()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GARAGE_")}
        env.setdefault("RUST_LOG", "garage=warn")
        with open(self.log, "ab") as log:
            process = subprocess.Popen([garage_bin(), "-c", str(self.config), "server"], stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=log, start_new_session=True, env=env,
                                       cwd=self.directory)
        self.pid_file.write_text(f"{process.pid}\n")

        def alive():
            if process.poll() is not None:
                raise RuntimeError(f"garage exited ({process.returncode}):\n{log_tail(self.log)}")
            return True

        try:
            if first:
                # `node id` reads the key from disk; `status` asks the server.
                wait_for(lambda: alive() and self.cli("status", check=False).returncode == 0, timeout, "garage RPC")
                node = self.cli("node", "id", "-q").stdout.strip().split("@")[0]
                self.cli("layout", "assign", "-z", "dc1", "-c", "1G", node)
                self.cli("layout", "apply", "--version", "1")
                wait_for(lambda: alive() and self.healthy(), timeout, "garage")
                self.cli("key", "import", "--yes", "-n", "nimbus", self.access_key_id, self.secret_access_key)
                self.cli("bucket", "create", BUCKET)
                self.cli("bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", self.access_key_id)
            wait_for(lambda: alive() and self.healthy(), timeout, "garage")
        except TimeoutError as error:
            raise TimeoutError(f"{error}:\n{log_tail(self.log)}") from None
        return self

    def stop(self):
        # SIGINT waits up to 10 s for clients' open connections; SIGTERM does not.
        stop_pid(self.pid_file, signal.SIGTERM, timeout=15)

    def running(self) -> bool:
        with contextlib.suppress(OSError, ValueError):
            return process_alive(int(self.pid_file.read_text()))
        return False


# --- Both -----------------------------------------------------------------------


class Backends:
    """PostgreSQL in DIR/postgres and Garage in DIR/garage; what they listen on and
    the key are kept in DIR/backends.json, so `stop` (or a restart) finds them."""

    def __init__(self, directory):
        self.directory = Path(directory).resolve()
        state_file = self.directory / "backends.json"
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        self.postgres = Postgres(self.directory / "postgres", port=state.get("postgres_port"))
        self.garage = Garage(self.directory / "garage", state=state.get("garage"))

    def _save(self):
        state = {"postgres_port": self.postgres.port, "garage": self.garage.state()}
        path = self.directory / "backends.json"
        path.write_text(json.dumps(state, indent=2))
        path.chmod(0o600)

    def start(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        self._save()
        try:
            self.postgres.start()
            self.garage.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        self.garage.stop()
        self.postgres.stop()

    def remove(self):
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def environment(self) -> dict:
        return {
            "NIMBUS_TEST_POSTGRES": self.postgres.url,
            "NIMBUS_TEST_S3": self.garage.url,
            "NIMBUS_TEST_S3_ACCESS_KEY_ID": self.garage.access_key_id,
            "NIMBUS_TEST_S3_SECRET_ACCESS_KEY": self.garage.secret_access_key,
        }

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.remove()


def main(argv) -> int:
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        print(f"usage: {argv[0]} start|stop DIR", file=sys.stderr)
        return 2
    backends = Backends(argv[2])
    if argv[1] == "start":
        backends.start()
        for name, value in backends.environment().items():
            print(f"export {name}={shlex.quote(value)}")
    else:
        backends.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
