#!/usr/bin/env bash
# Every benchmark in a short profile (about ten minutes on two cores), each figure printed
# beside the last one recorded in docs/benchmarks.md (the `baseline` block under "Baseline for
# bench/all.sh"), with a drop of more than 20 % marked. Run it before resolving an issue that
# touches a hot path (a request, a decision, the relay, the audit writer), and say so.
#
#   bench/all.sh                 # run, compare, exit 1 if any figure dropped by more than 20 %
#   ONLY="flows expiry" bench/all.sh   # some of: flows history expiry warnings verify mfa pages pgbench startup idle flood
#   RECORD=1 bench/all.sh        # also print a new baseline block (paste it into docs/benchmarks.md)
#
# The short profile is for catching regressions, not for the figures of record: the sections
# of docs/benchmarks.md give those, with their longer runs. The machine's noise (±15 % run to
# run on shared cores) is why the mark is at 20 %.
set -euo pipefail
cd "$(dirname "$0")/.."
export JITGATE_TEST_PG_URL="${JITGATE_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
only=" ${ONLY:-flows history expiry warnings verify mfa pages pgbench startup idle flood} "
want() { [[ "$only" == *" $1 "* ]]; }

echo "# bench/all.sh: building (release)" >&2
# Built one package at a time, as the scripts it calls build them (building both at once
# unifies features differently and makes each script rebuild).
cargo build --release -q -p jitgate
cargo build --release -q -p jitgate-bench
b=target/release/jitgate-bench
results=$(mktemp)
trap 'rm -f "$results"' EXIT
# metric NAME VALUE (higher|lower): lower means lower is better.
metric() { printf '%s %s %s\n' "$1" "$2" "$3" >>"$results"; printf '  %-44s %s\n' "$1" "$2" >&2; }
# field LINE KEY: the value of KEY=... in a key=value line.
field() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k { print $2; exit }'; }
# run PREFIX COMMAND...: the last line of COMMAND's output that starts with PREFIX; a command
# that fails is reported and gives no figure (the comparison then says so).
run() {
  local prefix=$1; shift
  echo "# $*" >&2
  local out
  out=$("$@" 2>/tmp/bench-all-last.err) || { echo "  FAILED: $* (see /tmp/bench-all-last.err)" >&2; return 0; }
  grep "^$prefix " <<<"$out" | tail -n 1
}

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r)" >&2

if want flows; then
  for backend in sqlite postgres; do
    line=$(run flows $b flows --backend $backend --flows 2000 --concurrency 8)
    metric "flows.$backend.c8.flows_per_s" "$(field "$line" flows_per_s)" higher
    metric "flows.$backend.c8.p99_ms" "$(field "$line" p99_ms)" lower
  done
fi
if want history; then
  # Issue #18: behind 100,000 ended grants of 1,000 people, 1,500 of alice's own (the flows'
  # requester) and 200,000 audit events.
  for backend in sqlite postgres; do
    line=$(run flows $b flows --backend $backend --flows 2000 --concurrency 8 \
      --history-grants 100000 --history-alice 1500 --history-events 200000)
    metric "flows_history.$backend.c8.flows_per_s" "$(field "$line" flows_per_s)" higher
    metric "flows_history.$backend.c8.p99_ms" "$(field "$line" p99_ms)" lower
  done
fi
if want expiry; then
  for backend in sqlite postgres; do
    line=$(run expiry $b expiry --backend $backend --grants 10000 --window-ms 1000)
    metric "expiry.$backend.p99_ms" "$(field "$line" p99_ms)" lower
  done
fi
if want warnings; then
  # Issue #15: 1,000 ending-soon warnings due within one second, to a signed webhook on loopback.
  for backend in sqlite postgres; do
    line=$(run warnings $b warnings --backend $backend --grants 1000 --window-ms 1000 --lead-s 10)
    metric "warnings.$backend.p99_ms" "$(field "$line" p99_ms)" lower
  done
fi
if want verify; then
  line=$(run verify $b verify --backend sqlite --events 200000)
  metric "verify.sqlite.events_per_s" "$(field "$line" events_per_s)" higher
fi
if want mfa; then
  line=$(run mfa $b mfa --backend sqlite --logins 50)
  metric "mfa.sqlite.login_password_totp_p50_ms" "$(field "$line" login_password_totp_p50_ms)" lower
fi
if want pgbench; then
  echo "# bench/pgbench.sh (one round, 6 s per run)" >&2
  out=$(ROUNDS=1 SECONDS_PER_RUN=6 CLIENTS=8 CONNECT_RUN=0 bench/pgbench.sh 2>/dev/null)
  # The median-TPS table: ARGS d j n t b r  j/d j/b j/r j/n t/r (ARGS has spaces).
  for proto in simple prepared; do
    row=$(awk '/^# median TPS/ { t = 1; next } /^#/ { t = 0 } t' <<<"$out" | grep -- "-M $proto -c 8" | head -n 1)
    read -r -a f <<<"$row"
    n=${#f[@]}
    [ "$n" -ge 11 ] || { echo "no pgbench row for $proto" >&2; continue; }
    metric "pgbench.$proto.c8.jitgate_tps" "${f[n-10]}" higher
    metric "pgbench.$proto.c8.jitgate_per_pgbouncer" "${f[n-4]}" higher
    metric "pgbench.$proto.c8.jitgate_per_relay" "${f[n-3]}" higher
  done
fi
if want pages; then
  # Issue #14: the web pages' server time with 10,000 past requests.
  for backend in sqlite postgres; do
    line=$(run pages $b pages --backend $backend --samples 200)
    metric "pages.$backend.inbox_p99_ms" "$(field "$line" inbox_p99_ms)" lower
    metric "pages.$backend.grants_p99_ms" "$(field "$line" grants_p99_ms)" lower
  done
fi
if want startup; then
  echo "# bench/startup.sh" >&2
  out=$(bench/startup.sh 2>/dev/null)
  metric "startup.fresh_ms" "$(awk '/startup fresh/ { print $3 }' <<<"$out")" lower
fi
if want idle; then
  line=$(run idle $b idle --connections 2000)
  metric "idle.per_connection_kib" "$(field "$line" overall)" lower
fi
if want flood; then
  line=$(run login-flood $b login-flood --seconds 5)
  metric "flood.server_rss_hwm_mib" "$(field "$line" hwm)" lower
fi

# Beside the baseline recorded in docs/benchmarks.md.
python3 - "$results" docs/benchmarks.md "${RECORD:-0}" <<'PY'
import re, sys, datetime
results, doc, record = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
text = open(doc).read()
m = re.search(r"```baseline\n(.*?)```", text, re.S)
base = {}
if m:
    for line in m.group(1).splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.startswith("#"):
            base[parts[0]] = (float(parts[1]), parts[3] if len(parts) > 3 else "?")
drops = 0
print(f"{'figure':44} {'now':>10} {'recorded':>10} {'change':>8}")
rows = []
for line in open(results):
    parts = line.split()
    name, better = parts[0], parts[-1]
    try:
        v = float(parts[1]) if len(parts) == 3 else None
        if v is None:
            raise ValueError
    except ValueError:
        print(f"{name:44} {'(none)':>10}  the run gave no figure")
        drops += 1
        continue
    rows.append((name, v, better))
    if name not in base:
        print(f"{name:44} {v:>10.2f} {'-':>10}")
        continue
    b, date = base[name]
    change = (v - b) / b if b else 0.0
    worse = change < -0.2 if better == "higher" else (b > 0 and v / b > 1.25)
    drops += worse
    mark = "  DROP (more than 20 % worse)" if worse else ""
    print(f"{name:44} {v:>10.2f} {b:>10.2f} {change:>+7.0%}  ({date}){mark}")
if record:
    today = datetime.date.today().isoformat()
    print("\n```baseline")
    for name, v, better in rows:
        print(f"{name} {v:g} {better} {today}")
    print("```")
sys.exit(1 if drops else 0)
PY
