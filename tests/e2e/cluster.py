"""Three nimbus nodes on one PostgreSQL database and one bucket prefix, each in a
network namespace of its own with its own address on a bridge, as three machines
would be: for the cluster suite (tests/e2e/test_cluster.py) and its benchmark
(bench/cluster.sh). Standard library only, besides backends.py.

The nodes reach the PostgreSQL and Garage this host runs on loopback through relays
on the bridge; the caller reaches the nodes at their bridge addresses."""

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import backends

NODES = 3
ZONES = ["us-east-1a", "us-east-1b", "us-east-1c"]
PORT = 4566


@dataclass
class Node:
    """A running node: its process (nsenter execs nimbus, so the pid is nimbus's)."""

    data_dir: Path
    process: subprocess.Popen
    endpoint: str
    stderr_lines: list = field(default_factory=list)

    def kill(self, sig=signal.SIGKILL):
        if self.process.poll() is None:
            self.process.send_signal(sig)
        self.process.wait(timeout=30)


def sh(*command):
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{command}: {result.stderr}"


class Relay:
    """A TCP relay from an address on the test bridge to a loopback port, so nodes in
    their namespaces reach the PostgreSQL and Garage this host runs on loopback."""

    def __init__(self, listen_host, target_port):
        self.target = ("127.0.0.1", target_port)
        self.server = socket.create_server((listen_host, 0))
        self.port = self.server.getsockname()[1]
        self.closed = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def pipe(source, sink):
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self):
        self.closed = True
        self.server.close()


class Deployment:
    """Three nodes on one database and one bucket prefix, each in its own network
    namespace; the test owns and removes the namespaces, bridge and relays."""

    def __init__(self, root: Path, environment: dict, binary: str, extra_env=None, tls=None):
        self.root = root
        self.environment = environment  # names the backends: NIMBUS_TEST_POSTGRES, NIMBUS_TEST_S3, keys
        self.binary = binary
        self.extra_env = extra_env or {}
        # (certificate, key) PEM paths: the nodes serve HTTPS, and talk to each other
        # over it.
        self.tls = tls
        self.tag = secrets.token_hex(2)
        self.subnet = f"10.251.{secrets.randbelow(250) + 1}"
        self.bridge = f"ncl{self.tag}"
        self.namespaces = [f"nimbus-{self.tag}-{i}" for i in range(NODES)]
        self.nodes: list[Node | None] = [None] * NODES
        self.relays = []
        self.database = f"cluster_{self.tag}"

    def address(self, i):
        return f"{self.subnet}.{11 + i}"

    def endpoint(self, i):
        return f"{'https' if self.tls else 'http'}://{self.address(i)}:{PORT}"

    def create(self):
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for i, ns in enumerate(self.namespaces):
            host_end = f"{self.bridge}n{i}"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "link", "set", host_end, "master", self.bridge, "up")
            sh("ip", "-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "route", "add", "default", "via", f"{self.subnet}.1")
        known = self.environment
        postgres = urllib.parse.urlsplit(known["NIMBUS_TEST_POSTGRES"])
        s3 = urllib.parse.urlsplit(known["NIMBUS_TEST_S3"])
        endpoint = urllib.parse.urlsplit(urllib.parse.parse_qs(s3.query)["endpoint"][0])
        pg_relay = Relay(f"{self.subnet}.1", postgres.port)
        s3_relay = Relay(f"{self.subnet}.1", endpoint.port)
        self.relays = [pg_relay, s3_relay]
        backends.create_database(known["NIMBUS_TEST_POSTGRES"], self.database)
        url = backends.database_url(known["NIMBUS_TEST_POSTGRES"], self.database)
        # An API node on this host reaches the backends on loopback, as they are.
        self.local_metadata = url
        self.local_blobs = urllib.parse.urlunsplit(s3._replace(path=f"{s3.path.rstrip('/')}/cluster-{self.tag}"))
        self.metadata = urllib.parse.urlunsplit(
            urllib.parse.urlsplit(url)._replace(netloc=f"{postgres.username}@{self.subnet}.1:{pg_relay.port}"))
        query = urllib.parse.parse_qs(s3.query)
        query["endpoint"] = [f"http://{self.subnet}.1:{s3_relay.port}"]
        self.blobs = urllib.parse.urlunsplit(s3._replace(
            path=f"{s3.path.rstrip('/')}/cluster-{self.tag}",
            query=urllib.parse.urlencode({k: v[0] for k, v in query.items()})))
        self.blob_env = {
            "NIMBUS_BLOBS_ACCESS_KEY_ID": known.get("NIMBUS_TEST_S3_ACCESS_KEY_ID", ""),
            "NIMBUS_BLOBS_SECRET_ACCESS_KEY": known.get("NIMBUS_TEST_S3_SECRET_ACCESS_KEY", ""),
        }

    def start(self, i) -> Node:
        command = ["nsenter", f"--net=/run/netns/{self.namespaces[i]}", self.binary, "server",
                   "--listen", f"{self.address(i)}:{PORT}", "--zone", ZONES[i],
                   "--metadata", self.metadata, "--blobs", self.blobs]
        self.nodes[i] = self.launch(command, f"node-{i}", self.endpoint(i))
        return self.nodes[i]

    def start_api_node(self) -> Node:
        """A node in this host's own namespace that answers calls and runs no code; the
        caller stops it."""
        command = [self.binary, "server", "--listen", "127.0.0.1:0", "--roles", "api",
                   "--metadata", self.local_metadata, "--blobs", self.local_blobs]
        return self.launch(command, "api", None)

    def launch(self, command, name, endpoint) -> Node:
        data_dir = self.root / name
        data_dir.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("NIMBUS_")}
        env.update(self.blob_env)
        env.update(self.extra_env)
        command = [*command, "--data-dir", str(data_dir), "--node-name", name]
        if self.tls:
            command += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        first_line = process.stdout.readline()
        if "listening on" not in first_line:
            process.wait(timeout=10)
            raise RuntimeError(f"{name} did not start: {first_line}{process.stderr.read()}")
        endpoint = endpoint or first_line.split("listening on ")[1].split()[0]
        node = Node(data_dir=data_dir, process=process, endpoint=endpoint)
        for stream, sink in ((process.stdout, []), (process.stderr, node.stderr_lines)):
            threading.Thread(target=lambda s=stream, k=sink: [k.append(line) for line in s], daemon=True).start()
        return node

    def remove(self):
        for node in self.nodes:
            if node is not None:
                node.kill(signal.SIGTERM)
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        for relay in self.relays:
            relay.close()
        with contextlib.suppress(Exception):
            backends.drop_database(self.environment["NIMBUS_TEST_POSTGRES"], self.database)
