#!/usr/bin/env bash
# Registry benchmark: skopeo pushes one multi-layer OCI image (BENCH_IMAGE_MB, default
# 200, in five gzip layers of random bytes) to nimbus and to Debian's docker-registry
# (the CNCF distribution registry) on loopback, then pulls it back into a fresh
# layout; the ceiling is a `cp` + `sync` of the same bytes on the same disk.
#
#   bench/registry.sh
#   BENCH_ROUNDS=5 BENCH_IMAGE_MB=500 bench/registry.sh
bench=registry.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rounds=${BENCH_ROUNDS:-3}
image_mb=${BENCH_IMAGE_MB:-200}
layers=5

[[ $image_mb =~ ^[1-9][0-9]*$ ]] || die "BENCH_IMAGE_MB must be a whole number of MB, not '$image_mb'"
((EUID == 0)) || die "needs root: skopeo runs in a mount namespace of its own (see skopeo_copy)"
apt_need skopeo
apt_need docker-registry

# The image, built once per size into ~/.cache: an OCI layout of gzip layers of
# random bytes (incompressible, so no client or server gains by compressing).
image=$HOME/.cache/nimbus/bench-image-$image_mb
if [[ ! -f $image/index.json ]]; then
    echo "building a $image_mb MB image in $image..." >&2
    rm -rf "$image" "$image.partial"
    "$python" - "$image.partial" "$image_mb" "$layers" <<'PY'
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
with open(os.path.join(root, "oci-layout"), "w") as out:
    json.dump({"imageLayoutVersion": "1.0.0"}, out)
with open(os.path.join(root, "index.json"), "w") as out:
    json.dump({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": store(manifest),
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}, out)
PY
    mv "$image.partial" "$image"
fi
bytes=$(du -sb "$image/blobs" | cut -f1)

build
start_nimbus
# The reference: docker-registry with filesystem storage and the in-memory blob
# descriptor cache of Debian's stock configuration, anonymous (no auth to check).
reference_port=$(free_port)
cat >"$tmp/registry.yml" <<YML
version: 0.1
log:
  level: error
storage:
  cache:
    blobdescriptor: inmemory
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
declare -A hosts=([docker-registry]=127.0.0.1:$reference_port [nimbus]=$nimbus_host)

# nimbus: one ECR repository per round, made with boto3, and a login as a user does
# it: `AWS` and the GetAuthorizationToken password (the root access key pair as Basic
# credentials if that fails), in an auth file like the one `podman login` writes.
echo "creating $rounds repositories in nimbus..." >&2
login=$(
    AWS_SHARED_CREDENTIALS_FILE=$credentials AWS_CONFIG_FILE=/dev/null "$python" - "$nimbus_url" "$rounds" <<'PY'
import base64, sys
import boto3
from botocore.exceptions import ClientError

url, rounds = sys.argv[1], int(sys.argv[2])
session = boto3.Session(profile_name="nimbus", region_name="us-east-1")
ecr = session.client("ecr", endpoint_url=url)
for n in range(1, rounds + 1):
    ecr.create_repository(repositoryName=f"bench-{n}")
try:
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    print(token)  # base64 of "AWS:<password>"
except ClientError as error:
    print(f"GetAuthorizationToken failed ({error}); logging in with the root access key pair", file=sys.stderr)
    keys = session.get_credentials()
    print(base64.b64encode(f"{keys.access_key}:{keys.secret_key}".encode()).decode())
PY
) || die "could not create the ECR repositories in nimbus (log: $(tail -n 5 "$tmp/nimbus.log"))"
printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$nimbus_host" "$login" >"$tmp/auth.json"
export REGISTRY_AUTH_FILE=$tmp/auth.json

# skopeo_copy ARGS...: `skopeo copy` in a mount namespace of its own with an empty
# tmpfs over its blob-info cache. That cache records which blobs each registry holds,
# and skopeo skips or cross-mounts those instead of uploading them; emptied, every
# push uploads every byte (and the host's cache is left alone).
blob_info_cache=/var/lib/containers/cache
mkdir -p "$blob_info_cache"
# shellcheck disable=SC2016 # $1 and $@ are the inner shell's
skopeo_copy() {
    unshare --mount sh -c 'mount -t tmpfs tmpfs "$1" && shift && exec skopeo copy "$@"' \
        sh "$blob_info_cache" "$@"
}

# timed COMMAND...: runs COMMAND after a `sync`, so that no earlier step's dirty pages
# are written back on its time, and prints its wall-clock seconds; its stderr goes to
# $tmp/err.
timed() {
    local start end
    sync
    start=$(date +%s.%N)
    "$@" >/dev/null 2>"$tmp/err" || return
    end=$(date +%s.%N)
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", e - s }'
}

# failed WHAT: dies with the failing command's message (and, for nimbus, the end of
# the server's log).
failed() {
    local message
    message="$1 failed: $(cat "$tmp/err")"
    [[ $1 != nimbus* ]] || message+=$'\n'"nimbus log (last lines):"$'\n'"$(tail -n 20 "$tmp/nimbus.log")"
    die "$message"
}

copy_and_sync() { cp -r "$1" "$2" && sync; }

# Each round pushes to a repository neither registry has seen. Both scope blobs by
# repository (a HEAD of a blob another repository holds answers 404), so with the
# blob-info cache empty skopeo uploads every layer; the bytes then go through each
# registry's whole upload path, even where its store already holds them.
for round in $(seq "$rounds"); do
    for target in docker-registry nimbus; do
        reference=docker://${hosts[$target]}/bench-$round:v1
        push=$(timed skopeo_copy --dest-tls-verify=false "oci:$image:bench" "$reference") ||
            failed "$target push"
        rm -rf "$tmp/pulled"
        pull=$(timed skopeo_copy --src-tls-verify=false "$reference" "oci:$tmp/pulled:bench") ||
            failed "$target pull"
        pulled=$(du -sb "$tmp/pulled/blobs" | cut -f1)
        ((pulled == bytes)) || die "$target pull: $pulled bytes of blobs, the image has $bytes"
        echo "$push $pull" >>"$tmp/$target"
        echo "round $round/$rounds: $target push ${push}s, pull ${pull}s" >&2
    done
    rm -rf "$tmp/pulled" "$tmp/copy"
    copy=$(timed copy_and_sync "$image/blobs" "$tmp/copy") || failed "cp + sync"
    echo "$copy" >>"$tmp/ceiling"
    echo "round $round/$rounds: cp + sync ${copy}s" >&2
done

median_of() { cut -d' ' -f"$2" "$tmp/$1" | median; }
awk -v mb="$(awk -v b="$bytes" 'BEGIN { print b / 1e6 }')" -v layers="$layers" -v rounds="$rounds" \
    -v ref_push="$(median_of docker-registry 1)" -v ref_pull="$(median_of docker-registry 2)" \
    -v nim_push="$(median_of nimbus 1)" -v nim_pull="$(median_of nimbus 2)" \
    -v copy="$(median <"$tmp/ceiling")" 'BEGIN {
    printf "\n%.0f MB image, %d layers; medians of %d rounds (skopeo copy, loopback)\n", mb, layers, rounds
    printf "%-26s %12s %12s\n", "target", "push MB/s", "pull MB/s"
    printf "%-26s %12.0f %12.0f\n", "docker-registry", mb / ref_push, mb / ref_pull
    printf "%-26s %12.0f %12.0f\n", "nimbus", mb / nim_push, mb / nim_pull
    printf "%-26s %11.2fx %11.2fx\n", "nimbus / docker-registry", ref_push / nim_push, ref_pull / nim_pull
    printf "%-26s %12.0f\n", "cp + sync (ceiling)", mb / copy
    printf "goal: push and pull at least 1.5x docker-registry with the same client\n"
}'
