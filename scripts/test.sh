#!/usr/bin/env bash
# The whole test suite with its own set-up: system packages, the build, lints, unit
# and integration tests, then the end-to-end suite with real AWS clients in a venv.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# The registry clients the end-to-end suite drives nimbus with, and the aws CLI v2
# (Debian's awscli; the venv's is v1, which has no `aws logs tail`), and a static
# busybox the container tests build images from; docker-registry as a registry that
# is not nimbus's; PostgreSQL, the external metadata store the tests also run on.
ensure_packages curl python3-venv skopeo podman umoci awscli busybox-static docker-registry postgresql \
    iproute2 util-linux openssl
# The node runtime's tests need an interpreter; any installed one will do. The
# console's browser tests drive Debian's Chromium with Playwright.
command -v node >/dev/null || ensure_packages nodejs
ensure_packages chromium
build_console

target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
# One build per run gains nothing from incremental state, and it grew a kept build
# cache by tens of gigabytes until the disk filled.
export CARGO_INCREMENTAL=0
venv="${NIMBUS_VENV:-$PWD/.venv}"

# youki, the third OCI runtime the sandbox suite runs with: Debian has none, so it is
# built from crates.io once, with the cgroup v1 and seccomp support it leaves out by
# default.
ensure_packages libseccomp-dev
youki_root="$target_dir/youki-root"
if [ ! -x "$youki_root/bin/youki" ]; then
    echo "building youki (once)" >&2
    CARGO_TARGET_DIR="$target_dir/youki" cargo install youki --quiet --locked --version 0.7.0 \
        --features v1,seccomp --root "$youki_root"
fi

# Garage, the S3-compatible store the tests run the external blob store on: built
# from crates.io once, with just its LMDB metadata engine and bundled C libraries.
garage_root="$target_dir/garage-root"
if [ ! -x "$garage_root/bin/garage" ]; then
    echo "building garage (once)" >&2
    CARGO_TARGET_DIR="$target_dir/garage" cargo install garage --quiet --locked --version 2.5.0 \
        --no-default-features --features bundled-libs,lmdb --root "$garage_root"
fi
export GARAGE_BIN="$garage_root/bin/garage"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# A throwaway PostgreSQL and Garage for the tests on external backends: they find
# them by NIMBUS_TEST_POSTGRES, NIMBUS_TEST_S3 and its keys.
backends_dir="$(mktemp -d "${TMPDIR:-/tmp}/nimbus-backends.XXXXXX")"
trap 'python3 tests/e2e/backends.py stop "$backends_dir"' EXIT
backends_env="$(python3 tests/e2e/backends.py start "$backends_dir")"
eval "$backends_env"

cargo test --workspace --locked

[ -x "$venv/bin/pytest" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r tests/e2e/requirements.txt
e2e() {
    PATH="$venv/bin:$youki_root/bin:$PATH" NIMBUS_BIN="$target_dir/debug/nimbus" "$venv/bin/pytest" tests/e2e -q "$@"
}
# The suite on the embedded backends, then again with every server on PostgreSQL and
# Garage, less what does not touch storage (sandboxes, isolation, the browser-driven
# console: the same code on either backend), the tests that look at the embedded
# backends' files (marked embedded_only) and the cluster suite (three nodes in network
# namespaces of its own, on PostgreSQL and Garage in either run).
e2e
NIMBUS_E2E_BACKENDS=external e2e --ignore=tests/e2e/test_console_browser.py \
    --ignore=tests/e2e/test_sandbox.py --ignore=tests/e2e/test_confinement.py \
    --ignore=tests/e2e/test_isolation_modes.py --ignore=tests/e2e/test_cluster.py
