#!/usr/bin/env bash
# Registry benchmark: skopeo pushes and pulls one multi-layer image (BENCH_IMAGE_MB,
# default 200, of incompressible layers) to nimbus and to Debian's docker-registry
# (the CNCF distribution registry) on loopback, side by side; the ceiling is a `cp` +
# `sync` of the same bytes.
#
#   bench/registry.sh
#   BENCH_ROUNDS=5 BENCH_IMAGE_MB=500 bench/registry.sh
bench=registry.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
image_mb=${BENCH_IMAGE_MB:-200}
layers=5

for tool in skopeo docker-registry; do
    command -v "$tool" >/dev/null || apt-get install -y -q skopeo docker-registry >/dev/null
done

# The image, built once per size: an OCI layout of gzip layers of random bytes.
image=$HOME/.cache/nimbus/bench-image-$image_mb
if [[ ! -f $image/index.json ]]; then
    echo "building a $image_mb MB image..." >&2
    rm -rf "$image"
    "$python" - "$image" "$image_mb" "$layers" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile

root, total_mb, layers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
blobs = os.path.join(root, "blobs", "sha256")
os.makedirs(blobs)

def store(data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as out:
        out.write(data)
    return "sha256:" + digest

descriptors, diff_ids = [], []
for n in range(layers):
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        payload = os.urandom(total_mb * 1024 * 1024 // layers)
        info = tarfile.TarInfo(f"layer{n}.bin")
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    diff_ids.append("sha256:" + hashlib.sha256(tar.getvalue()).hexdigest())
    compressed = gzip.compress(tar.getvalue(), compresslevel=1)
    descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": store(compressed), "size": len(compressed)})
config = json.dumps({"architecture": "amd64", "os": "linux",
                     "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": store(config), "size": len(config)},
                       "layers": descriptors}).encode()
with open(os.path.join(root, "index.json"), "w") as out:
    json.dump({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": store(manifest),
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}, out)
with open(os.path.join(root, "oci-layout"), "w") as out:
    json.dump({"imageLayoutVersion": "1.0.0"}, out)
PY
fi
bytes=$(du -sb "$image/blobs" | cut -f1)

build
start_nimbus
reference_port=$(free_port)
mkdir -p "$tmp/distribution"
cat >"$tmp/registry.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $tmp/distribution
http:
  addr: 127.0.0.1:$reference_port
YML
docker-registry serve "$tmp/registry.yml" >"$tmp/registry.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$reference_port/v2/"

nimbus_host=${nimbus_url#http://}
nimbus_host=${nimbus_host%/}
password=$(
    PYTHONPATH=$root/bench/py "$python" - "$credentials" "$nimbus_url" <<'PY'
import base64, configparser, sys
import boto3

profile = configparser.ConfigParser()
profile.read(sys.argv[1])
keys = profile["nimbus"]
ecr = boto3.client("ecr", endpoint_url=sys.argv[2], region_name="us-east-1",
                   aws_access_key_id=keys["aws_access_key_id"], aws_secret_access_key=keys["aws_secret_access_key"])
token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
print(base64.b64decode(token).decode().split(":", 1)[1])
PY
)
create_repository() {
    AWS_SHARED_CREDENTIALS_FILE=$credentials AWS_CONFIG_FILE=/dev/null "$python" -c '
import sys, boto3
boto3.Session(profile_name="nimbus", region_name="us-east-1").client("ecr", endpoint_url=sys.argv[1]).create_repository(repositoryName=sys.argv[2])
' "$nimbus_url" "$1"
}

# seconds COMMAND...: wall-clock seconds of one run.
seconds() {
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null 2>"$tmp/skopeo.err" || die "$* failed: $(cat "$tmp/skopeo.err")"
    end=$(date +%s.%N)
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", e - s }'
}

# A fresh repository per round, and skopeo's cache of which blobs a registry holds
# emptied, so every push uploads every byte.
cache=/var/lib/containers/cache/blob-info-cache-v1.boltdb
for round in $(seq "$rounds"); do
    repo=bench$round
    create_repository "$repo"
    for target in reference nimbus; do
        if [[ $target == nimbus ]]; then
            dest=docker://$nimbus_host/$repo:v1
            creds=(--dest-creds "AWS:$password")
            src_creds=(--src-creds "AWS:$password")
        else
            dest=docker://127.0.0.1:$reference_port/$repo:v1
            creds=()
            src_creds=()
        fi
        rm -f "$cache"
        push=$(seconds skopeo copy --dest-tls-verify=false "${creds[@]}" "oci:$image:bench" "$dest")
        rm -rf "$tmp/pulled"
        pull=$(seconds skopeo copy --src-tls-verify=false "${src_creds[@]}" "$dest" "oci:$tmp/pulled:bench")
        echo "$push $pull" >>"$tmp/$target"
        echo "round $round/$rounds: $target push ${push}s pull ${pull}s" >&2
    done
    rm -rf "$tmp/copy"
    copy=$(seconds bash -c "cp -r '$image/blobs' '$tmp/copy' && sync")
    echo "$copy" >>"$tmp/ceiling"
done

awk -v mb="$(awk -v b="$bytes" 'BEGIN { print b / 1e6 }')" -v rounds="$rounds" \
    -v ref_push="$(cut -d' ' -f1 "$tmp/reference" | median)" -v ref_pull="$(cut -d' ' -f2 "$tmp/reference" | median)" \
    -v nim_push="$(cut -d' ' -f1 "$tmp/nimbus" | median)" -v nim_pull="$(cut -d' ' -f2 "$tmp/nimbus" | median)" \
    -v copy="$(median <"$tmp/ceiling")" 'BEGIN {
    printf "\n%.0f MB image, %d layers; medians of %d rounds (skopeo copy, loopback)\n", mb, '"$layers"', rounds
    printf "%-26s %12s %12s\n", "target", "push MB/s", "pull MB/s"
    printf "%-26s %12.0f %12.0f\n", "docker-registry", mb / ref_push, mb / ref_pull
    printf "%-26s %12.0f %12.0f\n", "nimbus", mb / nim_push, mb / nim_pull
    printf "%-26s %11.2fx %11.2fx\n", "nimbus / docker-registry", ref_push / nim_push, ref_pull / nim_pull
    printf "%-26s %12.0f\n", "cp + sync (ceiling)", mb / copy
    printf "goal: push and pull at least 1.5x docker-registry with the same client\n"
}'
