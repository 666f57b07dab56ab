#!/usr/bin/env bash
# The API against its own document: schemathesis (from PyPI) generates requests from
# /api/v1/openapi.json and sends them to a live server, logged in as an administrator, with
# every check on: no 5xx, no schema-valid request refused, no status the document does not
# list, answers that match their schemas, schema-invalid input refused. A bounded number of
# examples per operation and a fixed seed, so a run takes about a minute and is repeatable.
#
#   scripts/api-fuzz.sh [JITGATE_BINARY]      # default target/debug/jitgate (cargo test builds it)
#
# Exit 0 when nothing failed. The JUnit and NDJSON reports are in target/api-fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/debug/jitgate}
[ -x "$bin" ] || { echo "api-fuzz: no jitgate binary at $bin (run cargo build first)" >&2; exit 2; }
log() { printf '[api-fuzz] %s\n' "$*" >&2; }
out=target/api-fuzz
mkdir -p "$out"
venv=$out/venv
version=4.32.5
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$version"; then
  log "installing schemathesis $version from PyPI into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$version"
fi
work=$(mktemp -d /tmp/jitgate-api-fuzz.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
printf '[gateway]\nenabled = false\n' >"$work/jitgate.toml"
"$bin" serve --config "$work/jitgate.toml" --data-dir "$work/data" --http "127.0.0.1:$port" >"$work/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
setup=""
for _ in $(seq 200); do
  setup=$(grep -o 'jgsetup_[A-Za-z0-9_-]*' "$work/serve.log" | head -n1 || true)
  [ -n "$setup" ] && curl -fsS "$base/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
[ -n "$setup" ] || { log "the server did not start:"; cat "$work/serve.log" >&2; exit 2; }
token=$(curl -fsS -X POST "$base/api/v1/bootstrap" -H 'content-type: application/json' \
  -d "{\"setup_token\":\"$setup\",\"username\":\"admin\",\"password\":\"api-fuzz-admin-password\"}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
log "fuzzing $base/api/v1/openapi.json"
status=0
(cd scripts/api-fuzz && timeout 900 "../../$venv/bin/schemathesis" --config-file schemathesis.toml --no-color \
  run "$base/api/v1/openapi.json" -H "Authorization: Bearer $token" \
  --checks all --max-examples "${API_FUZZ_EXAMPLES:-25}" --seed 42 --generation-database none \
  --continue-on-failure --workers 1 --request-timeout 10 --report junit,ndjson \
  --report-junit-path "../../$out/junit.xml" --report-ndjson-path "../../$out/events.ndjson") || status=$?
[ "$status" = 0 ] && log "no failures" || log "failures (exit $status): see above and $out/"
exit "$status"
