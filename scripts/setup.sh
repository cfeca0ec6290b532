# Sourced by the other scripts: installs the Debian packages nimbus builds and tests
# with, when any is missing, and checks for a Rust toolchain.

ensure_packages() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    if ((${#missing[@]})); then
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        echo "installing ${missing[*]}" >&2
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

ensure_rust() {
    if ! command -v cargo >/dev/null; then
        echo "nimbus needs a Rust toolchain (1.95 or newer): see https://rustup.rs" >&2
        exit 1
    fi
}

# The web console's pages, built with Vite from the lockfile into console/dist, which
# the build embeds. Vite needs Node.js 20.19 or newer.
build_console() {
    command -v npm >/dev/null || ensure_packages nodejs npm
    (
        cd console
        npm ci --no-audit --no-fund --loglevel=error
        npm run --silent build
    )
}

# crun refuses to run on a cgroup v1/v2 hybrid host whose hugetlb controller sits on
# the v2 tree; giving it a v1 hierarchy of its own, as the others have, fixes that.
ensure_hugetlb_v1() {
    [ -d /sys/fs/cgroup/memory ] || return 0
    [ -e /sys/fs/cgroup/cgroup.controllers ] && return 0
    mountpoint -q /sys/fs/cgroup/hugetlb 2>/dev/null && return 0
    grep -qw hugetlb /proc/cgroups || return 0
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo mkdir -p /sys/fs/cgroup/hugetlb 2>/dev/null &&
        $sudo mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb 2>/dev/null ||
        echo "note: could not mount the hugetlb cgroup; crun will not work here" >&2
}

# gcc builds the bundled SQLite; libssl-dev lets tasks pull images over TLS. runc runs sandboxes (crun is the alternative the
# tests also run with); iproute2, util-linux's nsenter and iptables link them to the
# host and the outside network; the CNI plugins give tasks bridge and awsvpc networks.
ensure_packages build-essential pkg-config libssl-dev runc crun iproute2 util-linux iptables \
    containernetworking-plugins
ensure_hugetlb_v1
ensure_rust
