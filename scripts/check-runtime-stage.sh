#!/usr/bin/env bash
# Tries the Dockerfile's run stage without a Docker engine: a Debian bookworm root file system made by
# debootstrap (minbase, the variant Debian's container images are built from) gets the run stage's
# packages, the Swift runtime libraries the binary links (chosen as the build stage chooses them), the
# binary and the same non-root user; then gemcache serves from it as that user, and the image's health
# check command asks /healthz inside it. Needs root, debootstrap and Debian's package mirror.
#
#   scripts/check-runtime-stage.sh [BINARY]      # default .build/release/gemcache (make build)
#
# What it cannot check: the build stage (the swift:6.3-bookworm image) and Docker itself.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
binary=$(readlink -f "${1:-$root/.build/release/gemcache}")
rootfs=${ROOTFS:-/tmp/gemcache-runtime-rootfs}
dockerfile="$root/Dockerfile"
[ -x "$binary" ] || { echo "no binary at $binary: make build first"; exit 1; }
command -v debootstrap >/dev/null || { echo "needs debootstrap: apt-get install -y debootstrap"; exit 1; }

# The run stage's packages and user, read from the Dockerfile so that this checks what it says.
packages=$(awk '/^FROM debian:bookworm-slim/{run=1} run && /--no-install-recommends/{f=1} f{print} f && !/\\$/{exit}' "$dockerfile" \
    | tr -d '\\' | tr ' ' '\n' | grep -E '^[a-z0-9][a-z0-9.+-]+$' | grep -vE '^(apt-get|install|rm|y|qq)$' | sort -u | tr '\n' ' ')
useradd_line=$(grep -o 'useradd [^&]*' "$dockerfile" | sed 's/[ \\]*$//')
uid=$(grep -o -- '--uid [0-9]*' <<<"$useradd_line" | awk '{print $2}')
echo "run-stage packages: $packages"

# Only /proc is mounted into the root file system (debootstrap makes its own /dev nodes): a bind mount
# of the host's /dev would let a later `rm -rf` of the folder delete the host's device nodes.
unmount_all() { { findmnt -rn -o TARGET | grep -F "$rootfs/" || true; } | sort -r | xargs -r -n1 umount -l; }
unmount_all
if [ ! -x "$rootfs/usr/bin/apt-get" ]; then
    rm -rf --one-file-system "$rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
    unmount_all
fi
trap unmount_all EXIT
mount -t proc proc "$rootfs/proc"
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
# shellcheck disable=SC2086
chroot "$rootfs" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages >/dev/null"

# The build stage copies the libraries under the toolchain's lib/swift (/usr/lib/swift there) to
# /usr/lib/swift/linux; here the toolchain may live elsewhere, so keep the same selection by its
# lib/swift/linux part, and run the binary from the image's path with that folder on its run path.
mkdir -p "$rootfs/usr/lib/swift/linux" "$rootfs/usr/local/bin"
ldd "$binary" | awk '$3 ~ /\/lib\/swift\/linux\// { print $3 }' | xargs -r cp -t "$rootfs/usr/lib/swift/linux/"
cp "$binary" "$rootfs/usr/local/bin/gemcache"
chroot "$rootfs" sh -c "id gemcache >/dev/null 2>&1 || $useradd_line"
chroot "$rootfs" sh -c 'mkdir -p /var/lib/gemcache/data && chown -R gemcache:gemcache /var/lib/gemcache'
missing=$(chroot "$rootfs" env LD_LIBRARY_PATH=/usr/lib/swift/linux ldd /usr/local/bin/gemcache | grep 'not found' || true)
[ -z "$missing" ] || { echo "libraries missing in the run stage:"; echo "$missing"; exit 1; }

port=$((20000 + RANDOM % 20000))
chroot --userspec="$uid:$uid" "$rootfs" env -i HOME=/var/lib/gemcache LD_LIBRARY_PATH=/usr/lib/swift/linux \
    GEMCACHE_LISTEN_HOST=127.0.0.1 GEMCACHE_LISTEN_PORT=$port GEMCACHE_STORE_PATH=/var/lib/gemcache/data \
    sh -c 'cd /var/lib/gemcache && exec /usr/local/bin/gemcache serve' >"$rootfs/tmp/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; unmount_all' EXIT
health=$(grep -o 'CMD curl [^|]*' "$dockerfile" | sed 's/^CMD //; s/\${GEMCACHE_LISTEN_PORT}/'"$port"'/')
for _ in $(seq 50); do
    if chroot --userspec="$uid:$uid" "$rootfs" sh -c "$health" 2>/dev/null; then
        echo "run stage OK: gemcache served as uid $uid from the slim root file system; health check: $health"
        chroot "$rootfs" curl -s "http://127.0.0.1:$port/healthz"; echo
        kill -TERM $server; wait $server || true
        tail -n 3 "$rootfs/tmp/serve.log"
        exit 0
    fi
    sleep 0.2
done
echo "the health check never passed; the server's log:"; cat "$rootfs/tmp/serve.log"; exit 1
