#!/usr/bin/env bash
# Install Debian's chromium for the browser tests, which drive it through Playwright
# (Playwright's own browser download is not used). Does nothing when chromium is present.
set -euo pipefail
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
  exit 0
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null; then
    echo "install-browser: not root and no sudo; install the chromium package yourself" >&2
    exit 0
  fi
  as_root=(sudo)
fi
if ! command -v apt-get >/dev/null; then
  echo "install-browser: no apt-get; install chromium with your package manager" >&2
  exit 0
fi
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq chromium >/dev/null
chromium --version
