#!/usr/bin/env bash
# What building and testing jitgate needs from Debian, installed when missing (as root or with
# sudo). Sourced by scripts/test.sh; .ci/run runs it before the lints, which build too.
#   gcc, pkg-config, libssl-dev  C parts: SQLite, and OpenSSL for webauthn-rs
#   postgresql-client            psql and pg_isready for the PostgreSQL tests
#   postgresql                   initdb, pg_ctl and postgres (/usr/lib/postgresql/*/bin) for the
#                                tests that run a throwaway cluster of their own (gateway
#                                logins, a store that stops and comes back)
#   oathtool                     an independent TOTP implementation the tests check against
#   python3-venv, curl           scripts/api-fuzz.sh: schemathesis (from PyPI) in a venv, and the
#                                server's bootstrap
#   chromium, chromium-driver    the web pages' tests drive a real headless Chromium
#   prometheus                   promtool, which checks the /metrics text in the tests (the
#                                server itself is not started)
#   npm                          axe-core (from npm), the accessibility checker those tests run,
#                                into target/web-tools (unless node and npm are here already)
#   (PyPI) aiosmtpd              the SMTP server the e-mail notification tests send to, in a
#                                venv in target/notify-tools
#   (npm) oidc-provider          the OpenID Connect provider the single sign-on tests sign in
#                                at, into target/oidc-tools (run with Debian's node)
set -euo pipefail

deps_log() { printf '[deps] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for pkg in gcc pkg-config libssl-dev postgresql-client postgresql oathtool python3-venv curl chromium chromium-driver prometheus; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  deps_log "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v npm >/dev/null 2>&1; then
  deps_log "installing npm"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
fi
web_tools="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/web-tools"
if [ ! -f "$web_tools/node_modules/axe-core/axe.min.js" ]; then
  deps_log "installing axe-core into $web_tools"
  mkdir -p "$web_tools"
  (cd "$web_tools" && npm install --no-audit --no-fund --silent axe-core@4.14.1 >/dev/null)
fi

notify_tools="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/notify-tools"
if ! "$notify_tools/venv/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
  deps_log "installing aiosmtpd into $notify_tools/venv"
  mkdir -p "$notify_tools"
  python3 -m venv "$notify_tools/venv"
  "$notify_tools/venv/bin/pip" install -q --disable-pip-version-check "aiosmtpd==1.4.6"
fi

oidc_tools="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/oidc-tools"
if [ ! -f "$oidc_tools/node_modules/oidc-provider/package.json" ]; then
  deps_log "installing oidc-provider into $oidc_tools"
  mkdir -p "$oidc_tools"
  (cd "$oidc_tools" && npm install --no-audit --no-fund --silent oidc-provider@8.8.1 >/dev/null)
fi
