"""The image the ECS benchmarks run: a static busybox in an OCI layout built with
umoci, pushed to a nimbus registry with skopeo."""

import base64
import os
import shutil
import subprocess
import sys


def run(*command):
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if result.returncode:
        sys.exit(f"{command}: {result.stderr}")
    return result.stdout


def push_busybox(ecr, url, scratch):
    """Builds the image under `scratch`, pushes it as `bench:v1` to the nimbus at `url`
    (creating the repository with `ecr`) and returns its reference."""
    os.makedirs(scratch, exist_ok=True)
    layout, bundle = f"{scratch}/layout", f"{scratch}/bundle"
    run("umoci", "init", "--layout", layout)
    run("umoci", "new", "--image", f"{layout}:v1")
    run("umoci", "unpack", "--image", f"{layout}:v1", bundle)
    os.makedirs(f"{bundle}/rootfs/bin")
    shutil.copy2("/bin/busybox", f"{bundle}/rootfs/bin/busybox")
    run("umoci", "repack", "--image", f"{layout}:v1", bundle)
    ecr.create_repository(repositoryName="bench")
    token = base64.b64decode(ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]).decode()
    host = url.removeprefix("http://").rstrip("/")
    run("skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", token, f"oci:{layout}:v1",
        f"docker://{host}/bench:v1")
    return f"{host}/bench:v1"
