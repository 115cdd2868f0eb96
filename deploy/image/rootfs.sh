#!/usr/bin/env bash
# Assembles the pptpgw image's root filesystem in ROOTFS from Debian packages (deploy/image/packages)
# and the project's own files. The one recipe for both ways of building the image: `cargo xtask
# image` (no registry: an OCI archive) and the Dockerfile's build stage (FROM scratch after it).
#
# usage: rootfs.sh ROOTFS PPTPGW_BINARY [SUITE [MIRROR]]
# SUITE defaults to the building system's Debian release: the binary needs the C library it was
# linked against, and that is the one of the system that built it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
top="$(cd "$here/../.." && pwd)"
rootfs="$1"
binary="$2"
# shellcheck disable=SC1091
suite="${3:-$(. /etc/os-release && echo "$VERSION_CODENAME")}"
mirror="${4:-http://deb.debian.org/debian}"
packages="$(grep -v '^\s*#' "$here/packages" | grep -v '^\s*$' | paste -sd, -)"

rm -rf "$rootfs"
# extract: unpack the listed packages only (no Essential set, no dpkg, no shell); documentation,
# manuals and locales are not unpacked at all. stdin is closed so the mirror argument is used.
mmdebstrap --quiet --mode=root --variant=extract --include="$packages" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  "$suite" "$rootfs" "$mirror" </dev/null
# Not runtime content: the archive's bookkeeping, the apt cache, the device nodes and host files
# mmdebstrap sets up (the container runtime provides /dev, resolv.conf and the hostname), and
# iconv's gconv modules (pptpgw converts no character sets).
rm -rf "$rootfs"/var "$rootfs"/etc/apt "$rootfs"/etc/dpkg "$rootfs"/etc/fstab \
  "$rootfs"/etc/hostname "$rootfs"/etc/resolv.conf "$rootfs"/dev/* \
  "$rootfs"/usr/share/doc "$rootfs"/usr/share/man "$rootfs"/usr/share/locale \
  "$rootfs"/usr/share/lintian "$rootfs"/usr/share/info \
  "$rootfs"/usr/lib/x86_64-linux-gnu/gconv "$rootfs"/lib/x86_64-linux-gnu/gconv

install -D -m 0755 "$binary" "$rootfs/usr/local/bin/pptpgw"
install -D -m 0644 "$top/config/pptpgw.toml" "$rootfs/etc/pptpgw/pptpgw.toml"
# The control API socket's directory; secrets are mounted at /etc/ppp (see deploy/kubernetes).
install -d -m 0755 "$rootfs/run/pptpgw" "$rootfs/etc/ppp" "$rootfs/tmp" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev"
chmod 1777 "$rootfs/tmp"
