#!/usr/bin/env bash
# Make sure a Chromium is on PATH for plotly/kaleido static image export (kaleido 1.x cannot
# download one here). Installs Debian's `chromium` package when missing.
set -euo pipefail
for b in chromium chromium-headless-shell google-chrome; do
  if command -v "$b" >/dev/null 2>&1; then exit 0; fi
done
if [ -n "${BROWSER_PATH:-}" ] && [ -x "$BROWSER_PATH" ]; then exit 0; fi
run() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
  echo "need root to install Debian's chromium (apt-get install chromium)" >&2; exit 1; fi; }
echo "installing Debian's chromium for plotly image export ..."
run apt-get update -qq
run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
command -v chromium >/dev/null
