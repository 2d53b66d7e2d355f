#!/usr/bin/env bash
# What `make test` and `make demo` need besides Python packages, set up on a bare machine:
# Node.js 20+ (builds the JupyterLab panel during the install), Debian's chromium (browser
# tests) and the local PostgreSQL (started when installed and down). As root with apt-get,
# missing packages are installed; otherwise each missing piece is named in one line, and the
# tests that need it skip (they fail under CI=true). Never downloads a browser of its own.
set -uo pipefail
want="${1:-test}"   # test: node, chromium, postgres; node: node only

as_root() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
updated=""
apt_install() {
  [ -n "$updated" ] || { apt-get update -qq >/dev/null 2>&1; updated=1; }
  echo "prepare-machine: installing $* (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "$(node_major)" -lt 20 ]; then
  if as_root; then apt_install nodejs npm; fi
  if [ "$(node_major)" -lt 20 ]; then
    echo "prepare-machine: Node.js 20+ builds labextension/ (found: $(node --version 2>/dev/null || echo none)); install it and run make again" >&2
    exit 1
  fi
fi

[ "$want" = test ] || exit 0

if [ ! -x /usr/bin/chromium ]; then
  if as_root; then apt_install chromium; fi
  [ -x /usr/bin/chromium ] || echo "prepare-machine: no /usr/bin/chromium: browser tests will skip (apt-get install -y chromium)"
fi

if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    version="$(ls /etc/postgresql | sort -V | tail -1)"
    echo "prepare-machine: starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>&1 | tail -1
  fi
fi
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  echo "prepare-machine: no PostgreSQL on 127.0.0.1:5432: its tests will skip (set THODARE_TEST_PG to use another)"
fi
exit 0
