#!/usr/bin/env bash
# Issue #3's measurements, SQLite then PostgreSQL:
#   login latency over HTTP, sequential: password only (the baseline) and password + TOTP code
#   in one call, p50/p99 of 200 logins each;
#   in-process cost per call: Argon2id verification (19 MiB, t=2, p=1), TOTP check (matching
#   and wrong code, one step of skew), seed decryption (XChaCha20-Poly1305), recovery-code hash.
# Needs PostgreSQL like the tests (JITGATE_TEST_PG_URL or the local server).
set -euo pipefail
cd "$(dirname "$0")/.."
export JITGATE_TEST_PG_URL="${JITGATE_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
cargo build --release -q -p jitgate-bench
b=target/release/jitgate-bench
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r)"
for backend in sqlite postgres; do
  $b mfa --backend "$backend" --logins "${LOGINS:-200}" 2>/dev/null
done
