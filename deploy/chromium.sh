#!/usr/bin/env bash
# Debian's Chromium for the console's browser test (tests/e2e/test_console.py drives it headless
# with Playwright, executable_path=/usr/bin/chromium): never a browser downloaded by Playwright.
# `make test` runs this first. Installs the `chromium` package with apt-get when /usr/bin/chromium
# is missing, as root (or through sudo without a password); otherwise says what to run.
set -euo pipefail

if [[ -x /usr/bin/chromium ]]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "chromium.sh: error: /usr/bin/chromium is missing and this is not a Debian-like system (no apt-get):" \
       "install Chromium from your distribution so that /usr/bin/chromium runs it" >&2
  exit 1
fi
if [[ "$(id -u)" -eq 0 ]]; then
  as_root=()
elif sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "chromium.sh: error: /usr/bin/chromium is missing; install Debian's package as root:" \
       "sudo apt-get install -y chromium" >&2
  exit 1
fi
echo "chromium.sh: installing Debian's chromium (for the console's browser test)" >&2
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
[[ -x /usr/bin/chromium ]] || { echo "chromium.sh: error: apt-get installed no /usr/bin/chromium" >&2; exit 1; }
echo "chromium.sh: $(/usr/bin/chromium --version 2>/dev/null || echo chromium) installed" >&2
