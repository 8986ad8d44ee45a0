#!/usr/bin/env bash
# `make browser`: install Debian's chromium for the real-browser test (tests/test_browser.py), on request only.
# It is a system package, so this asks apt-get (as root, or through sudo); set-up never runs it by itself.
set -euo pipefail
chromium=${MINIPEFT_CHROMIUM:-/usr/bin/chromium}  # where tests/test_browser.py looks (overridable for its own test)
if [ -x "$chromium" ]; then
  echo "make browser: chromium is already installed ($chromium)."
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "make browser: no apt-get here (not Debian or Ubuntu); install Chromium so that /usr/bin/chromium exists," \
       "or leave tests/test_browser.py skipped." >&2
  exit 1
fi
if [ "$(id -u)" = 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "make browser: installing chromium needs root: run \`apt-get install chromium\` as root." >&2
  exit 1
fi
echo "make browser: installing Debian's chromium with apt-get (a system package, about 100 MB)"
"${sudo[@]}" apt-get update -q >/dev/null
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
echo "make browser: chromium installed ($chromium); tests/test_browser.py now runs."
