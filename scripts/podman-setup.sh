#!/usr/bin/env bash
# Make rootful podman usable on Debian 12 hosts like the build machines: the runc runtime (crun refuses
# hybrid cgroups) and ulimits that systemd-in-a-container services (PostgreSQL, sshd) can live with.
# Idempotent: leaves an existing setting alone and says so.
set -euo pipefail
conf=/etc/containers/containers.conf
if [ -f "$conf" ] && grep -q 'gdx: managed' "$conf"; then exit 0; fi
if [ -f "$conf" ] && [ -s "$conf" ]; then
  echo "podman-setup: $conf exists and is not ours; leaving it alone." >&2
  echo "podman-setup: it needs [engine] runtime = \"runc\" and [containers] default_ulimits nofile/nproc." >&2
  exit 0
fi
mkdir -p "$(dirname "$conf")"
cat >"$conf" <<'CONF'
# gdx: managed by scripts/podman-setup.sh
[containers]
default_ulimits = ["nofile=10000:10000", "nproc=10000:10000"]

[engine]
runtime = "runc"
CONF
echo "podman-setup: wrote $conf"
