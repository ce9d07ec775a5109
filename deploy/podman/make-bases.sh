#!/bin/sh
# Local stand-ins for the images the Dockerfile and docker-compose.yml pull, for machines that reach no
# container registry (podman as root; made once, then cached in podman's image store):
#   localhost/poselift-standin/debian:bookworm   debootstrap --variant=minbase + this host's CA certificates
#   localhost/poselift-standin/python:3.11       for python:3.11-slim-bookworm (Debian's python3.11 + venv)
#   localhost/poselift-standin/redis:7           for redis:7.4-alpine (Debian's redis, protected mode off)
#   localhost/poselift-standin/nginx:1           for nginx:1.28-alpine (Debian's nginx-light, wget)
# The host's extra CA certificates go into every stand-in: builds behind a TLS-intercepting proxy reach PyPI.
# Environment: CONTAINERS_CONF (deploy/podman/containers.conf), MIRROR (Debian mirror), FORCE=1 remakes all.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
PREFIX=localhost/poselift-standin
FORCE="${FORCE:-0}"

have() { [ "$FORCE" != 1 ] && podman image exists "$1"; }

if ! have "$PREFIX/debian:bookworm"; then
    root=$(mktemp -d /var/tmp/poselift-rootfs.XXXXXX)
    trap 'rm -rf "$root"' EXIT
    echo "debootstrap bookworm (minbase) into $root"
    debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$MIRROR" >/dev/null
    for dir in /usr/local/share/ca-certificates; do
        [ -d "$dir" ] && cp -a "$dir/." "$root/usr/local/share/ca-certificates/"
    done
    chroot "$root" update-ca-certificates >/dev/null 2>&1
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
    tar -C "$root" -c . | podman import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
        --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        --change 'CMD ["bash"]' - "$PREFIX/debian:bookworm" >/dev/null 2>&1
    rm -rf "$root"
    trap - EXIT
fi

standin() {  # standin NAME CONTAINERFILE: build one stand-in from the Debian base
    if ! have "$PREFIX/$1"; then
        echo "building $PREFIX/$1"
        podman build --network=host --build-arg "BASE=$PREFIX/debian:bookworm" -t "$PREFIX/$1" \
            -f "$here/$2" "$here" >/dev/null
    fi
}
standin python:3.11 Containerfile.python
standin redis:7 Containerfile.redis
standin nginx:1 Containerfile.nginx
podman images --filter "reference=$PREFIX/*" --format '{{.Repository}}:{{.Tag}} {{.Size}}'
