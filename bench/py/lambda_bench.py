"""What the Lambda benchmarks share: a boto3 client for a bench server, zips, the
functions they deploy, cold invokes and percentiles."""

import base64
import configparser
import io
import re
import statistics
import subprocess
import time
import zipfile

import boto3
from botocore.config import Config

PYTHON_APP = b"def handler(event, context):\n    return {'ok': True}\n"
NODE_APP = b"exports.handler = async () => ({ ok: true });\n"


def client(credentials_file, url):
    profile = configparser.ConfigParser()
    profile.read(credentials_file)
    keys = profile["nimbus"]
    return boto3.client(
        "lambda", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id=keys["aws_access_key_id"], aws_secret_access_key=keys["aws_secret_access_key"],
        config=Config(retries={"max_attempts": 1}, read_timeout=120),
    )


def zipped(files):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data, mode in files:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def functions(rust_binary, names):
    """(runtime, handler, zip) of the benchmark functions called `names`."""
    with open(rust_binary, "rb") as binary:
        rust = zipped([("bootstrap", binary.read(), 0o755)])
    every = {
        "rust": ("provided.al2023", "bootstrap", rust),
        "python": ("python3.12", "app.handler", zipped([("app.py", PYTHON_APP, 0o644)])),
        "node": ("nodejs20.x", "index.handler", zipped([("index.js", NODE_APP, 0o644)])),
    }
    return {name: every[name] for name in names}


def deploy(lambda_client, deployed):
    for name, (runtime, handler, code) in deployed.items():
        lambda_client.create_function(
            FunctionName=name, Runtime=runtime, Handler=handler, Code={"ZipFile": code},
            Role="arn:aws:iam::000000000000:role/bench",
        )
        lambda_client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.1})


def cold_invokes(lambda_client, name, runs, pause=0.0):
    """Forces `runs` cold starts (a configuration change retires the warm environment);
    returns the Init Durations of the REPORT lines and the client-side times of the
    cold invokes, in ms. `pause` seconds pass before each invoke."""
    init, total = [], []
    for run in range(runs):
        lambda_client.update_function_configuration(FunctionName=name, Environment={"Variables": {"RUN": str(run)}})
        lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.1})
        time.sleep(pause)
        started = time.perf_counter()
        response = lambda_client.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
        total.append((time.perf_counter() - started) * 1000)
        assert "FunctionError" not in response, response["Payload"].read()
        log = base64.b64decode(response["LogResult"]).decode()
        init.append(float(re.search(r"Init Duration: ([0-9.]+) ms", log).group(1)))
    return init, total


def timed_runs(command, runs):
    """Wall-clock ms of running `command` to completion, `runs` times; `command` may
    be a callable taking the run's index, for commands that differ per run."""
    times = []
    for run in range(runs):
        argv = command(run) if callable(command) else command
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
        times.append((time.perf_counter() - started) * 1000)
    return times


def real_python():
    """The interpreter itself, not a wrapper such as a pyenv shim in front of it."""
    return subprocess.run(
        ["python3", "-c", "import sys; print(sys.executable)"], check=True, capture_output=True, text=True
    ).stdout.strip()


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def median(values):
    return statistics.median(values)


def callback_server(record):
    """An HTTP server on this host's address (sandboxed functions cannot reach the
    host's loopback) that calls `record(body)` for every POST; its URL."""
    import http.server
    import socket
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            record(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))
        address = probe.getsockname()[0]
    server = http.server.ThreadingHTTPServer((address, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://{address}:{server.server_address[1]}/"
