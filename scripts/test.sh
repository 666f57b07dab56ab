#!/usr/bin/env bash
# The test command: makes sure what the tests need is here (a Rust toolchain, PostgreSQL),
# then runs every test of the workspace. Works on a fresh Debian machine as root or with sudo.
#
#   scripts/test.sh            # all tests
#   scripts/test.sh -p jitgate # extra arguments go to `cargo test` (and skip the API fuzzing)
#
# PostgreSQL: JITGATE_TEST_PG_URL if set; else the local server on 127.0.0.1:5432 if it lets
# `postgres` in without a password; else a throwaway cluster (initdb, trust auth, a free port)
# that this script starts and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[test.sh] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
need_pkg() { # need_pkg COMMAND PACKAGE...
  command -v "$1" >/dev/null 2>&1 && return 0
  log "installing ${*:2} (for $1)"
  if [ "$apt_updated" = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${@:2}" >/dev/null
}

if ! command -v cargo >/dev/null 2>&1; then
  log "cargo is missing: install Rust with rustup (https://rustup.rs), then run this again"
  exit 1
fi
scripts/deps.sh

pg_ok() { psql "$1" -qtAc 'select 1' >/dev/null 2>&1; }

cleanup=()
on_exit() { for c in "${cleanup[@]}"; do eval "$c" || true; done; }
trap on_exit EXIT

if [ -z "${JITGATE_TEST_PG_URL:-}" ]; then
  default_url="postgres://postgres@127.0.0.1:5432/postgres"
  if ! pg_ok "$default_url" && command -v pg_ctlcluster >/dev/null 2>&1; then
    # A cluster that is installed but stopped (as after a reboot): start it.
    for v in $(ls /etc/postgresql 2>/dev/null); do as_root pg_ctlcluster --skip-systemctl-redirect "$v" main start >/dev/null 2>&1 || true; done
    sleep 1
  fi
  if pg_ok "$default_url"; then
    export JITGATE_TEST_PG_URL="$default_url"
  else
    # A throwaway cluster of our own: independent of how the machine's server is configured.
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
      need_pkg /usr/lib/postgresql/15/bin/initdb postgresql
    fi
    bin=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n1)")
    dir=$(mktemp -d /tmp/jitgate-pg.XXXXXX)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 55432)
    run_pg() { if [ "$(id -u)" = 0 ]; then chown -R postgres "$dir"; su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
    log "starting a throwaway PostgreSQL in $dir on port $port"
    run_pg "'$bin/initdb' -D '$dir/data' -U postgres --auth=trust -E UTF8 >'$dir/initdb.log'"
    run_pg "'$bin/pg_ctl' -D '$dir/data' -l '$dir/server.log' -o \"-p $port -k '$dir' -c listen_addresses=127.0.0.1\" -w start >/dev/null"
    cleanup+=("run_pg \"'$bin/pg_ctl' -D '$dir/data' -m immediate stop\" >/dev/null 2>&1; rm -rf '$dir'")
    export JITGATE_TEST_PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
  fi
fi
log "PostgreSQL for tests: $JITGATE_TEST_PG_URL"

# Each test makes its own database; drop what earlier runs left behind on this server.
psql "$JITGATE_TEST_PG_URL" -qtAc "select datname from pg_database where datname like 'jitgate_test_%'" 2>/dev/null |
  while read -r db; do [ -n "$db" ] && psql "$JITGATE_TEST_PG_URL" -qc "drop database if exists \"$db\"" >/dev/null 2>&1 || true; done

out=$(mktemp)
cleanup+=("rm -f '$out'")
status=0
if [ $# -gt 0 ]; then
  cargo test --locked "$@" 2>&1 | tee "$out" || status=$?
else
  cargo test --workspace --locked 2>&1 | tee "$out" || status=$?
fi
# One closing line for the whole run (cargo prints one per test binary, the last often a
# doc-test binary with nothing in it).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$out"
# The whole suite also runs the API against its own document (schemathesis, about a minute).
if [ $# -eq 0 ]; then
  fuzz=0
  scripts/api-fuzz.sh target/debug/jitgate || fuzz=$?
  if [ "$fuzz" = 0 ]; then log "api-fuzz: no failures"; else log "api-fuzz: FAILED (exit $fuzz)"; status=1; fi
fi
exit "$status"
