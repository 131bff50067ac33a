#!/usr/bin/env bash
# Debian's headless Chromium and its driver, for .ci/check_browser.py (nothing is
# downloaded at test time). Does nothing when both are installed.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
sudo=$([ "$(id -u)" = 0 ] || echo sudo)
$sudo apt-get update -qq
$sudo apt-get install -y -qq chromium chromium-driver >/dev/null
