#!/usr/bin/env bash
# Issue #2's measurements, in one run, on SQLite and PostgreSQL side by side:
#   flows:  request → approve → grant over the HTTP API (flows/s, p50/p99 per flow)
#   verify: `audit verify` of 1,000,000 events
#   expiry: 10,000 grants ending within one second; deadline → expiry-event lag
# Needs PostgreSQL like the tests (JITGATE_TEST_PG_URL or the local server).
# Prints one line per measurement; copy them into docs/benchmarks.md with the date and machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export JITGATE_TEST_PG_URL="${JITGATE_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
cargo build --release -q -p jitgate-bench
b=target/release/jitgate-bench
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r)"
for run in 1 2 3; do
  for backend in sqlite postgres; do
    $b flows --backend "$backend" --flows "${FLOWS:-5000}" --concurrency 8
  done
done
for backend in sqlite postgres; do
  $b flows --backend "$backend" --flows "${FLOWS_C1:-1000}" --concurrency 1
done
for backend in sqlite postgres; do
  $b verify --backend "$backend" --events "${EVENTS:-1000000}"
done
for run in 1 2 3; do
  for backend in sqlite postgres; do
    $b expiry --backend "$backend" --grants "${GRANTS:-10000}" --window-ms 1000
  done
done
