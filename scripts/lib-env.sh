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
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing Debian packages: ${missing[*]}"
        apt_install "${missing[@]}"
    else
        echo "Debian packages present (kcat, python3, node, npm)"
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
