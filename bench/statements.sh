#!/usr/bin/env bash
# Statements PostgreSQL runs for the request-to-grant flows, counted by their text: the round
# trips a flow makes, which the machine's load does not change (unlike flows/s). Turns on
# `log_statement = all` on the server for the run and off after (needs a superuser and the
# server's log file: LOG, by default the newest in /var/log/postgresql, as on Debian).
#   FLOWS=1000 CONCURRENCY=8 bench/statements.sh
# Prints each statement run at least MIN times (default 100), with its count, then the total.
set -euo pipefail
cd "$(dirname "$0")/.."
url="${JITGATE_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
b="${JITGATE_BENCH:-target/release/jitgate-bench}"
log="${LOG:-$(ls -t /var/log/postgresql/*.log | head -1)}"
[ -x "$b" ] || cargo build --release -p jitgate-bench
restore() { psql "$url" -qc "ALTER SYSTEM RESET log_statement" -c "SELECT pg_reload_conf()" >/dev/null; }
trap restore EXIT
psql "$url" -qc "ALTER SYSTEM SET log_statement = 'all'" -c "SELECT pg_reload_conf()" >/dev/null
from=$(($(wc -l < "$log") + 1))
"$b" flows --backend postgres --flows "${FLOWS:-1000}" --concurrency "${CONCURRENCY:-8}" | grep -o 'flows=[0-9]*.*flows_per_s=[0-9]*'
restore
trap - EXIT
tail -n +"$from" "$log" | grep 'LOG:  \(statement\|execute\)' \
  | sed -E 's/.*LOG:  (statement|execute [^:]*): //' | cut -c1-70 | sort | uniq -c | sort -rn \
  | awk -v min="${MIN:-100}" '$1 >= min { print; total += $1 } END { print total, "in all" }'
