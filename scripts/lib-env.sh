# shellcheck shell=bash
# Installs what the compat tests and the benchmark need, skipping whatever is
# already in place so that re-runs are fast. Sourced by scripts/test and
# scripts/bench; expects REPO_ROOT to be set.
#
#   - kcat from Debian (1.7.1, librdkafka 2.0.2)
#   - compat-tests/.venv: pinned Python clients (compat-tests/requirements.txt)
#   - compat-tests/kafkajs/node_modules: pinned kafkajs (package-lock.json)

COMPAT_DIR="$REPO_ROOT/compat-tests"
VENV_DIR="$COMPAT_DIR/.venv"
VENV_PYTHON="$VENV_DIR/bin/python"
KAFKAJS_DIR="$COMPAT_DIR/kafkajs"

section() {
    printf '\n==================== %s ====================\n' "$*"
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

APT_UPDATED=no
apt_install() {
    if [ "$APT_UPDATED" = no ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
        APT_UPDATED=yes
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# The hash of an input file, stored beside what it installed, tells whether
# the install is current.
file_hash() { sha256sum "$1" | cut -d' ' -f1; }

ensure_system_packages() {
    local missing=()
    command -v kcat >/dev/null 2>&1 || missing+=(kcat)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    # Debian's python3 needs python3-venv for `python3 -m venv` (ensurepip).
    if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        missing+=(python3-venv)
    fi
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    # `ip` builds the network namespaces the cluster tests isolate brokers with.
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing Debian packages: ${missing[*]}"
        apt_install "${missing[@]}"
    else
        echo "Debian packages present (kcat, python3, node, npm, iproute2)"
    fi
    kcat -V 2>/dev/null | sed -n 's/^Version /kcat /p'
}

ensure_python_venv() {
    local want have stamp="$VENV_DIR/.requirements.sha256"
    want="$(file_hash "$COMPAT_DIR/requirements.txt")"
    have="$(cat "$stamp" 2>/dev/null || true)"
    if [ -x "$VENV_PYTHON" ] && [ "$want" = "$have" ]; then
        echo "python venv up to date ($VENV_DIR)"
        return
    fi
    echo "creating python venv $VENV_DIR from compat-tests/requirements.txt"
    rm -rf "$VENV_DIR"
    python3 -m venv "$VENV_DIR"
    "$VENV_PYTHON" -m pip install --quiet --disable-pip-version-check --no-input -r "$COMPAT_DIR/requirements.txt"
    echo "$want" >"$stamp"
}

ensure_kafkajs() {
    local want have stamp="$KAFKAJS_DIR/node_modules/.package-lock.sha256"
    want="$(file_hash "$KAFKAJS_DIR/package-lock.json")"
    have="$(cat "$stamp" 2>/dev/null || true)"
    if [ "$want" = "$have" ]; then
        echo "kafkajs node_modules up to date"
        return
    fi
    echo "npm ci in compat-tests/kafkajs"
    (cd "$KAFKAJS_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
}

# librdkafka's own C benchmark client, examples/rdkafka_performance.c, for
# scripts/bench: it costs the machine far less CPU per record than any
# binding. The source comes from the rdkafka-sys crate on crates.io (it
# vendors the whole librdkafka tree, examples included), pinned by version
# and sha256; librdkafka is built statically without optional dependencies
# (no SSL/SASL/zlib/zstd/curl; lz4 and snappy are built in). Everything lives
# under target/bench-tools/, so only the first run pays for the download and
# the ~40 s build. Nothing of librdkafka is committed.
RDKAFKA_SYS_VERSION="4.10.0+2.12.1" # bundles librdkafka 2.12.1
RDKAFKA_SYS_SHA256="e234cf318915c1059d4921ef7f75616b5219b10b46e9f3a511a15eb4b56a3f77"
RDKAFKA_CONFIGURE_FLAGS=(--disable-ssl --disable-gssapi --disable-zstd --disable-curl
    --disable-lz4-ext --disable-zlib --disable-syslog)

# Prints the path of the rdkafka_performance binary on stdout (all progress
# goes to stderr); fails if it cannot be fetched or built.
ensure_rdkafka_performance() {
    local tools_dir="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/bench-tools"
    local name="rdkafka-sys-$RDKAFKA_SYS_VERSION"
    local dest="$tools_dir/$name"
    local binary="$dest/rdkafka_performance"
    local want="$RDKAFKA_SYS_SHA256 ${RDKAFKA_CONFIGURE_FLAGS[*]}"
    if [ -x "$binary" ] && [ "$(cat "$dest/.stamp" 2>/dev/null)" = "$want" ]; then
        echo "rdkafka_performance up to date ($binary)" >&2
        echo "$binary"
        return
    fi
    {
        local missing=()
        command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
        command -v make >/dev/null 2>&1 || missing+=(make)
        command -v curl >/dev/null 2>&1 || missing+=(curl ca-certificates)
        if [ ${#missing[@]} -gt 0 ]; then
            echo "installing Debian packages: ${missing[*]}"
            apt_install "${missing[@]}"
        fi
    } >&2 || return 1

    mkdir -p "$tools_dir" || return 1
    local work
    work="$(mktemp -d "$tools_dir/.build-XXXXXX")" || return 1
    # Every step checks its own status: set -e does not apply inside a
    # subshell whose status is tested with ||.
    (
        cd "$work" || exit 1
        # cargo's own download cache, if some project already fetched the crate
        local cached
        cached="$(ls "$HOME"/.cargo/registry/cache/*/"$name.crate" 2>/dev/null | head -n1)"
        if [ -n "$cached" ]; then
            echo "using $cached"
            cp "$cached" crate.tar.gz || exit 1
        else
            local url="https://static.crates.io/crates/rdkafka-sys/$name.crate"
            echo "downloading $url"
            curl -fsSL --retry 3 -o crate.tar.gz "$url" || exit 1
        fi
        echo "$RDKAFKA_SYS_SHA256  crate.tar.gz" | sha256sum -c --quiet - || exit 1
        tar xzf crate.tar.gz "$name/librdkafka" || exit 1
        cd "$name/librdkafka" || exit 1
        echo "building librdkafka (static) and examples/rdkafka_performance; log: $work/build.log"
        {
            ./configure "${RDKAFKA_CONFIGURE_FLAGS[@]}" &&
                make -j"$(nproc)" -C src librdkafka.a &&
                make -C examples rdkafka_performance
        } >"$work/build.log" 2>&1 || { tail -n 30 "$work/build.log"; exit 1; }
        ./examples/rdkafka_performance -X list >/dev/null || exit 1 # runs at all
    ) >&2 || { echo "rdkafka_performance build failed (kept $work)" >&2; return 1; }

    rm -rf "$dest"
    mkdir -p "$dest"
    mv "$work/$name/librdkafka/examples/rdkafka_performance" "$binary" || return 1
    cp "$work/$name/librdkafka/LICENSE" "$dest/LICENSE"
    echo "$want" >"$dest/.stamp"
    rm -rf "$work"
    echo "built $binary" >&2
    echo "$binary"
}
