#!/usr/bin/env bash
# Build the Debian 12 image that boots systemd, from Debian's own mirror with debootstrap: no image
# registry is needed. Front-end nodes in tests and in `make up` start from it.
#   scripts/build-base-image.sh [--force]     (about a minute; does nothing when the image exists)
set -euo pipefail
IMAGE=${GDX_BASE_IMAGE:-localhost/gdx-debian-systemd:bookworm}
MIRROR=${GDX_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=systemd,systemd-sysv,dbus,python3,python3-apt,openssh-server,iproute2,sudo,ca-certificates,locales

if [ "${1:-}" != "--force" ] && podman image exists "$IMAGE"; then
  exit 0
fi
command -v debootstrap >/dev/null || { echo "build-base-image: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
root=$(mktemp -d /var/tmp/gdx-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "build-base-image: debootstrap bookworm into $root (about a minute)"
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$root" "$MIRROR" >"$root.log" 2>&1 \
  || { tail -20 "$root.log" >&2; echo "build-base-image: debootstrap failed; full log: $root.log" >&2; exit 1; }
rm -f "$root.log"
# A container has no consoles or udev to wait for; and the image must not carry this build's machine id.
chroot "$root" systemctl mask getty@tty1.service console-getty.service systemd-udevd.service \
  systemd-remount-fs.service sys-kernel-config.mount >/dev/null 2>&1 || true
: >"$root/etc/machine-id"
rm -f "$root"/etc/ssh/ssh_host_*_key*
# Host keys are made on first boot, so that every container gets its own.
chroot "$root" systemctl enable ssh.service >/dev/null 2>&1 || true
mkdir -p "$root/etc/systemd/system/ssh.service.d"
cat >"$root/etc/systemd/system/ssh.service.d/gdx-hostkeys.conf" <<'UNIT'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
UNIT
# Package lists stay: roles install with a day-old cache without asking the mirror again.
rm -rf "$root"/var/cache/apt/archives/*.deb
tar -C "$root" -c . | podman import -q --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' - "$IMAGE" >/dev/null
echo "build-base-image: built $IMAGE"
