"""OCI image layouts built offline with umoci, to push to a registry and compare, blob
for blob, with what comes back; and a Lambda function image of the host's python
with awslambdaric."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def umoci(*args):
    result = subprocess.run(["umoci", *map(str, args)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"umoci {args}: {result.stderr}"


def blob(layout: Path, digest: str) -> bytes:
    algorithm, hex_digest = digest.split(":")
    return (layout / "blobs" / algorithm / hex_digest).read_bytes()


def tagged(layout: Path, tag: str) -> dict:
    """The descriptor index.json holds for `tag`."""
    index = json.loads((layout / "index.json").read_text())
    [entry] = [m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) == tag]
    return entry


def manifest(layout: Path, tag: str) -> bytes:
    """The bytes of the manifest or index tagged `tag`."""
    return blob(layout, tagged(layout, tag)["digest"])


def reachable(layout: Path, tag: str) -> dict:
    """Every blob `tag` reaches (itself, child manifests, configs, layers) by digest:
    layouts holding the same image byte for byte give equal dicts."""
    found = {}
    pending = [tagged(layout, tag)]
    while pending:
        descriptor = pending.pop()
        data = blob(layout, descriptor["digest"])
        found[descriptor["digest"]] = data
        if descriptor["mediaType"] == INDEX:
            pending += json.loads(data)["manifests"]
        elif descriptor["mediaType"] == MANIFEST:
            parsed = json.loads(data)
            pending += [parsed["config"], *parsed["layers"]]
    return found


def build_image(layout: Path, tag="v1", layers=3, architecture="amd64") -> bytes:
    """Adds the linux/`architecture` image `tag` to the OCI layout `layout` (made if
    missing) and returns its manifest: an empty image, then one layer of random bytes
    (256 KiB, 512 KiB, ...) per `umoci insert`, so no two builds share a layer."""
    if not (layout / "index.json").exists():
        umoci("init", "--layout", layout)
    image = f"{layout}:{tag}"
    umoci("new", "--image", image)
    umoci("config", "--image", image, "--os", "linux", "--architecture", architecture)
    with tempfile.TemporaryDirectory() as scratch:
        for n in range(layers):
            data = Path(scratch) / str(n)
            data.write_bytes(os.urandom(256 * 1024 * (n + 1)))
            umoci("insert", "--image", image, data, f"/data/{n}")
    # Every step wrote a new manifest and config; drop the superseded ones.
    umoci("gc", "--layout", layout)
    return manifest(layout, tag)


def build_index(layout: Path, tag="multi", architectures=("amd64", "arm64")) -> bytes:
    """Adds to `layout` one image per architecture, each with layers of its own, and
    the image index `tag` over them (written here: umoci makes no indexes); returns
    the index. index.json names only the index, not the images in it."""
    entries = []
    for architecture in architectures:
        image = build_image(layout, tag=f"{tag}-{architecture}", architecture=architecture)
        entries.append({"mediaType": MANIFEST, "digest": sha256(image), "size": len(image),
                        "platform": {"architecture": architecture, "os": "linux"}})
    index = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}).encode()
    (layout / "blobs" / "sha256" / sha256(index).split(":")[1]).write_bytes(index)
    top = json.loads((layout / "index.json").read_text())
    images = {f"{tag}-{architecture}" for architecture in architectures}
    top["manifests"] = [m for m in top["manifests"] if m.get("annotations", {}).get(REF_NAME) not in images]
    top["manifests"].append({"mediaType": INDEX, "digest": sha256(index), "size": len(index),
                             "annotations": {REF_NAME: tag}})
    (layout / "index.json").write_text(json.dumps(top))
    return index


# --- A Lambda function image -------------------------------------------------------

PYTHON = Path("/usr/bin/python3.11")
STDLIB = Path("/usr/lib/python3.11")
# Left out of the image's standard library: tests, GUIs, build files, bytecode.
STDLIB_SKIPPED = {"test", "idlelib", "tkinter", "turtledemo", "__pycache__", "config-3.11-x86_64-linux-gnu",
                  "lib2to3", "pydoc_data", "ensurepip", "venv", "distutils", "sitecustomize.py", "EXTERNALLY-MANAGED"}
DYNLOAD_SKIPPED = ("_test", "_ctypes_test", "_xx", "xxlimited", "_curses", "readline", "_dbm", "nis", "ossaudiodev")
AWSLAMBDARIC = "4.2.2"
WHEELS = Path.home() / ".cache" / "nimbus" / "wheels" / "awslambdaric-cp311"
PIP_TARGET = ["--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
              "--platform", "manylinux2014_x86_64"]
# The image's config: awslambdaric as the entrypoint, the handler as the command
# (what ImageConfig.Command replaces), the code at /var/task as on AWS.
LAMBDA_ENTRYPOINT = ["/usr/bin/python3.11", "-m", "awslambdaric"]
LAMBDA_CMD = ["app.handler"]
LAMBDA_WORKDIR = "/var/task"
LAMBDA_ENV = ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "PYTHONPATH=/var/runtime",
              "LAMBDA_TASK_ROOT=/var/task", "LAMBDA_RUNTIME_DIR=/var/runtime"]


def shared_libraries(elf: Path) -> set[Path]:
    """What the dynamic loader maps for `elf`, the loader itself included."""
    output = subprocess.run(["ldd", str(elf)], capture_output=True, text=True, check=True).stdout
    found = set()
    for line in output.splitlines():
        path = line.split("=>")[-1].strip().split(" (")[0]
        if path.startswith("/"):
            found.add(Path(path))
    return found


def copy_host_file(path: Path, rootfs: Path):
    """`path`'s content at the same place under `rootfs`, its directory resolved
    (Debian's /lib is /usr/lib)."""
    target = rootfs / path.parent.resolve().relative_to("/") / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path.resolve(), target)


def skipped_stdlib(directory: str, names: list[str]) -> list[str]:
    dynload = directory.endswith("lib-dynload")
    return [n for n in names if n in STDLIB_SKIPPED or (dynload and n.startswith(DYNLOAD_SKIPPED))]


def install_awslambdaric(target: Path):
    """awslambdaric and its dependencies for CPython 3.11 into `target`, from wheels
    downloaded from PyPI once and kept under ~/.cache/nimbus."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    if not any(WHEELS.glob(f"awslambdaric-{AWSLAMBDARIC}-*.whl")):
        subprocess.run([*pip, "download", "--dest", WHEELS, *PIP_TARGET, f"awslambdaric=={AWSLAMBDARIC}"],
                       check=True, timeout=300)
    subprocess.run([*pip, "install", "--no-index", "--find-links", WHEELS, "--no-compile", "--target", target,
                    *PIP_TARGET, f"awslambdaric=={AWSLAMBDARIC}"], check=True, timeout=300)


def build_python_lambda_image(root: Path, apps: dict[str, str]) -> Path:
    """An OCI layout under `root` holding, for each tag in `apps`, a Lambda function
    image: Debian's python3.11 (the interpreter, the libraries it and its extension
    modules load, most of the standard library), awslambdaric at /var/runtime, and
    the tag's source as /var/task/app.py, one layer above the shared base. Returns
    the layout."""
    layout, bundle = root / "layout", root / "bundle"
    base = f"{layout}:base"
    umoci("init", "--layout", layout)
    umoci("new", "--image", base)
    umoci("config", "--image", base, "--os", "linux", "--architecture", "amd64",
          *[f"--config.entrypoint={arg}" for arg in LAMBDA_ENTRYPOINT],
          *[f"--config.cmd={arg}" for arg in LAMBDA_CMD],
          *[f"--config.env={pair}" for pair in LAMBDA_ENV], "--config.workingdir", LAMBDA_WORKDIR)
    # unpack and repack: umoci 0.4.7's `insert` writes layers without tar's end blocks.
    umoci("unpack", "--image", base, bundle)
    rootfs = bundle / "rootfs"
    for directory in ("usr/bin", "usr/lib", "usr/lib64", "etc", "tmp", "proc", "sys", "dev", "var/task", "opt"):
        (rootfs / directory).mkdir(parents=True, exist_ok=True)
    for link in ("bin", "lib", "lib64"):
        (rootfs / link).symlink_to(f"usr/{link}")
    (rootfs / "tmp").chmod(0o1777)
    shutil.copy2(PYTHON, rootfs / "usr/bin/python3.11")
    (rootfs / "usr/bin/python3").symlink_to("python3.11")
    shutil.copytree(STDLIB, rootfs / STDLIB.relative_to("/"), symlinks=True, ignore=skipped_stdlib)
    install_awslambdaric(rootfs / "var/runtime")
    elves = [PYTHON, *(rootfs / "usr/lib/python3.11/lib-dynload").glob("*.so"), *(rootfs / "var/runtime").rglob("*.so")]
    for library in set().union(*map(shared_libraries, elves)):
        copy_host_file(library, rootfs)
    umoci("repack", "--refresh-bundle", "--image", base, bundle)
    for tag, source in apps.items():
        (rootfs / "var/task/app.py").write_text(source)
        umoci("repack", "--image", f"{layout}:{tag}", bundle)
    umoci("gc", "--layout", layout)
    shutil.rmtree(bundle)
    return layout
