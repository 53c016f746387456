#!/usr/bin/env bash
# Debian's chromium and chromedriver, for the browser test of the `w2v serve` page
# (tests/test_serve_page.py, `make test-browser`); safe to re-run. Through sudo when not root.
# About 120 MB to download, 415 MB installed (chromium, chromium-common, chromium-driver and 13
# libraries the development machine lacked); 13 s there, apt-get update included (2026-12-03).
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
echo "install_browser: installing chromium and chromium-driver with ${sudo_cmd:+sudo }apt-get"
$sudo_cmd apt-get update -qq
$sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
chromium --version
