#!/usr/bin/env bash
# Installs the system packages the test suite needs when they are missing: openssh-server for the
# fleet of SSH test hosts, cron for the schedule tests, Chromium for the HTML reports, fonts-noto-cjk for pages in Japanese, PostgreSQL for the team store. Needs root; without root it says what is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
missing=()
command -v crontab >/dev/null 2>&1 || missing+=(cron)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)   # HTML reports are checked in a real browser
# Japanese pages are screenshot in Chromium: without a Japanese font their text would be boxes.
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || fc-list :lang=ja family 2>/dev/null | grep -q . || missing+=(fonts-noto-cjk)
# The team store's tests start a private PostgreSQL server (initdb/pg_ctl, as the postgres user) and
# prove with pg_dump that no secret reaches it.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v pg_dump >/dev/null 2>&1; then
  missing+=(postgresql postgresql-client)
fi
if [ -x "$here/install-fleet-deps.sh" ] || [ -f "$here/install-fleet-deps.sh" ]; then
  bash "$here/install-fleet-deps.sh"
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: missing ${missing[*]} and not root: the tests that need them will fail under CI" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
