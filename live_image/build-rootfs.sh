#!/bin/sh
# Step 1: debootstrap a minimal Debian tree with the recipe's packages.
# usage: build-rootfs.sh ROOT MIRROR SUITE PACKAGES(comma-separated) DEB_CACHE
# minbase + --include (no Recommends): the smallest tree that still boots systemd.
# The .deb cache outlives builds, so a recipe change re-downloads only what changed.
set -eu
root=$1
mirror=$2
suite=$3
packages=$4
deb_cache=$5

mkdir -p "$deb_cache"
export LC_ALL=C DEBIAN_FRONTEND=noninteractive
debootstrap --variant=minbase --arch=amd64 --components=main \
    --cache-dir="$deb_cache" --include="$packages" \
    "$suite" "$root" "$mirror"
