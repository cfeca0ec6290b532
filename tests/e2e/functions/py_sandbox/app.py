"""Probes the walls of its own sandbox; each action reports what it could do."""

import os
import socket
import subprocess
import sys
import time


def read(paths):
    seen = {}
    for path in paths:
        try:
            with open(path, "rb") as file:
                seen[path] = "read:" + file.read(200).decode(errors="replace")
        except OSError as err:
            seen[path] = type(err).__name__
    return seen


def status():
    fields = {}
    with open("/proc/self/status") as file:
        for line in file:
            key, _, value = line.partition(":")
            if key in ("Uid", "CapEff", "CapBnd", "NoNewPrivs", "Seccomp"):
                fields[key] = value.split()[0]
    return fields


def processes():
    return sum(1 for entry in os.listdir("/proc") if entry.isdigit())


def address():
    """This sandbox's own address, the one its route to the outside leaves from."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.123", 9))
        return probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()


def connect(host, port):
    try:
        socket.create_connection((host, port), timeout=2).close()
        return "connected"
    except OSError as err:
        return type(err).__name__


BOMB = """
import os, time
while True:
    try:
        os.fork()
    except OSError:
        time.sleep(0.05)
"""


def forkbomb(seconds):
    """Processes that fork without end; after `seconds`, counts the processes they
    reached, then kills them all (everything but the sandbox's init and this one)."""
    subprocess.Popen([sys.executable, "-S", "-c", BOMB])
    time.sleep(seconds)
    peak = processes()
    for _ in range(400):
        try:
            os.kill(-1, 9)
        except ProcessLookupError:
            pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass
        if processes() <= 2:
            break
        time.sleep(0.05)
    return {"peak": peak, "after": processes()}


def handler(event, context):
    action = event["action"]
    if action == "read":
        return read(event["paths"])
    if action == "write_tmp":
        with open(os.path.join("/tmp", event["name"]), "w") as file:
            file.write(event["text"])
        return sorted(os.listdir("/tmp"))
    if action == "list_tmp":
        return sorted(os.listdir("/tmp"))
    if action == "whoami":
        return {"status": status(), "address": address(), "pid": os.getpid(), "processes": processes(),
                "writable_task": os.access("/var/task", os.W_OK), "root": sorted(os.listdir("/"))}
    if action == "connect":
        return connect(event["host"], event["port"])
    if action == "allocate":
        block = b"\x01" * (event["mb"] * 1024 * 1024)
        return len(block) // (1024 * 1024)
    if action == "sleeper":
        # Detached into its own session, as a daemon would, so only the sandbox
        # boundary can take it down.
        subprocess.Popen(["/bin/sleep", str(event["marker"])], start_new_session=True)
        time.sleep(event["sleep"])
        return "woke"
    if action == "forkbomb":
        return forkbomb(event["seconds"])
    raise ValueError(f"unknown action {action}")
