#!/usr/bin/env bash
# Installs what villagetwin needs on a Debian machine (run as root), then the Python
# environment in .venv. Idempotent: when everything is there it checks and exits in seconds.
#
#   - Debian packages: Mosquitto and its clients, openssl (the broker's local TLS certificate),
#     Chromium (browser tests), CJK fonts (the dashboard's Chinese labels), PostgreSQL's server
#     headers and cmake (to build TimescaleDB).
#   - TimescaleDB for the local PostgreSQL: Debian's binary package where the release has one
#     (Debian 13: postgresql-17-timescaledb); otherwise Debian 13's own source package
#     (Apache-licensed edition) built against the local server, about 30 s.
#   - uv, and the project with its dev tools in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[install] %s\n' "$*" >&2; }
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

pg_major() {
  if command -v pg_lsclusters >/dev/null; then
    pg_lsclusters -h | awk 'NR==1 {print $1}'
  else
    ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1
  fi
}

apt_updated=0
apt_install() {
  if ((apt_updated == 0)); then
    say "apt-get update"
    as_root apt-get update -qq
    apt_updated=1
  fi
  say "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- Debian packages ------------------------------------------------------------------------
PGV=$(pg_major)
if [[ -z "$PGV" ]]; then
  say "no PostgreSQL found; installing Debian's"
  apt_install postgresql postgresql-contrib
  PGV=$(pg_major)
fi
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=()
for pkg in mosquitto mosquitto-clients openssl chromium fonts-noto-cjk; do
  installed "$pkg" || missing+=("$pkg")
done
((${#missing[@]})) && apt_install "${missing[@]}"

# --- TimescaleDB ----------------------------------------------------------------------------
TS_LIB="/usr/lib/postgresql/$PGV/lib/timescaledb.so"
if [[ ! -f "$TS_LIB" ]]; then
  if ((apt_updated == 0)); then as_root apt-get update -qq; apt_updated=1; fi
  if apt-cache show "postgresql-$PGV-timescaledb" >/dev/null 2>&1; then
    apt_install "postgresql-$PGV-timescaledb"
  else
    say "building TimescaleDB (Apache edition) from Debian 13's source package for PostgreSQL $PGV"
    apt_install "postgresql-server-dev-$PGV" cmake gcc make dpkg-dev xz-utils patch libssl-dev
    src_list=/etc/apt/sources.list.d/villagetwin-trixie-src.sources
    if [[ ! -f $src_list ]]; then
      cat <<'EOF' | as_root tee "$src_list" >/dev/null
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
      as_root apt-get update -qq
    fi
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && apt-get source --download-only timescaledb >/dev/null 2>&1)
    orig=$(ls "$work"/timescaledb_*.orig.tar.* | head -n 1)
    tar -xf "$orig" -C "$work"
    tar -xf "$(ls "$work"/timescaledb_*.debian.tar.* | head -n 1)" -C "$work"
    srcdir=$(find "$work" -maxdepth 1 -type d -name 'timescaledb-*' | head -n 1)
    if [[ -f "$work/debian/patches/series" ]]; then
      while read -r p; do
        [[ -z "$p" || "$p" == \#* ]] && continue
        patch -d "$srcdir" -p1 -s <"$work/debian/patches/$p"
      done <"$work/debian/patches/series"
    fi
    cmake -S "$srcdir" -B "$srcdir/build" -DCMAKE_BUILD_TYPE=Release \
      -DPG_CONFIG="/usr/lib/postgresql/$PGV/bin/pg_config" -DAPACHE_ONLY=ON \
      -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF \
      -DSEND_TELEMETRY_DEFAULT=OFF -DUSE_TELEMETRY=OFF >"$work/cmake.log" 2>&1 \
      || { cat "$work/cmake.log" >&2; exit 1; }
    make -C "$srcdir/build" -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -50 "$work/make.log" >&2; exit 1; }
    as_root make -C "$srcdir/build" install >/dev/null
    say "TimescaleDB installed: $TS_LIB"
  fi
fi

# --- PostGIS --------------------------------------------------------------------------------
# The village model's places are PostGIS geometries (migration 0050): Debian's package for the
# local PostgreSQL major version.
if [[ ! -f "/usr/share/postgresql/$PGV/extension/postgis.control" ]]; then
  apt_install "postgresql-$PGV-postgis-3"
fi

# --- Python ---------------------------------------------------------------------------------
PY=${PYTHON:-python3}
if ! command -v uv >/dev/null; then
  say "installing uv"
  "$PY" -m pip install -q uv
fi
if [[ ! -x .venv/bin/python ]]; then
  uv venv -q --python "$PY" .venv
fi
stamp=.venv/.villagetwin-installed
want=$(cat pyproject.toml uv.lock | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || "$(cat $stamp)" != "$want" ]]; then
  # Exactly the versions in uv.lock (--locked: fails if pyproject.toml changed without
  # `uv lock`); `make check-newest` tries the newest versions pyproject.toml allows.
  say "installing Python packages into .venv (uv.lock)"
  uv sync -q --locked --extra dev --python .venv/bin/python
  echo "$want" >"$stamp"
fi
say "system ready (PostgreSQL $PGV with TimescaleDB and PostGIS, Mosquitto, Chromium, .venv)"
