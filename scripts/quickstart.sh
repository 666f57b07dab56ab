#!/usr/bin/env bash
# The README's Quickstart, step by step, as a newcomer would type it, so the README cannot drift
# from the CLI: run by the test suite (crates/jitgate/tests/quickstart.rs) on every CI run.
# Where the README is interactive this takes the non-interactive path the README also shows
# (passwords on standard input, oathtool as the authenticator app); everything else is the
# README's own command line. Each step checks what the README says the reader will see.
#
#   JITGATE=target/debug/jitgate PG_URL=postgres://postgres@127.0.0.1:5432/postgres scripts/quickstart.sh
#
# PG_URL: a PostgreSQL superuser that may log in without a password (as the tests'); the script
# creates the README's two logins there (step 0) if they are missing. Needs psql, oathtool and
# python3. Uses fresh ports and a temporary directory; leaves nothing running.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
JITGATE=${JITGATE:-$repo/target/debug/jitgate}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
PATH="$(cd "$(dirname "$JITGATE")" && pwd):$PATH"
export PATH

step() { printf '\n[quickstart] %s\n' "$*" >&2; }
die() { printf '[quickstart] FAILED: %s\n' "$*" >&2; exit 1; }
# expect_refusal WORDS -- COMMAND...: the command must fail and say WORDS.
expect_refusal() {
  local want=$1; shift 2
  local out
  if out=$("$@" 2>&1); then die "expected a refusal from: $* (got: $out)"; fi
  grep -qi -- "$want" <<<"$out" || die "the refusal of '$*' does not say '$want': $out"
  printf '%s\n' "$out" >&2
}
# expect_output WORDS -- COMMAND...: the command must succeed and print WORDS.
expect_output() {
  local want=$1; shift 2
  local out
  out=$("$@" 2>&1) || die "'$*' failed: $out"
  grep -qi -- "$want" <<<"$out" || die "'$*' does not print '$want': $out"
  printf '%s\n' "$out" >&2
}
json_field() { python3 -c 'import json,sys; v=json.load(sys.stdin); print(eval("v"+sys.argv[1]))' "$1"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

for tool in psql oathtool python3; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/deps.sh installs what the tests need)"
done
[ -x "$JITGATE" ] || die "no jitgate binary at $JITGATE (cargo build, or set JITGATE)"

work=$(mktemp -d /tmp/jitgate-quickstart.XXXXXX)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

# The quickstart's configuration, on fresh ports and this machine's PostgreSQL: the only
# changes to examples/quickstart.toml.
pg_host=$(python3 -c 'import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p.hostname or "127.0.0.1")' "$PG_URL")
pg_port=$(python3 -c 'import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p.port or 5432)' "$PG_URL")
http_port=$(free_port)
gateway_port=$(free_port)
mkdir examples
cp -r "$repo/examples/policies" examples/
sed -e "s|^http = \"127.0.0.1:8080\"|http = \"127.0.0.1:$http_port\"|" \
    -e "s|^host = \"127.0.0.1\"|host = \"$pg_host\"|" \
    -e "s|^port = 5432|port = $pg_port|" \
    "$repo/examples/quickstart.toml" >examples/quickstart.toml
printf '\n[gateway]\nlisten = "127.0.0.1:%s"\n' "$gateway_port" >>examples/quickstart.toml
grep -q "127.0.0.1:$http_port" examples/quickstart.toml || die "examples/quickstart.toml no longer has http = \"127.0.0.1:8080\""
grep -q "^port = $pg_port" examples/quickstart.toml || die "examples/quickstart.toml no longer has the resource's port = 5432"

step "0. each role its own database login"
psql "$PG_URL" -v ON_ERROR_STOP=1 -q <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'jitgate_read') THEN
    CREATE ROLE jitgate_read  LOGIN PASSWORD 'change-me-read'  IN ROLE pg_read_all_data;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'jitgate_write') THEN
    CREATE ROLE jitgate_write LOGIN PASSWORD 'change-me-write' IN ROLE pg_read_all_data, pg_write_all_data;
  END IF;
END $$;
SQL

step "1. start the server"
jitgate serve --config examples/quickstart.toml 2>server.log &
server_pid=$!
for _ in $(seq 1 300); do
  grep -q "listening on" server.log 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || die "the server stopped: $(cat server.log)"
  sleep 0.1
done
grep -q "PostgreSQL gateway on 127.0.0.1:$gateway_port" server.log || die "the banner does not name the gateway: $(cat server.log)"
setup_token=$(grep -A1 "one-time setup token" server.log | tail -n1 | tr -d ' ')
[ -n "$setup_token" ] || die "no setup token in: $(cat server.log)"

step "2. the first administrator, then the people"
export JITGATE_SERVER=http://127.0.0.1:$http_port
export JITGATE_CONFIG_DIR=$work/jg-admin
JITGATE_SETUP_TOKEN=$setup_token jitgate admin bootstrap --username admin --password-stdin <<<"admin password 1234"
jitgate admin user create alice --password-stdin <<<"alice password 1234"
jitgate admin user create bob --password-stdin <<<"bob password 12345"
expect_output "engineers" -- jitgate admin user list
jitgate admin resource set-password prod-db --role read --password-stdin <<<"change-me-read"
jitgate admin resource set-password prod-db --role write --password-stdin <<<"change-me-write"
expect_output "jitgate_read" -- jitgate admin resource check prod-db

step "3. alice: a second factor, then read access for 30 minutes"
export JITGATE_CONFIG_DIR=$work/jg-alice
jitgate login alice --password-stdin <<<"alice password 1234"
secret=$(jitgate --json mfa totp enroll | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
expect_output "recovery" -- jitgate mfa totp confirm "$(oathtool --totp -b "$secret")"
expect_output "prod-db" -- jitgate resources
expect_output "pending approval" -- jitgate request prod-db --role read --for 30m --reason "INC-231 slow checkout queries"
req=$(jitgate --json requests | json_field '[0]["id"]')
expect_output "$req" -- jitgate requests
expect_refusal "your own" -- jitgate approve "$req"
expect_output "fresh until" -- jitgate mfa status

step "4. bob approves with a fresh second factor of his own"
export JITGATE_CONFIG_DIR=$work/jg-bob
jitgate login bob --password-stdin <<<"bob password 12345"
expect_refusal "second factor" -- jitgate approve "$req"
bob_secret=$(jitgate --json mfa totp enroll | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
jitgate mfa totp confirm "$(oathtool --totp -b "$bob_secret")" >/dev/null
expect_output "$req" -- jitgate requests --review
expect_output "approved" -- jitgate approve "$req" --comment "ok for INC-231"
expect_output "bob approve (owner stage) with totp: ok for INC-231" -- jitgate show "$req"

step "5. alice uses it through the gateway, and loses it"
export JITGATE_CONFIG_DIR=$work/jg-alice
expect_output "now" -- jitgate connect prod-db -- -c "SELECT now()"
expect_output "sslmode=verify-full" -- jitgate connect prod-db --print-dsn
expect_output "jitgate_read\|prod-db/read" -- jitgate sessions
expect_output "active" -- jitgate grants
jitgate request prod-db --role read --for 1m --reason "watch it expire" >/dev/null
short_req=$(jitgate --json requests --status pending | json_field '[0]["id"]')
JITGATE_CONFIG_DIR=$work/jg-bob jitgate approve "$short_req" >/dev/null
short_grant=$(jitgate --json show "$short_req" | json_field '["grant"]["id"]')
ends=$(jitgate --json show "$short_req" | json_field '["grant"]["ends_at"]')
step "waiting for the 1m grant to end at $ends"
sleep 62
expect_output "$short_grant.*expired" -- jitgate grants
long_grant=$(jitgate --json show "$req" | json_field '["grant"]["id"]')
expect_output "revoked" -- jitgate revoke "$long_grant" --reason "done early"
expect_output "history" -- jitgate show "$req"

step "6. the audit trail proves itself"
export JITGATE_CONFIG_DIR=$work/jg-admin
expect_output "grant" -- jitgate audit tail -n 20
expect_output "audit log OK" -- jitgate audit verify
jitgate audit export --output audit.jsonl
expect_output "audit log OK" -- jitgate audit verify --file audit.jsonl --public-key "$(jitgate --json audit public-key | python3 -c 'import json,sys; print(json.load(sys.stdin)["public_key"])')"

step "7. policies: on call, break glass, the alert and its acknowledgement"
expect_output "no problems\|ok\|valid" -- jitgate policy check --config examples/quickstart.toml
expect_output "deny\|forbid" -- jitgate policy explain --user alice --resource prod-db --role write --for 30m --at 2026-11-29T10:00:00Z
jitgate admin group add oncall alice
export JITGATE_CONFIG_DIR=$work/jg-alice
expect_output "approved by policy \`on-call-read\`" -- jitgate request prod-db --role read --for 30m --reason "paged: replica lag"
expect_output "break" -- jitgate break-glass prod-db --role read --for 15m --reason "INC-232 disk full"
glass_req=$(jitgate --json requests | python3 -c 'import json,sys; print([r["id"] for r in json.load(sys.stdin) if r.get("break_glass")][0])')
expect_output "jitgate ack $glass_req" -- env JITGATE_CONFIG_DIR="$work/jg-bob" jitgate notifications
expect_output "acknowledged" -- env JITGATE_CONFIG_DIR="$work/jg-bob" jitgate ack "$glass_req" --comment "checked"
notes=$(JITGATE_CONFIG_DIR=$work/jg-bob jitgate notifications)
grep -q "acknowledged by bob at" <<<"$notes" || die "an acknowledged alert is not shown as such: $notes"
if grep -q "jitgate ack $glass_req" <<<"$notes"; then die "an acknowledged alert still asks for an acknowledgement: $notes"; fi

step "done: the Quickstart works as written"
