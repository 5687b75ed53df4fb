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
  curl              # bench/preflight's anchor: the same API reads as a loop of curl
  e2fsprogs         # Pi images: mke2fs -d, debugfs, dumpe2fs, e2fsck (no mount)
  dosfstools        # Pi image tests: mkfs.vfat for synthetic bases, fsck.fat -n
  mtools            # Pi image tests: mcopy/mtype on FAT partitions inside images
  bmap-tools        # Pi image tests: bmaptool copy with provision's block map
  xz-utils          # Pi image tests: .xz base images
  ca-certificates
  make
  bmap-tools        # bmaptool create/copy: the flash tests' block maps and bench/flash's anchor
  dosfstools        # mkfs.vfat, fsck.fat: the flash tests' boot partitions and their check
  e2fsprogs         # mke2fs -d, e2fsck: the flash tests' root filesystems
  fdisk             # sfdisk: the flash tests' partition tables
  mount             # losetup, mount: loop devices as cards in the flash tests
)
if [ "${PROVISION_SKIP_APT_UPDATE:-}" != 1 ]; then
  apt-get update
fi
apt-get install -y --no-install-recommends "${packages[@]}"
# Terraform is not a Debian package: the terraform tests use the binary on
# PATH (or $PROVISION_TERRAFORM) and fail under CI without one.
if ! command -v "${PROVISION_TERRAFORM:-terraform}" >/dev/null; then
  echo "install-deps: no terraform on PATH: install Terraform >= 1.6 (https://developer.hashicorp.com/terraform/install) for the terraform tests and provision vms" >&2
fi
