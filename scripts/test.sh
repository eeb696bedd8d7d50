#!/usr/bin/env bash
# Installs what the tests need and runs them: the README's test command, and what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
# The browser tests drive Debian's Chromium through Playwright (never `playwright install`).
if ! [ -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
set +e
python3 -m pytest -q --durations=15 "$@"
rc=$?
set -e
# pytest exits 5 when no test was collected: that is a failure here, not a pass.
[ "$rc" -eq 5 ] && { echo "no tests were collected" >&2; exit 1; }
exit "$rc"
