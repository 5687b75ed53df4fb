#!/usr/bin/env bash
# Installs the Debian packages provision's tests and demo use. Needs root.
# Idempotent: apt-get skips what is already installed.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: needs root (apt-get install); run: sudo $0" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
packages=(
  cloud-init        # `cloud-init schema` checks every rendered user-data
  netplan.io        # `netplan generate` checks every rendered network-config
  openssh-server    # real sshd for the SSH, SFTP and emulated-lab tests
  docker.io         # real dockerd per emulated node, and the docker CLI
  iproute2          # network namespaces, bridges, veths
  util-linux        # nsenter, unshare
  busybox-static    # the image of the smoke stack (no registry here)
  make
)
if [ "${PROVISION_SKIP_APT_UPDATE:-}" != 1 ]; then
  apt-get update
fi
apt-get install -y --no-install-recommends "${packages[@]}"
