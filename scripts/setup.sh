#!/usr/bin/env bash
# fractality: install everything the project needs on a Debian bookworm machine, as root.
#
#   PostgreSQL 15 and its dev files, clang (bindgen), sudo, pgvector 0.8.0 built from Debian's
#   source package, cargo-pgrx 0.18.0, and `cargo pgrx init` against the system PostgreSQL; for
#   the client examples, a Python virtual environment with the pinned packages of
#   clients/python/requirements.txt and the Node.js packages of clients/node/package-lock.json.
#
# Idempotent: every step checks first, so a second run takes seconds.
set -euo pipefail

PG_MAJOR=15
PG_CONFIG=/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config
PGRX_VERSION=0.18.0
PGVECTOR_VERSION=0.8.0
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

umask 022   # what gets installed must be readable by the postgres OS user
log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }
export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh installs system packages: run it as root" >&2
    exit 1
fi

# 1. Debian packages --------------------------------------------------------------------------
packages=(postgresql-${PG_MAJOR} postgresql-server-dev-${PG_MAJOR} postgresql-contrib
          libclang-dev clang sudo build-essential pkg-config dpkg-dev ca-certificates
          postgresql-${PG_MAJOR}-cron)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    apt-get update -qq
    # Debian's postgresql-common would create and start a 'main' cluster on 5432; we run our own.
    mkdir -p /etc/postgresql-common
    if [ ! -f /etc/postgresql-common/createcluster.conf ]; then
        echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    log "Debian packages present"
fi

# 2. pgvector from Debian's source package ----------------------------------------------------
pg_sharedir="$($PG_CONFIG --sharedir)"
vector_installed=$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$pg_sharedir/extension/vector.control" 2>/dev/null || true)
if [ -z "$vector_installed" ] || dpkg --compare-versions "$vector_installed" lt "$PGVECTOR_VERSION"; then
    log "building pgvector ${PGVECTOR_VERSION} from Debian's source package"
    src_list=/etc/apt/sources.list.d/fractality-trixie-src.sources
    build=$(mktemp -d)
    # the source entry and the build directory go however this ends (an interrupted run left the
    # entry behind, and the next one skipped the update it needs)
    trap 'rm -f "$src_list"; rm -rf "$build"' EXIT
    {
        # the Debian archive this machine's apt already uses (its sources, never a fixed host)
        debian_uri() {
            apt-get indextargets --format '$(REPO_URI)' 'Created-By: Packages' 'Label: Debian' \
                | { grep -v -- '-security' || true; } | head -n 1
        }
        mirror=$(debian_uri)
        if [ -z "$mirror" ]; then apt-get update -qq; mirror=$(debian_uri); fi
        if [ -z "$mirror" ]; then echo "setup.sh: no Debian archive among apt's sources (pgvector's source package comes from it)" >&2; exit 1; fi
        cat > "$src_list" <<EOF
Types: deb-src
URIs: ${mirror}
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        apt-get update -qq
    }
    chown _apt "$build" 2>/dev/null || true   # apt-get source downloads as _apt where it may
    # the source version of PGVECTOR_VERSION (apt-get source takes an exact version, no pattern);
    # the newest there is if the archive no longer has it
    version=$({ apt-cache showsrc pgvector 2>/dev/null || true; } | sed -n 's/^Version: //p' \
                  | { grep -F "${PGVECTOR_VERSION}-" || true; } | sort -V | tail -n 1)
    (
        cd "$build"
        apt-get source -qq --download-only "pgvector${version:+=$version}" >/dev/null
        tarball=$(ls pgvector_*.orig.tar.* | head -n 1)
        mkdir src && tar -xf "$tarball" -C src --strip-components=1
        cd src
        make -s PG_CONFIG="$PG_CONFIG" OPTFLAGS="" -j"$(nproc)" >/dev/null
        make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
    )
    # the source entry was for this build only: later apt-get updates need not fetch its index
    rm -f "$src_list"
    rm -rf "$build"
    trap - EXIT
else
    log "pgvector ${vector_installed} present"
fi

# 3. cargo-pgrx --------------------------------------------------------------------------------
export PATH="$HOME/.cargo/bin:$PATH"
# the Rust toolchain is the machine's (rustup's stable): checked here, not installed
no_rust=()
for t in rustc cargo "cargo fmt" "cargo clippy"; do
    $t --version >/dev/null 2>&1 || no_rust+=("$t")
done
if [ ${#no_rust[@]} -gt 0 ]; then
    echo "setup.sh: a Rust toolchain (stable, with rustfmt and clippy) is needed; not found: ${no_rust[*]}" >&2
    exit 1
fi
if ! cargo pgrx --version 2>/dev/null | grep -q " ${PGRX_VERSION}\$"; then
    log "installing cargo-pgrx ${PGRX_VERSION} (a few minutes)"
    cargo install cargo-pgrx --version "${PGRX_VERSION}" --locked --quiet
else
    log "cargo-pgrx ${PGRX_VERSION} present"
fi

# 4. cargo pgrx init against the system PostgreSQL ---------------------------------------------
if ! grep -qs "pg${PG_MAJOR} *= *\"${PG_CONFIG}\"" "$HOME/.pgrx/config.toml"; then
    log "cargo pgrx init --pg${PG_MAJOR} ${PG_CONFIG}"
    cargo pgrx init --pg${PG_MAJOR} "$PG_CONFIG" >/dev/null
else
    log "pgrx initialised for pg${PG_MAJOR}"
fi

# 5. the Python client: a virtual environment with the pinned packages -------------------------
# (re)installed when requirements.txt changed: its hash is kept in the venv
py_dir="$here/clients/python"
req_hash=$(sha256sum "$py_dir/requirements.txt" | cut -d' ' -f1)
# none, its python gone, or made half (interrupted before pip was in it)
"$py_dir/.venv/bin/python" -m pip --version >/dev/null 2>&1 || rm -rf "$py_dir/.venv"
if [ "$(cat "$py_dir/.venv/requirements.sha256" 2>/dev/null)" != "$req_hash" ]; then
    log "Python client: virtual environment clients/python/.venv, packages of requirements.txt"
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then   # Debian's python3 needs python3-venv
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
    fi
    [ -x "$py_dir/.venv/bin/python" ] || python3 -m venv "$py_dir/.venv"
    "$py_dir/.venv/bin/python" -m pip install -q --disable-pip-version-check -r "$py_dir/requirements.txt"
    echo "$req_hash" > "$py_dir/.venv/requirements.sha256"
else
    log "Python client packages present"
fi

# 6. the Node.js client: npm ci from package-lock.json ------------------------------------------
# (again when the lock is newer than what npm ci last installed: node_modules/.package-lock.json)
node_dir="$here/clients/node"
if ! command -v npm >/dev/null; then
    log "installing Node.js and npm from Debian"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
if [ ! -f "$node_dir/node_modules/.package-lock.json" ] \
   || [ "$node_dir/package-lock.json" -nt "$node_dir/node_modules/.package-lock.json" ]; then
    log "Node.js client: npm ci in clients/node"
    (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
else
    log "Node.js client packages present"
fi

# 7. the postgres OS user runs the test and demo servers: it must reach the work tree ---------
# (initdb refuses root). Make the path to the checkout traversable.
d="$here"
while [ "$d" != "/" ]; do
    chmod o+x "$d" 2>/dev/null || true
    d=$(dirname "$d")
done
log "setup done"
