#!/usr/bin/env bash
# Builds fletch's container image without an image registry: the base is a Debian root
# file system made by debootstrap from the Debian mirror, the image is assembled by buildah
# (no container runs during the build) and lands in the local podman/buildah storage.
#
#   deploy/build-image.sh [IMAGE]      default IMAGE: localhost/fletch:<version from Cargo.toml>
#
# Then: podman run --rm -p 8080:8080 IMAGE serve --pg-url ... ; or ship it without a
# registry: podman save --format docker-archive -o fletch.tar IMAGE (docker load, kind
# load image-archive, ctr -n k8s.io images import).
#
# On a host that denies raising resource limits and runs cgroups in hybrid mode (as the
# project's own machines do), run the image with runc and limits at or below the host's:
#   podman --runtime runc run --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 ...
#
# Environment:
#   FLETCH_BIN   the fletch binary to put in the image (default: cargo build --release;
#                it must be built against the suite's glibc or an older one)
#   SUITE        Debian suite of the base (default bookworm)
#   MIRROR       Debian mirror (default http://deb.debian.org/debian)
#   FLETCH_CACHE where the base root file system is kept between builds (see scripts/lib.sh)
set -euo pipefail
FLETCH_LOG_TAG=image
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$FLETCH_ROOT"
fletch_cache_dir

SUITE="${SUITE:-bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
image="${1:-localhost/fletch:$version}"
base="localhost/fletch-base:$SUITE"
uid=10001

bash scripts/setup.sh image

# The base: debootstrap once per suite, with the fletch user, imported as one layer.
if ! podman image exists "$base"; then
    rootfs="$FLETCH_CACHE/image/rootfs-$SUITE"
    if [[ ! -f "$rootfs/.complete" ]]; then
        rm -rf "$rootfs"
        mkdir -p "$(dirname "$rootfs")"
        log "debootstrap $SUITE (minbase + ca-certificates) from $MIRROR"
        debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$rootfs" "$MIRROR" >&2 \
            || die "debootstrap failed (log: $rootfs/debootstrap/debootstrap.log)"
        touch "$rootfs/.complete"
    fi
    # Users are written on the host: the build never runs a container.
    grep -q "^fletch:" "$rootfs/etc/group" || echo "fletch:x:$uid:" >> "$rootfs/etc/group"
    grep -q "^fletch:" "$rootfs/etc/passwd" \
        || echo "fletch:x:$uid:$uid:fletch:/nonexistent:/usr/sbin/nologin" >> "$rootfs/etc/passwd"
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log
    log "importing the base as $base"
    tar -C "$rootfs" --exclude=./.complete --exclude=./proc/* --exclude=./sys/* --exclude=./dev/* -c . \
        | podman import - "$base" >&2
fi

if [[ -z "${FLETCH_BIN:-}" ]]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/fletch-target}"
    cargo build --release --locked --bin fletch >&2
    FLETCH_BIN="$CARGO_TARGET_DIR/release/fletch"
fi
[[ -x "$FLETCH_BIN" ]] || die "no fletch binary at $FLETCH_BIN"

log "assembling $image from $base + $FLETCH_BIN"
ctr="$(buildah from --pull-never "$base")"
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
buildah copy --chmod 0755 "$ctr" "$FLETCH_BIN" /usr/local/bin/fletch >/dev/null
buildah copy "$ctr" config/fletch.example.toml /etc/fletch/fletch.example.toml >/dev/null
# The same settings as the Dockerfile's.
buildah config \
    --user "$uid:$uid" \
    --env FLETCH_HTTP__LISTEN=0.0.0.0:8080 \
    --env FLETCH_FLIGHT__LISTEN=0.0.0.0:50051 \
    --port 8080 --port 50051 \
    --entrypoint '["/usr/local/bin/fletch"]' \
    --cmd serve \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.title=fletch" \
    "$ctr"
buildah commit --quiet "$ctr" "$image" >/dev/null
log "built $image ($(podman image inspect --format '{{.Size}}' "$image") bytes)"
echo "$image"
