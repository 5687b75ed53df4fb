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
  mount             # losetup, mount: loop devices as cards in the flash tests
  busybox-static    # the image of the smoke stack (no registry here)
  curl              # bench/preflight's anchor: the same API reads as a loop of curl
  python3           # provision-self-join (join: self) runs in the self-join tests
  ca-certificates   # with openssl: the image's native update-ca-certificates is compared with the system's
  make
  # Pi images and cards, all without mounting: ext4, FAT, partition tables,
  # block maps, .xz bases.
  e2fsprogs         # mke2fs -d, debugfs, dumpe2fs, e2fsck
  dosfstools        # mkfs.vfat for synthetic bases, fsck.fat -n
  mtools            # mcopy/mtype on FAT partitions inside images
  fdisk             # sfdisk: the flash tests' partition tables
  bmap-tools        # bmaptool create/copy: block maps, and bench/flash's anchor
  xz-utils          # .xz base images
  # Raspberry Pi golden image: `make golden` builds the arm64 tree with
  # mmdebstrap under qemu-user (binfmt_misc; arch-test checks it) ...
  mmdebstrap
  arch-test
  qemu-user-static
  binfmt-support
  debian-archive-keyring
  # ... and `make golden-test` boots it under qemu's arm64 virt machine.
  qemu-system-arm
  # Netboot roots: a qcow2 overlay per Pi over the golden image, served by
  # qemu-nbd; the tests read and write the exports with nbdcopy/nbdinfo.
  qemu-utils        # qemu-img, qemu-nbd
  libnbd-bin        # nbdcopy, nbdinfo
  shellcheck        # internal/ci: the workflows' run: scripts
  # Netboot: real TFTP clients against provision's TFTP server, and
  # bench/tftp's anchor (dnsmasq's TFTP server).
  tftp-hpa
  dnsmasq-base
  nmap              # bench/discover's anchor: nmap -sT on the same loopback range
  # Bring your own node: the emulated host is a Debian root booted by
  # systemd-nspawn; the test mirror repacks installed packages.
  systemd-container
  dpkg-repack
  # bench/hosts' anchor: an Ansible play (ansible.posix's profile_tasks
  # times it) against a second emulated host, whose python3 comes from the
  # bench's mirror: python3-apt is repacked into it from this machine.
  ansible
  python3-apt
)
if [ "${PROVISION_SKIP_APT_UPDATE:-}" != 1 ]; then
  apt-get update
fi
apt-get install -y --no-install-recommends "${packages[@]}"
# The lab mirror's test takes the packages a host needs from .deb files on
# this machine: installed ones are repacked, these two are not installed
# here, so their .debs are downloaded into a directory of provision's own
# (not /var/cache/apt/archives, which apt configurations such as Debian
# container images' docker-clean empty after every dpkg run).
debs=/var/cache/provision/debs
mkdir -p "$debs/partial"
apt-get install -y --download-only --no-install-recommends \
  -o Dir::Cache::archives="$debs" chrony ipvsadm
# The emulated BYO host's root file system (internal/hosts/hostlab), made
# once and cached: Debian bookworm with systemd, sshd and iproute2, no Docker.
hostroot=/var/cache/provision/hostlab-bookworm-amd64.tar
if [ "$(dpkg --print-architecture)" = amd64 ] && [ ! -s "$hostroot" ]; then
  mkdir -p "$(dirname "$hostroot")"
  mmdebstrap --quiet --variant=apt --include=systemd,systemd-sysv,dbus,openssh-server,iproute2 \
    bookworm "$hostroot.tmp" && mv "$hostroot.tmp" "$hostroot"
fi
# Terraform is not a Debian package: the terraform tests use the binary on
# PATH (or $PROVISION_TERRAFORM) and fail under CI without one.
if ! command -v "${PROVISION_TERRAFORM:-terraform}" >/dev/null; then
  echo "install-deps: no terraform on PATH: install Terraform >= 1.6 (https://developer.hashicorp.com/terraform/install) for the terraform tests and provision vms" >&2
fi
