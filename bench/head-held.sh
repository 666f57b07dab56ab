#!/usr/bin/env bash
# What bounds the PostgreSQL flows: the CPU each side uses per flow, how idle the machine stays,
# and how often a write transaction (the audit head's holder) is open. Runs one
# `jitgate-bench flows --backend postgres` while it samples pg_stat_activity every 10 ms.
#   FLOWS=4000 CONCURRENCY=8 bench/head-held.sh
# CPU: /proc/stat over the run and the bench process's own time (jitgate and its load generator);
# the rest of the busy time is mostly PostgreSQL. A tiny run is subtracted first so that the
# per-flow figures leave out creating and migrating the fresh database.
set -euo pipefail
cd "$(dirname "$0")/.."
url="${JITGATE_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export JITGATE_TEST_PG_URL="$url"
b="${JITGATE_BENCH:-target/release/jitgate-bench}"
[ -x "$b" ] || cargo build --release -p jitgate-bench
flows="${FLOWS:-4000}"
setup_flows=20
hz=$(getconf CLK_TCK)
[ -x /usr/bin/time ] || { echo "head-held.sh needs /usr/bin/time (apt-get install time)" >&2; exit 1; }

# Prints "busy idle bench_cpu" in seconds for one run of the bench with the given flow count.
measure() {
  local u n s i w irq sirq rest busy0 idle0 out
  read -r _ u n s i w irq sirq rest < /proc/stat
  busy0=$((u + n + s + irq + sirq)); idle0=$((i + w))
  out=$( { /usr/bin/time -f "bench_cpu %U %S" "$b" flows --backend postgres --flows "$1" \
      --concurrency "${CONCURRENCY:-8}" >"$2"; } 2>&1 | grep bench_cpu)
  read -r _ u n s i w irq sirq rest < /proc/stat
  awk -v b=$((u + n + s + irq + sirq - busy0)) -v i=$((i + w - idle0)) -v hz="$hz" \
    -v c="$out" 'BEGIN { split(c, f, " "); printf "%.3f %.3f %.3f\n", b/hz, i/hz, f[2]+f[3] }'
}

samples=$(mktemp); small=$(mktemp); big=$(mktemp)
trap 'rm -f "$samples" "$small" "$big"' EXIT
read -r busy_s idle_s bench_s <<<"$(measure "$setup_flows" "$small")"
# Sample while the big run goes: open write transactions, and backends waiting for jitgate.
(
  sleep 2
  for _ in $(seq 1 300); do
    echo "SELECT count(*) FILTER (WHERE state LIKE 'idle in%' OR (state = 'active' AND backend_xid IS NOT NULL)),
                 count(*) FILTER (WHERE state LIKE 'idle in%'), count(*) FILTER (WHERE state = 'active')
          FROM pg_stat_activity WHERE datname LIKE 'jitgate_test_%' AND pid <> pg_backend_pid();
          SELECT pg_sleep(0.01);"
  done | psql "$url" -At 2>/dev/null | grep '|' >"$samples" || true
) &
sampler=$!
read -r busy idle bench <<<"$(measure "$flows" "$big")"
wait "$sampler"
grep -o 'flows=[0-9]*.*p99_ms=[0-9.]*' "$big"
awk -v b="$busy" -v i="$idle" -v c="$bench" -v b0="$busy_s" -v i0="$idle_s" -v c0="$bench_s" \
  -v n=$((flows - setup_flows)) 'BEGIN {
    printf "cpu per flow: jitgate+load %.2f ms, the rest (PostgreSQL) %.2f ms; machine idle %.0f %%\n",
      (c - c0) / n * 1000, ((b - b0) - (c - c0)) / n * 1000, (i - i0) / ((b - b0) + (i - i0)) * 100 }'
awk -F'|' '{ n++; if ($1 > 0) open++; waiting += $2; active += $3 }
  END { if (n == 0) { print "no samples (the run ended before sampling began?)"; exit }
        printf "%d samples: a write transaction open in %.0f %%; mean idle in transaction %.2f, active %.2f\n",
          n, open / n * 100, waiting / n, active / n }' "$samples"
