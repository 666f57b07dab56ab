#!/usr/bin/env bash
# Issue #2's measurements, SQLite then PostgreSQL (PostgreSQL's background writer shares the two
# cores, so the embedded default is measured first, on a quiet machine):
#   flows:  request → approve → grant over the HTTP API (flows/s, p50/p99 per flow), 3 runs
#   verify: `audit verify` of 1,000,000 events
#   expiry: 10,000 grants ending within one second; deadline → expiry-event lag, 3 runs
# The load generator runs in the same process as the server (one machine, two cores).
# Needs PostgreSQL like the tests (JITGATE_TEST_PG_URL or the local server).
# Prints one line per measurement; copy them into docs/benchmarks.md with the date and machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export JITGATE_TEST_PG_URL="${JITGATE_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
cargo build --release -q -p jitgate-bench
b=target/release/jitgate-bench
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r)"
# Issue #11: flows with audit witnesses (a JSONL file in another directory and the HTTP witness
# on a loopback port) beside none, alternated within one run so that drift hits both alike.
# ONLY=witness runs just this part.
witnesses() {
  for backend in sqlite postgres; do
    if [ "$backend" = postgres ]; then psql "$JITGATE_TEST_PG_URL" -qc checkpoint >/dev/null 2>&1 || true; fi
    for run in 1 2 3; do
      for w in none both; do
        $b flows --backend "$backend" --flows "${FLOWS:-5000}" --concurrency 8 --witness "$w"
      done
    done
  done
}
if [ "${ONLY:-}" = witness ]; then witnesses; exit 0; fi
# Issue #18: flows behind a year of history (100,000 ended grants of 1,000 people, 1,500 of
# the flows' requester, 1,000,000 audit events), 500 and 5,000 flows, beside none.
# ONLY=history runs just this part.
history() {
  for backend in sqlite postgres; do
    if [ "$backend" = postgres ]; then psql "$JITGATE_TEST_PG_URL" -qc checkpoint >/dev/null 2>&1 || true; fi
    for n in 500 5000; do
      $b flows --backend "$backend" --flows "$n" --concurrency 8
      $b flows --backend "$backend" --flows "$n" --concurrency 8 \
        --history-grants 100000 --history-alice 1500 --history-events 1000000
    done
  done
}
if [ "${ONLY:-}" = history ]; then history; exit 0; fi
for backend in sqlite postgres; do
  if [ "$backend" = postgres ]; then psql "$JITGATE_TEST_PG_URL" -qc checkpoint >/dev/null 2>&1 || true; fi
  for run in 1 2 3; do
    $b flows --backend "$backend" --flows "${FLOWS:-5000}" --concurrency 8
  done
  $b flows --backend "$backend" --flows "${FLOWS_C1:-1000}" --concurrency 1
  for run in 1 2 3; do
    $b expiry --backend "$backend" --grants "${GRANTS:-10000}" --window-ms 1000
  done
  $b verify --backend "$backend" --events "${EVENTS:-1000000}"
done
history
witnesses
