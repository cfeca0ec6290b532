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

# gcc builds the bundled SQLite.
ensure_packages build-essential pkg-config
ensure_rust
