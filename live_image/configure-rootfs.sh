#!/bin/sh
# Step 2: turn the debootstrap tree into the live root, and take the kernel out of it.
# usage: configure-rootfs.sh RECIPE ROOT OUT
#   writes OUT/vmlinuz; ROOT becomes what root.squashfs will hold.
# Nothing here may leave a secret or a per-machine identity in the image: every boot
# gets its own machine id and SSH host key, and root has no password.
set -eu
# Absolute paths: some steps run from other directories.
recipe=$(cd "$1" && pwd)
root=$(cd "$2" && pwd)
out=$(cd "$3" && pwd)
umask 022
if [ "$root" = / ]; then
    echo "refusing to turn / into a live image" >&2
    exit 1
fi

# chroot runs the image's own tools (systemctl, depmod, modprobe): same versions as
# the image, whatever the build machine runs.
in_root() { LC_ALL=C chroot "$root" "$@"; }

# shellcheck disable=SC2012 # one kernel, a plain version string
kver=$(ls "$root/lib/modules")
case "$kver" in *' '* | '') echo "expected exactly one kernel in $root/lib/modules, found: $kver" >&2; exit 1 ;; esac
echo "kernel $kver"
cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"

# --- vet's own files (units, helpers, networkd, sshd and journald settings)
cp -R "$recipe/rootfs/." "$root/"
chown -R root:root "$root/usr/local" "$root/etc/systemd" "$root/etc/ssh/sshd_config.d"

# --- identity: nothing copied from the build machine, nothing shared between hosts
echo vet >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tvet\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
    >"$root/etc/hosts"
# No DNS on a vetting network (debootstrap copied the build machine's resolver).
: >"$root/etc/resolv.conf"
# Empty machine-id: systemd makes a fresh one each boot (not "first boot": no presets).
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root/var/lib/systemd/random-seed"
# The package scripts generated host keys: they would be shared by every host.
rm -f "$root"/etc/ssh/ssh_host_*
# Root: "*" = no password can ever match (SSH by key; the serial getty logs in itself).
sed -i 's/^root:[^:]*:/root:*:/' "$root/etc/shadow"

# --- systemd units
# rootfs/etc/systemd/system/ssh.service replaces Debian's unit: re-enable it so its
# links (and the sshd.service alias) point at vet's file.
in_root systemctl reenable ssh.service
in_root systemctl enable systemd-networkd.service vet-hostkeys.service vet-sshkey.service \
    vet-announce.service serial-getty@ttyS0.service
in_root systemctl set-default multi-user.target
# Slow or unwanted at boot on a throwaway RAM system: periodic maintenance, smartd
# (the SMART stage runs smartctl itself), NVMe-oF autoconnect, the interactive firstboot,
# edac-utils' init script (11 s under emulation; EDAC drivers load by modalias anyway),
# logind (no PAM session module uses it), the VGA login prompt (root has no password),
# binfmt, debugfs/tracefs/configfs/fusectl mounts: under emulation every unit started
# at boot costs CPU that the path to sshd waits for (a guest with one emulated CPU boots
# in about the sum of what it runs, not the longest chain). Also: D-Bus (its daemon
# took 12-16 s to start under emulation, and nothing vet runs needs it: systemctl talks
# to systemd directly, networkd works without it, the name stays /etc/hostname's), and
# one-shot units with nothing to do on a RAM root built here: the journal flush (the
# journal is volatile), the random seed (no seed survives a boot), sysusers (the
# packages created every user at build time; checked below), utmp records, pstore
# and repart (and the modprobe@ units they pull in), modules-load (no modules listed),
# the kernel-command-line network generator (the initrd did DHCP), hugepages/mqueue
# mounts and the remount of a root no fstab describes.
slow_units="apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer
e2scrub_reap.service fstrim.timer man-db.timer smartmontools.service smartd.service
nvmefc-boot-connections.service nvmf-autoconnect.service systemd-firstboot.service
remote-fs.target getty@tty1.service iperf3.service edac.service systemd-logind.service
systemd-binfmt.service proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount
sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount
sys-fs-fuse-connections.mount dbus.service dbus.socket systemd-journal-flush.service
systemd-random-seed.service systemd-sysusers.service systemd-update-utmp.service
systemd-update-utmp-runlevel.service systemd-pstore.service systemd-repart.service
systemd-modules-load.service systemd-network-generator.service dev-hugepages.mount
dev-mqueue.mount systemd-remount-fs.service"
for unit in $slow_units; do
    in_root systemctl disable "$unit" >/dev/null 2>&1 || true
done
rm -f "$root/etc/systemd/system/smartd.service"  # alias of smartmontools.service
# shellcheck disable=SC2086 # a list of unit names
in_root systemctl mask $slow_units
# With sysusers masked, the users the image's units run as must already be there.
for user in sshd systemd-network; do
    in_root getent passwd "$user" >/dev/null || {
        echo "user $user is missing from the image (systemd-sysusers is masked)" >&2
        exit 1
    }
done
# Generators run before any unit can start, one process each (twelve here): none has
# anything to do on this image (no fstab, no encrypted, verity or GPT-auto volumes, no
# SysV scripts wanted at boot, the serial getty enabled explicitly). A /dev/null link in
# /etc/systemd/system-generators masks one.
mkdir -p "$root/etc/systemd/system-generators"
for generator in "$root"/usr/lib/systemd/system-generators/*; do
    ln -sf /dev/null "$root/etc/systemd/system-generators/${generator##*/}"
done

# --- kernel modules: keep storage, NICs, EDAC, hwmon, IPMI; drop the rest
moddir="$root/lib/modules/$kver/kernel"
# The package's modules.dep, from before the cut, says what each module needs.
cp "$moddir/../modules.dep" "$out/modules.dep.orig"
grep -v -e '^#' -e '^[[:space:]]*$' "$recipe/modules-drop.txt" | while read -r dir; do
    case "$dir" in *..*) echo "modules-drop.txt: bad path $dir" >&2; exit 1 ;; esac
    if [ -e "$moddir/$dir" ]; then
        rm -rf "${moddir:?}/$dir"
    else
        echo "modules-drop.txt: $dir is not in kernel $kver (nothing to drop)"
    fi
done
# A kept module that needs a dropped one could never load: drop it too, and say so.
# (modules.dep lists every transitive dependency, so one pass finds them all.) The
# initrd's NIC drivers are checked again when the initrd is built: missing is fatal.
(cd "$moddir/.." && while IFS=: read -r module deps; do
    [ -e "$module" ] || continue
    for dep in $deps; do
        if [ ! -e "$dep" ]; then
            echo "$module"
            break
        fi
    done
done <"$out/modules.dep.orig") >"$out/modules.orphans"
echo "also dropped, as they need dropped modules: $(wc -l <"$out/modules.orphans") modules"
while read -r module; do
    echo "  $module"
    rm -f "$moddir/../$module"
done <"$out/modules.orphans"
rm -f "$out/modules.dep.orig" "$out/modules.orphans"
in_root depmod -a "$kver"

# --- trim: documentation, man pages, locales, package caches, the kernel's own initrd
# shellcheck disable=SC2115 # root is an absolute path and never "/" (checked above)
rm -rf "$root"/boot/* "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
    "$root"/var/lib/apt/lists/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/usr/share/locale/* "$root"/usr/share/lintian "$root"/usr/share/bug \
    "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/* "$root"/var/tmp/*
# udev's hardware database (descriptions for USB/input devices, 20 MiB): servers are
# vetted with lshw/lspci, which carry their own ID lists. Without the sources,
# systemd-hwdb-update has nothing to rebuild at boot.
rm -rf "$root"/usr/lib/udev/hwdb.bin "$root"/usr/lib/udev/hwdb.d "$root"/etc/udev/hwdb.bin
# Keep each package's copyright file: the image is a binary redistribution.
find "$root/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
echo "root filesystem: $(du -sm "$root" | cut -f1) MiB"
