#!/usr/bin/env bash
# The browser the console's tests drive: Debian's chromium and its chromedriver, installed once
# when absent (needs root, as on CI). Selenium itself is a pinned Python dependency.
set -euo pipefail
if [ -x /usr/bin/chromedriver ] && [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "chromium and chromium-driver are missing: install them (apt-get install chromium chromium-driver) as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
