#!/bin/sh
# Step 3: the small initrd: Debian's static busybox, the init script, and the NIC,
# loop, squashfs and overlay modules (with their dependencies) from the live root.
# Needs on the build machine: cpio, zstd, awk, chroot, mknod.
# usage: build-initrd.sh RECIPE ROOT OUT   -> OUT/initrd.img (zstd-compressed newc cpio)
set -eu
# Absolute paths: some steps run from other directories.
recipe=$(cd "$1" && pwd)
root=$(cd "$2" && pwd)
out=$(cd "$3" && pwd)
umask 022

# shellcheck disable=SC2012 # one kernel, a plain version string
kver=$(ls "$root/lib/modules")
tree="$out/initrd.tree"
rm -rf "$tree"
mkdir -p "$tree/bin" "$tree/sbin" "$tree/usr/bin" "$tree/usr/sbin" "$tree/dev" "$tree/proc" \
    "$tree/sys" "$tree/run" "$tree/newroot" "$tree/etc/vet" "$tree/lib/modules"

# busybox-static from the live root: its version is pinned with the image's packages.
cp "$root/bin/busybox" "$tree/bin/busybox"
# It must run with no libraries at all: try it inside the bare tree.
chroot "$tree" /bin/busybox true || {
    echo "$root/bin/busybox does not run without libraries (busybox-static expected)" >&2
    exit 1
}
for applet in $(chroot "$tree" /bin/busybox --list-full); do
    [ -e "$tree/$applet" ] || ln -s /bin/busybox "$tree/$applet"
done
# The kernel opens /dev/console for init before anything is mounted.
mknod -m 600 "$tree/dev/console" c 5 1
mknod -m 666 "$tree/dev/null" c 1 3

install -m 0755 "$recipe/initrd/init" "$tree/init"
install -m 0755 "$recipe/initrd/udhcpc.script" "$tree/etc/vet/udhcpc.script"

# The modules and their dependencies (resolved by the image's own modprobe), plus a
# modules.dep and modules.alias cut down to them: busybox modprobe in the initrd then
# loads just the drivers for the hardware that is there, by modalias.
moddir="$tree/lib/modules/$kver"
: >"$tree/etc/vet/modules.wanted"
grep -v -e '^#' -e '^[[:space:]]*$' "$recipe/initrd-modules.txt" | while read -r module; do
    if ! deps=$(LC_ALL=C chroot "$root" modprobe --show-depends --set-version="$kver" "$module"); then
        echo "initrd-modules.txt: module $module is not in kernel $kver" >&2
        exit 1
    fi
    echo "$module" >>"$tree/etc/vet/modules.wanted"
    echo "$deps" | while read -r kind path _; do
        [ "$kind" = insmod ] || continue  # "builtin NAME": compiled into the kernel
        rel=${path#/lib/modules/"$kver"/}
        mkdir -p "$moddir/${rel%/*}"
        cp "$root$path" "$moddir/$rel"
    done
done
(cd "$moddir" && find kernel -name '*.ko' | LC_ALL=C sort) >"$out/initrd.ko"
# modules.dep lines are "kernel/x.ko: kernel/dep.ko ..."; aliases name modules with "_".
awk -F: 'NR == FNR { want[$0] = 1; next } ($1 in want)' "$out/initrd.ko" \
    "$root/lib/modules/$kver/modules.dep" >"$moddir/modules.dep"
sed 's|.*/||; s|\.ko$||; s|-|_|g' "$out/initrd.ko" >"$out/initrd.names"
awk 'NR == FNR { want[$0] = 1; next } $1 == "alias" && ($3 in want)' "$out/initrd.names" \
    "$root/lib/modules/$kver/modules.alias" >"$moddir/modules.alias"
echo "initrd modules: $(wc -l <"$out/initrd.ko") ($(wc -l <"$moddir/modules.alias") aliases)"
rm -f "$out/initrd.ko" "$out/initrd.names"

# Sorted, owned by root, fixed mtimes: the same inputs give the same archive.
find "$tree" -exec touch -h -d @0 {} +
(cd "$tree" && find . -mindepth 1 | LC_ALL=C sort |
    cpio -o -H newc -R 0:0 --reproducible --quiet) | zstd -q -19 -T0 >"$out/initrd.img"
rm -rf "$tree"
echo "initrd: $(($(wc -c <"$out/initrd.img") / 1024)) KiB"
