package rootfs

import (
	"fmt"
	"sort"
	"strings"
)

// Hook scripts for mmdebstrap's --hook-dir: mmdebstrap runs each
// essential* script after the Essential packages are installed and each
// customize* script after the rest, with the root directory as "$1". They
// run on the host; commands for the tree go through chroot (emulated).

// divertInitramfs holds back initramfs generation while apt installs the
// kernel: under qemu-user, update-initramfs with its default MODULES=most
// took 46 minutes here (modinfo of every module, emulated). The diversion
// is removed again in the customize hook, before the one real run.
//
// update-ca-certificates is held back the same way: ca-certificates' postinst
// and its trigger each run it, and it forks sed, basename and ln for every
// certificate, about two minutes of emulated processes per build here. The
// customize hook runs it once, natively (caCertificatesHook).
const divertInitramfs = `#!/bin/sh
# provision: hold back update-initramfs and update-ca-certificates during
# the emulated install.
set -eu
for p in /usr/sbin/update-initramfs /usr/sbin/update-ca-certificates; do
	chroot "$1" dpkg-divert --quiet --local --rename --divert "$p.provision" --add "$p"
	ln -s /bin/true "$1$p"
done
`

// caCertificatesHook restores update-ca-certificates and runs the tree's
// own script once with the host's shell and tools on the tree's files
// (what the postinst's two emulated runs would have made: the .pem links,
// the bundle and the hash links), then points the links at the paths they
// have on the node. With hooks in update.d (ca-certificates-java, ...),
// which must run as the node's programs, it runs in the chroot instead.
const caCertificatesHook = `#!/bin/sh
# provision: update-ca-certificates once, natively.
set -eu
root="$1"
p=/usr/sbin/update-ca-certificates
rm -f "$root$p"
chroot "$root" dpkg-divert --quiet --local --rename --divert "$p.provision" --remove "$p"
if [ ! -e "$root$p" ] || [ ! -f "$root/etc/ca-certificates.conf" ]; then
	exit 0
fi
if [ -n "$(ls -A "$root/etc/ca-certificates/update.d" 2>/dev/null)" ]; then
	chroot "$root" update-ca-certificates
	exit 0
fi
sh "$root$p" --certsconf "$root/etc/ca-certificates.conf" \
	--certsdir "$root/usr/share/ca-certificates" \
	--localcertsdir "$root/usr/local/share/ca-certificates" \
	--etccertsdir "$root/etc/ssl/certs" --hooksdir ""
find "$root/etc/ssl/certs" -type l | while read -r l; do
	t=$(readlink "$l")
	case "$t" in
	"$root"/*) ln -sfn "${t#"$root"}" "$l" ;;
	esac
done
`

// hookFiles returns the hook scripts by file name, for o with defaults
// filled in.
func hookFiles(o *Options, modules []string) map[string]string {
	return map[string]string{
		"essential00-provision-divert-initramfs.sh": divertInitramfs,
		"customize05-provision-ca-certificates.sh":  caCertificatesHook,
		"customize10-provision-initramfs.sh":        initramfsHook(modules),
		"customize20-provision-identity.sh":         identityHook(o.Hostname),
		"customize30-provision-cloud-init.sh":       cloudInitHook,
		"customize90-provision-clean.sh":            cleanHook,
	}
}

// initramfsHook restores update-initramfs and builds the initramfs of every
// installed kernel once, with only the listed modules (MODULES=list). The
// settings stay in the tree, so later kernel updates on the node build the
// same small initramfs.
func initramfsHook(modules []string) string {
	var b strings.Builder
	b.WriteString(`#!/bin/sh
# provision: one initramfs with a short module list (MODULES=list).
set -eu
root="$1"
p=/usr/sbin/update-initramfs
rm -f "$root$p"
chroot "$root" dpkg-divert --quiet --local --rename --divert "$p.provision" --remove "$p"
cat >"$root/etc/initramfs-tools/conf.d/provision.conf" <<'END'
# Written by provision: only the modules in /etc/initramfs-tools/modules
# (and their dependencies). The default, MODULES=most, makes a 40 MB
# initramfs and took 46 minutes to build under emulation.
MODULES=list
END
cat >"$root/etc/initramfs-tools/modules" <<'END'
# Written by provision (internal/rpi/rootfs): what a Raspberry Pi 4 needs to
# find its root on SD, USB or NBD, and qemu's virt machine on virtio.
`)
	for _, m := range modules {
		b.WriteString(m)
		b.WriteByte('\n')
	}
	b.WriteString(`END
# nbd-client's hooks add every network driver (auto_add_modules net: many
# minutes under emulation); a lean one adds nbd-client and the nbd module,
# the Pi 4's Ethernet driver being in the list above. Its local-top script
# (nbdroot= on the kernel command line) comes in as shipped.
off=/usr/share/provision/initramfs-hooks-off
for h in nbd nbd-client; do
	if [ -e "$root/usr/share/initramfs-tools/hooks/$h" ]; then
		mkdir -p "$root$off"
		chroot "$root" dpkg-divert --quiet --local --rename --divert "$off/$h" --add "/usr/share/initramfs-tools/hooks/$h"
	fi
done
if [ -e "$root/usr/sbin/nbd-client" ] || [ -e "$root/sbin/nbd-client" ]; then
	mkdir -p "$root/etc/initramfs-tools/hooks"
	cat >"$root/etc/initramfs-tools/hooks/provision-nbd" <<'END'
#!/bin/sh
# Written by provision: nbd-client's initramfs hook without
# "auto_add_modules net" (the network driver is in the module list).
case "$1" in prereqs) exit 0 ;; esac
. /usr/share/initramfs-tools/hook-functions
manual_add_modules nbd
copy_exec /sbin/nbd-client /sbin
END
	chmod 755 "$root/etc/initramfs-tools/hooks/provision-nbd"
fi
chroot "$root" update-initramfs -c -k all
`)
	return b.String()
}

// identityHook leaves nothing that must differ between nodes: no
// machine-id (systemd makes one at first boot), no SSH host keys
// (cloud-init makes them), no docker engine identity, and a placeholder
// hostname until cloud-init sets the node's.
func identityHook(hostname string) string {
	return fmt.Sprintf(`#!/bin/sh
# provision: nothing per node in the golden image.
set -eu
root="$1"
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
rm -f "$root"/etc/ssh/ssh_host_*
rm -f "$root/etc/docker/key.json" "$root/var/lib/docker/engine-id"
rm -rf "$root/var/lib/docker/swarm"
echo %[1]s >"$root/etc/hostname"
cat >"$root/etc/hosts" <<'END'
127.0.0.1	localhost
127.0.1.1	%[1]s
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
END
ln -sfn ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
`, hostname)
}

// cloudInitHook pins cloud-init to the seed it is given: with its default
// datasource list it probes 169.254.169.254 and others for minutes when no
// seed is found, on a Pi as under qemu.
const cloudInitHook = `#!/bin/sh
# provision: cloud-init reads NoCloud seeds only.
set -eu
cat >"$1/etc/cloud/cloud.cfg.d/90-provision-datasource.cfg" <<'END'
# Written by provision: the node's seed is a NoCloud seed (boot partition,
# a CIDATA disk or /var/lib/cloud/seed/nocloud); never probe a metadata
# service.
datasource_list: [ NoCloud, None ]
END
`

// cleanHook removes caches, logs and other files that differ from build to
// build without meaning anything (mmdebstrap then removes the apt lists
// and archives, dpkg and apt logs, and /run).
const cleanHook = `#!/bin/sh
# provision: no caches or logs in the image.
set -eu
root="$1"
# dpkg's log says where the build's time went: kept outside the image.
if [ -n "${PROVISION_DPKG_LOG:-}" ] && [ -f "$root/var/log/dpkg.log" ]; then
	cp "$root/var/log/dpkg.log" "$PROVISION_DPKG_LOG"
fi
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
rm -f "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old
rm -f "$root"/var/log/*.log "$root"/var/log/apt/*.log
rm -rf "$root"/var/log/journal/* "$root"/var/tmp/* "$root"/tmp/*
rm -f "$root/etc/ssh/sshd_config.ucf-old"
`

// hookNames returns the hook file names in the order mmdebstrap runs them
// within each phase.
func hookNames(h map[string]string) []string {
	names := make([]string, 0, len(h))
	for n := range h {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
