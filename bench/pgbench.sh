#!/usr/bin/env bash
# The gateway's measurements, in one run on this machine: pgbench -S (select-only),
# simple and prepared protocol, -c 1 / 8 / 64 with -j 2, against
#   direct     the local PostgreSQL,
#   jitgate    the gateway as users run it: statement recording on (the default), release
#              build, the client without TLS (loopback),
#   norec      the gateway with statement recording off,
#   tls        the gateway, recording on, the client over TLS (sslmode=require),
#   pgbouncer  PgBouncer in session mode (installed from Debian by this script),
#   relay      `jitgate-bench bare-relay`: bytes copied both ways and nothing else, the floor
#              any proxy's extra hop stands on,
# then -C (a new connection per transaction, -c 8) for connection setup. Prints one line per
# run and the TPS ratios (medians when ROUNDS > 1: the six are run back to back ROUNDS times,
# because two shared cores make single runs vary by ±15 %). Needs the local PostgreSQL (JITGATE_TEST_PG_URL as for the tests).
#   SECONDS_PER_RUN=15 SCALE=10 bench/pgbench.sh
# UPSTREAM_HOST=/var/run/postgresql has jitgate and PgBouncer reach PostgreSQL over its Unix
# socket (pgbench's direct runs stay on TCP, like the clients of both).
# A shorter run of some cases: CLIENTS="8" PROTOCOLS="prepared" CONNECT_RUN=0 bench/pgbench.sh
# PERF_RECORD=jitgate (or another name) keeps a perf call-graph profile of that run in perf-NAME.data (repository root).
# JITGATE_BIN=PATH runs another build of jitgate (to compare two side by side).
# GATEWAY_THREADS=N sets gateway.threads (default: one per four cores).
# PERF_STAT=1 adds each proxy's context switches and system calls per transaction (perf stat).
# WAYS="jitgate norec" runs only those of the six (the ratios need all six).
set -euo pipefail
cd "$(dirname "$0")/.."
T=${SECONDS_PER_RUN:-15}
SCALE=${SCALE:-10}
PGURL=${JITGATE_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
PGHOSTPORT=${PGURL#*@}; PGHOSTPORT=${PGHOSTPORT%%/*}
PGH=${PGHOSTPORT%%:*}; PGP=${PGHOSTPORT##*:}; [ "$PGP" = "$PGH" ] && PGP=5432
DB=jitgate_bench
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
command -v pgbouncer >/dev/null || { as_root apt-get update -qq; as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null; }
command -v pgbench >/dev/null || { echo "pgbench missing (postgresql-client)"; exit 1; }
cargo build --release -q -p jitgate -p jitgate-bench
J=${JITGATE_BIN:-$PWD/target/release/jitgate}
work=$(mktemp -d /tmp/jitgate-pgbench.XXXXXX)
cleanup() { for p in ${jpid:-} ${bpid:-} ${rpid:-}; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

echo "# upstream of jitgate and PgBouncer: ${UPSTREAM_HOST:-$PGH}:$PGP"
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), $(psql "$PGURL" -tAc 'show server_version'), $(pgbouncer --version | head -1)"
psql "$PGURL" -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
pgbench -h "$PGH" -p "$PGP" -U postgres -i -q -s "$SCALE" "$DB" >"$work/init.log" 2>&1 || { echo "pgbench -i failed:"; tail -3 "$work/init.log"; exit 1; }
# The gateway's sessions log in as a login that can read, nothing more (as users configure it).
psql "$PGURL" -qc "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'jitgate_bench_read') THEN CREATE ROLE jitgate_bench_read LOGIN IN ROLE pg_read_all_data; END IF; END \$\$" >/dev/null

# jitgate with a resource in front of the bench database.
cat > "$work/jitgate.toml" <<TOML
[server]
http = "127.0.0.1:18544"
data_dir = "$work/data"
[gateway]
listen = "127.0.0.1:16544"
# pgbench -C opens a connection per transaction from one address, far past the default rate
# per address (600/min, a bound on anonymous traffic, not on a pool); the rest is default.
connections_per_minute = 0
${GATEWAY_THREADS:+threads = $GATEWAY_THREADS}
[groups]
engineers = ["alice"]
db-owners = ["bob"]
[[resources]]
name = "bench"
[resources.postgres]
host = "${UPSTREAM_HOST:-$PGH}"
port = $PGP
database = "$DB"
user = "postgres"
[resources.roles.read]
login = "jitgate_bench_read"
requesters = ["engineers"]
max_duration = "1h"
stages = [{ groups = ["db-owners"] }]
mfa = []
[[resources]]
name = "bench-norec"
[resources.postgres]
host = "${UPSTREAM_HOST:-$PGH}"
port = $PGP
database = "$DB"
user = "postgres"
record_statements = false
[resources.roles.read]
login = "jitgate_bench_read"
requesters = ["engineers"]
max_duration = "1h"
stages = [{ groups = ["db-owners"] }]
mfa = []
TOML
"$J" serve --config "$work/jitgate.toml" 2>"$work/serve.log" & jpid=$!
for _ in $(seq 50); do grep -q "setup token" "$work/serve.log" 2>/dev/null && sleep 0.2 && break; sleep 0.1; done
token=$(grep -A1 "one-time setup token" "$work/serve.log" | tail -1 | tr -d ' ')
export JITGATE_SERVER=http://127.0.0.1:18544
pw="bench password 123"
JITGATE_CONFIG_DIR=$work/admin JITGATE_SETUP_TOKEN=$token "$J" admin bootstrap --password-stdin <<<"$pw" >/dev/null
for u in alice bob; do JITGATE_CONFIG_DIR=$work/admin "$J" admin user create $u --password-stdin <<<"$pw" >/dev/null; done
for u in alice bob; do JITGATE_CONFIG_DIR=$work/$u "$J" login $u --password-stdin <<<"$pw" >/dev/null; done
for res in bench bench-norec; do
  req=$(JITGATE_CONFIG_DIR=$work/alice "$J" --json request $res --role read --for 1h --reason "pgbench run" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  JITGATE_CONFIG_DIR=$work/bob "$J" approve "$req" >/dev/null
done
password() { JITGATE_CONFIG_DIR=$work/alice "$J" --json connect "$1" --print-dsn --uses 10000 | python3 -c 'import json,sys; print(json.load(sys.stdin)["password"])'; }

# PgBouncer, session mode.
cat > "$work/pgbouncer.ini" <<INI
[databases]
$DB = host=${UPSTREAM_HOST:-$PGH} port=$PGP dbname=$DB user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = 16545
auth_type = any
pool_mode = session
max_client_conn = 1000
default_pool_size = 100
; Give server connections back quickly: the next run (direct, jitgate) needs PostgreSQL's
; max_connections free.
server_idle_timeout = 1
unix_socket_dir =
logfile = $work/pgbouncer.log
pidfile = $work/pgbouncer.pid
INI
if [ "$(id -u)" = 0 ]; then chown -R postgres "$work"; runuser -u postgres -- pgbouncer -q "$work/pgbouncer.ini" 2>/dev/null & bpid=$!; else pgbouncer -q "$work/pgbouncer.ini" 2>/dev/null & bpid=$!; fi
sleep 1
up=${UPSTREAM_HOST:-$PGH}
case $up in /*) relay_up=$up/.s.PGSQL.$PGP;; *) relay_up=$up:$PGP;; esac
target/release/jitgate-bench bare-relay --listen 127.0.0.1:16546 --upstream "$relay_up" 2>/dev/null & rpid=$!

declare -A TPS P50 CPU
# CPU time (user + system, in clock ticks) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Of that, the system's (kernel) part.
sys_ticks() { awk '{print $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Context switches of all its threads so far (voluntary and not).
switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n + 0}'; }
# Of its CPU, the threads other than the gateway's (the server's workers and the store's: in the
# gateway's runs, the statement record's writer).
off_relay_ticks() { cat /proc/"$1"/task/*/stat 2>/dev/null | awk '$2 != "(jitgate-gateway)" {t += $14 + $15} END {print t + 0}'; }
# per_tx AMOUNT TX: AMOUNT per transaction; ticks_per_tx TICKS TX: clock ticks as µs per transaction.
per_tx() { python3 -c "print(round($1 / max($2, 1), 3))"; }
ticks_per_tx() { python3 -c "print(round($1 * 1e6 / $(getconf CLK_TCK) / max($2, 1), 2))"; }
proxy_pid() { case $1 in jitgate|norec|tls) echo "$jpid";; pgbouncer) cat "$work/pgbouncer.pid";; relay) echo "$rpid";; *) echo "";; esac; }
run() { # run NAME PORT USER DB PASSWORD ARGS... (SSLMODE: the client's, disable by default)
  local name=$1 port=$2 user=$3 db=$4 pass=$5; shift 5
  [[ " ${WAYS:-direct jitgate norec tls pgbouncer relay} " == *" $name "* ]] || return 0
  local out tps lat p50="" log=()
  # One client: log every transaction, for the median latency (pgbench prints only averages).
  [[ " $* " == *" -c 1 "* ]] && { rm -f "$work"/lat.*; log=(-l --log-prefix="$work/lat"); }
  local pid before sys_before off_before cs_before cpu=""
  pid=$(proxy_pid "$name"); [ -n "$pid" ] && { before=$(cpu_ticks "$pid"); sys_before=$(sys_ticks "$pid"); off_before=$(off_relay_ticks "$pid"); cs_before=$(switches "$pid"); }
  # PERF_STAT=1: the proxy's context switches and system calls over the run (perf stat).
  local perf_pid=""
  if [ -n "${PERF_STAT:-}" ] && [ -n "$pid" ]; then
    perf stat -x, -e context-switches,cpu-migrations,raw_syscalls:sys_enter -p "$pid" -o "$work/perf.$name" &>/dev/null & perf_pid=$!
  fi
  # PERF_RECORD=NAME: a call-graph profile of that proxy's run, kept as perf-NAME.data in the checkout.
  local record_pid=""
  if [ "${PERF_RECORD:-}" = "$name" ] && [ -n "$pid" ]; then
    perf record -F 1999 -g -p "$pid" -o "$PWD/perf-$name.data" &>/dev/null & record_pid=$!
  fi
  out=$(cd "$work" && PGPASSWORD=$pass PGSSLMODE=${SSLMODE:-disable} pgbench -h 127.0.0.1 -p "$port" -U "$user" -n -T "$T" -j 2 "${log[@]}" "$@" "$db" 2>&1) || { echo "$name $*: FAILED"; echo "$out" | tail -3; return; }
  [ -n "$record_pid" ] && { kill -INT "$record_pid"; wait "$record_pid" 2>/dev/null || true; }
  tps=$(awk '/^tps = /{print $3; exit}' <<<"$out")
  lat=$(awk '/^latency average = /{print $4; exit}' <<<"$out")
  TPS["$name $*"]="${TPS["$name $*"]:-} $tps"
  # The proxy's own CPU per transaction (µs): steadier than TPS on shared cores, since it does
  # not depend on how the scheduler shared them out during the run.
  if [ -n "$pid" ]; then
    local tx; tx=$(awk '/^number of transactions actually processed: /{print $6; exit}' <<<"$out")
    cpu=$(ticks_per_tx "$(($(cpu_ticks "$pid") - before))" "$tx")
    CPU["$name $*"]="${CPU["$name $*"]:-} $cpu"
    cpu=" proxy_cpu_us_per_tx=$cpu (kernel $(ticks_per_tx "$(($(sys_ticks "$pid") - sys_before))" "$tx"))"
    cpu="$cpu switches_per_tx=$(per_tx "$(($(switches "$pid") - cs_before))" "$tx")"
    case $name in jitgate|norec|tls)
      cpu="$cpu off_relay_us_per_tx=$(ticks_per_tx "$(($(off_relay_ticks "$pid") - off_before))" "$tx")";;
    esac
    if [ -n "$perf_pid" ]; then
      kill -INT "$perf_pid" 2>/dev/null; wait "$perf_pid" 2>/dev/null || true
      cpu="$cpu$(awk -F, -v tx="$tx" '$3 ~ /context-switches|cpu-migrations|sys_enter/ {n=$3; sub(/.*:/, "", n); printf " %s_per_tx=%.2f", n, $1 / (tx > 0 ? tx : 1)}' "$work/perf.$name")"
    fi
  fi
  if [ ${#log[@]} -gt 0 ]; then
    p50=$(cat "$work"/lat.* | awk '{print $3}' | sort -n | awk '{v[NR]=$1} END {printf "%.4f", v[int((NR+1)/2)]/1000}')
    P50["$name $*"]="${P50["$name $*"]:-} $p50"
    p50=" p50_ms=$p50"
  fi
  sleep 2 # let the pooler's idle server connections go
  printf '%-9s %-26s tps=%-10s latency_avg_ms=%s%s%s\n' "$name" "$*" "$tps" "$lat" "$p50" "$cpu"
}
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
case_all() { # the six ways, back to back
  run direct "$PGP" postgres "$DB" "" "$@"
  run jitgate 16544 alice bench "$(password bench)" "$@"
  run norec 16544 alice bench-norec "$(password bench-norec)" "$@"
  SSLMODE=require run tls 16544 alice bench "$(password bench)" "$@"
  run pgbouncer 16545 postgres "$DB" "" "$@"
  run relay 16546 postgres "$DB" "" "$@"
}
for _ in $(seq "${ROUNDS:-1}"); do
  for proto in ${PROTOCOLS:-simple prepared}; do
    for c in ${CLIENTS:-1 8 64}; do
      case_all -S -M "$proto" -c "$c"
    done
  done
  if [ "${CONNECT_RUN:-1}" = 1 ]; then
    case_all -S -C -c 8
  fi
done

echo "# median TPS: direct jitgate(recording) norec tls pgbouncer relay; ratios of jitgate (recording on): /direct /pgbouncer /relay /norec; tls/relay"
for k in "${!TPS[@]}"; do
  case $k in jitgate*) args=${k#jitgate }
    d=$(median "${TPS["direct $args"]}"); j=$(median "${TPS[$k]}"); n=$(median "${TPS["norec $args"]}"); t=$(median "${TPS["tls $args"]}")
    b=$(median "${TPS["pgbouncer $args"]}"); r=$(median "${TPS["relay $args"]}")
    printf '%-22s %7.0f %7.0f %7.0f %7.0f %7.0f %7.0f   %.2f  %.2f  %.2f  %.2f  %.2f\n' "$args" "$d" "$j" "$n" "$t" "$b" "$r" \
      "$(python3 -c "print($j/$d)")" "$(python3 -c "print($j/$b)")" "$(python3 -c "print($j/$r)")" "$(python3 -c "print($j/$n)")" "$(python3 -c "print($t/$r)")";;
  esac
done | sort
echo "# median of the p50 latencies at -c 1 (ms): direct jitgate norec tls pgbouncer relay; added by jitgate (recording on) over direct, and by recording (jitgate - norec)"
for k in "${!P50[@]}"; do
  case $k in jitgate*) args=${k#jitgate }
    d=$(median "${P50["direct $args"]}"); j=$(median "${P50[$k]}"); n=$(median "${P50["norec $args"]}"); t=$(median "${P50["tls $args"]}")
    b=$(median "${P50["pgbouncer $args"]}"); r=$(median "${P50["relay $args"]}")
    printf '%-22s %.4f %.4f %.4f %.4f %.4f %.4f   +%.4f  %+.4f\n' "$args" "$d" "$j" "$n" "$t" "$b" "$r" "$(python3 -c "print($j-$d)")" "$(python3 -c "print($j-$n)")";;
  esac
done | sort
echo "# median proxy CPU per transaction (µs): jitgate norec tls pgbouncer relay; jitgate / relay, jitgate / pgbouncer"
for k in "${!CPU[@]}"; do
  case $k in jitgate*) args=${k#jitgate }
    j=$(median "${CPU[$k]}"); n=$(median "${CPU["norec $args"]}"); t=$(median "${CPU["tls $args"]}")
    b=$(median "${CPU["pgbouncer $args"]}"); r=$(median "${CPU["relay $args"]}")
    printf '%-22s %6.2f %6.2f %6.2f %6.2f %6.2f   %.2f  %.2f\n' "$args" "$j" "$n" "$t" "$b" "$r" "$(python3 -c "print($j/max($r,1e-9))")" "$(python3 -c "print($j/max($b,1e-9))")";;
  esac
done | sort
echo "# jitgate RSS after the runs: $(awk '/VmRSS/{print $2, $3}' /proc/$jpid/status)"
