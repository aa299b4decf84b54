#!/usr/bin/env bash
# Builds the Basin runtime image without pulling anything: a FROM-scratch
# image holding the host-built `basin` binary and exactly the shared libraries
# it links (found with ldd), a non-root user, and the same entrypoint and
# HEALTHCHECK as deploy/docker/Dockerfile.
#
# Usage: deploy/docker/build-image.sh [--profile debug|release] [--tag NAME] [--binary PATH]
#   (builds the binary with cargo first, CARGO_TARGET_DIR honoured; --binary
#   packs an already built binary instead, as the compose test does)
set -euo pipefail
cd "$(dirname "$0")/../.."
PROFILE=release
TAG=basin:local
BINARY=
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE=$2; shift 2 ;;
    --tag) TAG=$2; shift 2 ;;
    --binary) BINARY=$2; shift 2 ;;
    *) echo "usage: $0 [--profile debug|release] [--tag NAME] [--binary PATH]" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/basin-target}"
if [ -n "$BINARY" ]; then
  BIN="$BINARY"
elif [ "$PROFILE" = release ]; then
  cargo build --release --workspace >&2
  BIN="$CARGO_TARGET_DIR/release/basin"
else
  cargo build --workspace >&2
  BIN="$CARGO_TARGET_DIR/debug/basin"
fi
[ -x "$BIN" ] || { echo "no binary at $BIN" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "no Docker engine answers" >&2; exit 3; }

CTX=$(mktemp -d)
trap 'rm -rf "$CTX"' EXIT
ROOT="$CTX/rootfs"
mkdir -p "$ROOT/usr/local/bin" "$ROOT/etc" "$ROOT/tmp" "$CTX/data"
cp "$BIN" "$ROOT/usr/local/bin/basin"
strip --strip-debug "$ROOT/usr/local/bin/basin" 2>/dev/null || true
# The dynamic loader and every library the binary needs, at their paths.
ldd "$BIN" | awk '/=>/ {print $3} !/=>/ && $1 ~ /^\// {print $1}' | sort -u | while read -r lib; do
  [ -n "$lib" ] && [ -e "$lib" ] || continue
  mkdir -p "$ROOT$(dirname "$lib")"
  cp -L "$lib" "$ROOT$lib"
done
# Name resolution for container DNS names (glibc reads these).
printf 'root:x:0:0:root:/root:/sbin/nologin\nbasin:x:10001:10001:basin:/data:/sbin/nologin\n' > "$ROOT/etc/passwd"
printf 'root:x:0:\nbasin:x:10001:\n' > "$ROOT/etc/group"
printf 'hosts: files dns\n' > "$ROOT/etc/nsswitch.conf"
for nss in /lib/x86_64-linux-gnu/libnss_dns.so.2 /lib/x86_64-linux-gnu/libnss_files.so.2 /lib/x86_64-linux-gnu/libresolv.so.2; do
  if [ -e "$nss" ]; then mkdir -p "$ROOT$(dirname "$nss")"; cp -L "$nss" "$ROOT$nss"; fi
done
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ca-certificates.crt" 2>/dev/null || true
chmod 1777 "$ROOT/tmp"

cat > "$CTX/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
COPY --chown=10001:10001 data/ /data/
ENV SSL_CERT_FILE=/etc/ca-certificates.crt
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 7100 7200 9100
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=5 \
  CMD ["/usr/local/bin/basin", "healthcheck", "--http", "127.0.0.1:9100"]
ENTRYPOINT ["/usr/local/bin/basin"]
DOCKERFILE
docker build -q -t "$TAG" "$CTX" >/dev/null
echo "$TAG"
