#!/usr/bin/env bash
# Recipe of the lab/molecule node image `localhost/gpufleet-node:bookworm`.
# scripts/bootstrap hashes this file; the image carries the hash as the label
# `io.gpufleet.recipe`, and is rebuilt only when this file changes.
#
# Usage: recipe.sh ROOTFS   (runs as root; writes a Debian 12 root filesystem)
set -euo pipefail
rootfs=${1:?usage: recipe.sh ROOTFS}
mirror=${GPUFLEET_DEBIAN_MIRROR:-http://deb.debian.org/debian}

# systemd as PID 1, sshd, python3 for Ansible, sudo and iproute2 as on a real
# server, ca-certificates and gnupg so roles can add signed repositories.
packages=python3,python3-apt,openssh-server,systemd,systemd-sysv,dbus,sudo,iproute2,ca-certificates,gnupg,procps,iputils-ping,less,netbase,kmod

debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$mirror"

cat > "$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
SOURCES

# Each container gets its own machine-id and SSH host keys on first boot, the
# way a freshly installed server does.
: > "$rootfs/etc/machine-id"
rm -f "$rootfs"/etc/ssh/ssh_host_*
mkdir -p "$rootfs/etc/systemd/system/ssh.service.d"
cat > "$rootfs/etc/systemd/system/ssh.service.d/10-hostkeys.conf" <<'UNIT'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
UNIT

# Units that make no sense in a container and slow its boot. systemd-sysctl is masked for
# safety: these containers are privileged, /proc/sys is writable, and kernel.* or vm.*
# settings a role persists under /etc/sysctl.d would otherwise be applied to the HOST
# kernel at every boot of a node (hardening_os checks persisted files in containers).
for unit in systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
            systemd-modules-load.service sys-kernel-config.mount getty@tty1.service \
            console-getty.service systemd-remount-fs.service systemd-sysctl.service; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done

# /sys read-only, as systemd's container interface asks (systemd.io/CONTAINER_INTERFACE): the
# containers are privileged, so podman mounts it read-write, and systemd-networkd (which the
# fabric_rails role uses for the rails) then waits for a udev that is masked above and never
# initialises a link. A read-only bind remount changes this container's mount only.
cat > "$rootfs/etc/systemd/system/gpufleet-sysfs-ro.service" <<'UNIT'
[Unit]
Description=Mount /sys read-only, as in any container (systemd's container interface)
DefaultDependencies=no
Before=sysinit.target systemd-networkd.service
ConditionPathIsReadWrite=/sys

[Service]
Type=oneshot
ExecStart=/bin/mount -o remount,bind,ro /sys
RemainAfterExit=yes

[Install]
WantedBy=sysinit.target
UNIT
mkdir -p "$rootfs/etc/systemd/system/sysinit.target.wants"
ln -sf ../gpufleet-sysfs-ro.service "$rootfs/etc/systemd/system/sysinit.target.wants/gpufleet-sysfs-ro.service"

# Keep the image small: no docs or caches. The apt lists stay, as on a freshly
# installed server.
rm -rf "$rootfs"/var/cache/apt/*.bin "$rootfs"/usr/share/doc/* \
       "$rootfs"/usr/share/man/*
