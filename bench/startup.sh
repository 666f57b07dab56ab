#!/usr/bin/env bash
# Time from `jitgate serve` to a 200 on /healthz: on a fresh data directory (creates the
# database, runs migrations, makes the audit key) and on an existing one.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p jitgate
bin="$PWD/target/release/jitgate"
dir=$(mktemp -d)
trap 'pkill -f "serve --http 127.0.0.1:18282" || true; rm -rf "$dir"' EXIT
cd "$dir"
for run in fresh existing; do
  start=$(date +%s%N)
  "$bin" serve --http 127.0.0.1:18282 >serve.log 2>&1 &
  pid=$!
  until curl -sf http://127.0.0.1:18282/healthz >/dev/null; do sleep 0.005; done
  end=$(date +%s%N)
  echo "startup $run: $(( (end - start) / 1000000 )) ms"
  kill "$pid"; wait "$pid" || true
done
