"""OCI image layouts built offline with umoci, to push to a registry and compare, blob
for blob, with what comes back."""

import hashlib
import json
import os
import subprocess
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
