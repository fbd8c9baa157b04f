#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine: a .venv with torch (CPU wheel pinned) and abrar.
#   scripts/setup.sh          runtime only
#   scripts/setup.sh --test   plus test tools: ffmpeg, Chromium, GStreamer RTSP server, PostgreSQL,
#                             simple-whip-client (+ gcc for its test shim, iproute2 for its
#                             network namespace), Node.js + npm (WHEP player)
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION="${ABRAR_TORCH_VERSION:-2.13.0}"
with_test=0
[ "${1:-}" = "--test" ] && with_test=1

if [ "$with_test" = 1 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  packages="ffmpeg chromium gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi
    gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
    gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools postgresql simple-whip-client gcc libc6-dev
    iproute2"
  # Node.js may come from elsewhere (NodeSource bundles npm and conflicts with Debian's npm)
  command -v npm >/dev/null 2>&1 || packages="$packages nodejs npm"
  missing=""
  for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# Pinned here (not in pyproject) so pip takes the CPU wheel instead of a multi-GB CUDA build;
# on a GPU machine set ABRAR_TORCH_VERSION or install torch yourself first.
.venv/bin/python -m pip install -q "torch==${TORCH_VERSION}"
if [ "$with_test" = 1 ]; then
  .venv/bin/python -m pip install -q -e ".[test]"
  # the WHEP player the browser test plays with (tests/web/package-lock.json pins it)
  npm ci --prefix tests/web --no-audit --no-fund --loglevel=error
else
  .venv/bin/python -m pip install -q -e .
fi
