#!/bin/sh
# What the container test needs on a Debian/Ubuntu machine, as root: podman with runc (crun cannot start
# containers on some VMs), debootstrap for the locally made base images, the CNI
# dnsname plugin (containers find each other by service name), and python3-venv for the tools venv
# that carries podman-compose >= 1.1. Idempotent; a no-op when everything is present.
set -eu
missing=""
for pair in podman:podman runc:runc debootstrap:debootstrap slirp4netns:slirp4netns; do
    tool=${pair%%:*}; deb=${pair##*:}
    command -v "$tool" >/dev/null 2>&1 || test -x "/usr/sbin/$tool" || missing="$missing $deb"
done
# Compose's service names (redis, lifter) resolve inside the project network through CNI's dnsname plugin.
test -x /usr/lib/cni/dnsname || missing="$missing golang-github-containernetworking-plugin-dnsname"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: missing$missing; the container test will skip (as root: apt-get install$missing)" >&2
    exit 0
fi
echo "installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt="apt-get -o DPkg::Lock::Timeout=600 -y -q"  # another install may hold the lock
# shellcheck disable=SC2086
$apt install --no-install-recommends $missing >/dev/null 2>&1 || {
    $apt update >/dev/null 2>&1
    $apt install --no-install-recommends $missing >/dev/null
}
