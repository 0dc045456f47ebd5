#!/usr/bin/env bash
# Builds the mediasoup worker from Debian's libraries into a cache outside the checkout and prints
# its path. The cache key is the mediasoup version + the shims' hash + the Debian release + the
# architecture, so a cache hit takes milliseconds and any change rebuilds (about 4 minutes on 2 cores).
# Debian packages it needs: see MEDIASOUP_BUILD_PACKAGES in scripts/setup.mjs (and the Dockerfile).
set -euo pipefail
VERSION="${MEDIASOUP_VERSION:-3.12.16}"
HERE="$(cd "$(dirname "$0")" && pwd)"
CODENAME="$(. /etc/os-release && echo "${VERSION_CODENAME:-unknown}")"
KEY="$VERSION-$(sha256sum "$HERE/shims.sh" | cut -c1-12)-$CODENAME-$(dpkg --print-architecture)"
BIN="${MEDIASOUP_WORKER_CACHE:-$HOME/.cache/mediasoup-worker}/$KEY/mediasoup-worker"
# A healthy worker started without its parent's pipes exits 41 ("you don't seem to be my real father").
if [ -x "$BIN" ]; then
  set +e; env -i "$BIN" >/dev/null 2>&1; rc=$?; set -e
  if [ "$rc" -eq 41 ]; then echo "$BIN"; exit 0; fi
fi
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT; cd "$WORK"
npm pack --silent "mediasoup@$VERSION" >/dev/null && tar xzf "mediasoup-$VERSION.tgz"
bash "$HERE/shims.sh" package
meson setup --wrap-mode=nodownload --buildtype release -Db_ndebug=true -Db_pie=true \
  -Db_staticpic=true build package/worker >&2
ninja -C build mediasoup-worker >&2
install -D -m 0755 build/mediasoup-worker "$BIN.tmp.$$" && mv "$BIN.tmp.$$" "$BIN"
echo "$BIN"
