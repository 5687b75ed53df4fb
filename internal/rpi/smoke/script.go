package smoke

import (
	"fmt"
	"strings"

	"github.com/fhlab/provision/internal/render"
)

// Marker starts every line the guest's check script prints.
const Marker = "SMOKE "

// The guest's check script and its unit, installed by the seed's
// user-data. The unit starts after cloud-init's last stage, prints
// "SMOKE key=value" lines on the console and powers the guest off.
const (
	ScriptPath = "/usr/local/sbin/provision-smoke"
	UnitName   = "provision-smoke.service"
)

const unit = `[Unit]
Description=provision smoke boot: check the node and power off
After=cloud-final.service docker.service multi-user.target

[Service]
Type=oneshot
ExecStart=` + ScriptPath + `
StandardOutput=journal+console
StandardError=journal+console
`

// Script is the guest's check script for node d: it prints the values
// Checks(d) judge. The keys it prints are exactly the checks' keys.
func Script(d *render.Data) string {
	var b strings.Builder
	b.WriteString(`#!/bin/sh
# provision smoke boot: print what the node looks like, then power off.
set -u
say() { printf 'SMOKE %s=%s\n' "$1" "$(printf '%s' "$2" | tr '\n\r' '  ')"; }
say begin "$(date -u +%FT%TZ)"
cloud-init status --wait >/dev/null 2>&1
say cloud_init "$(cloud-init status 2>/dev/null | sed -n 's/^status: //p')"
say hostname "$(hostname)"
if [ -s /etc/machine-id ]; then say machine_id set; else say machine_id empty; fi
`)
	// The account provision logs in as: cloud-init made it, with its keys
	// (ssh.user is a plain login name: the inventory checks it).
	fmt.Fprintf(&b, "say ssh_user \"$(id -nG %[1]s 2>&1)\"\n", d.SSH.User)
	fmt.Fprintf(&b, "say ssh_user_keys \"$(grep -c . \"$(getent passwd %[1]s | cut -d: -f6)/.ssh/authorized_keys\" 2>&1)\"\n", d.SSH.User)
	for _, kv := range Sysctls(d) {
		fmt.Fprintf(&b, "say sysctl.%[1]s \"$(sysctl -n %[1]s 2>&1 | tr '\\t' ' ')\"\n", kv[0])
	}
	fmt.Fprintf(&b, `if [ -f %[1]s ]; then say link_file present; else say link_file missing; fi
linkfile() { udevadm info --query=property "/sys/class/net/$1" 2>&1 | sed -n 's/^ID_NET_LINK_FILE=//p'; }
for i in $(seq 60); do systemctl is-active -q docker.service && [ -e /sys/class/net/docker0 ] && break; sleep 2; done
say docker_active "$(systemctl is-active docker.service)"
say docker_info "$(timeout 120 docker info --format '{{.ServerVersion}} {{.Driver}} cgroup{{.CgroupVersion}}' 2>&1 | head -n 1)"
say docker_log_driver "$(timeout 60 docker info --format '{{.LoggingDriver}}' 2>&1 | head -n 1)"
say docker_limit_nofile "$(systemctl show -p LimitNOFILE --value docker.service)"
udevadm settle -t 30
say link_file.docker0 "$(linkfile docker0)"
ip link add smoke-veth0 type veth peer name smoke-veth1
udevadm settle -t 30
say link_file.veth "$(linkfile smoke-veth0)"
ip link del smoke-veth0
say ipvs_timer "$(systemctl is-enabled provision-netns-tuning.timer 2>&1) $(systemctl is-active provision-netns-tuning.timer 2>&1)"
if [ -e /proc/net/ip_vs ]; then say ipvs_loaded_before yes; else say ipvs_loaded_before no; fi
say ipvs_no_module "$(unshare -m sh -c 'mount -t tmpfs none /lib/modules && /usr/local/sbin/provision-netns-tuning' 2>&1 | head -n 1)"
# A network namespace where docker keeps its own, as a container's would be.
mkdir -p /run/docker/netns
ip netns add smoke
touch /run/docker/netns/smoke
mount --bind /run/netns/smoke /run/docker/netns/smoke
systemctl start provision-netns-tuning.service
say ipvs_service "$(systemctl show -p Result --value provision-netns-tuning.service)"
# The script's own report, from a second run (it is idempotent), and what
# the journal kept of the service's run.
say ipvs_log "$(/usr/local/sbin/provision-netns-tuning 2>&1 | grep '^provision-netns-tuning: tuned' | tail -n 1)"
# journald reads a service's stdout stream on its own time (slow under
# TCG): ask it to sync and look again for a while before giving up.
for i in $(seq 10); do
	jl="$(journalctl -u provision-netns-tuning.service -o cat --no-pager -q 2>&1 | tail -n 2)"
	[ -n "$jl" ] && break
	journalctl --sync 2>/dev/null; sleep 2
done
say ipvs_journal "${jl:-nothing after 20 s}"
say netns_keepalive_time "$(ip netns exec smoke sysctl -n net.ipv4.tcp_keepalive_time)"
say netns_ipvs_timeout "$(ip netns exec smoke ipvsadm -L --timeout 2>&1 | sed -n 's/^Timeout (tcp tcpfin udp): \([0-9]*\) .*/\1/p')"
umount /run/docker/netns/smoke; rm -f /run/docker/netns/smoke; ip netns del smoke
`, LinkFile)
	if d.IsPi {
		b.WriteString(`for i in $(seq 30); do grep -q zram /proc/swaps && break; sleep 2; done
say zram_swap "$(awk '$1 ~ /zram/ { print $1; exit }' /proc/swaps)"
say zram_algorithm "$(sed -n 's/.*\[\([^]]*\)\].*/\1/p' /sys/block/zram0/comp_algorithm 2>/dev/null)"
if grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then say memory_cgroup on; else say memory_cgroup off; fi
# What a netbooted Pi's initramfs needs to mount its root over NBD.
say initramfs_nbd "$(lsinitramfs /boot/initrd.img-$(uname -r) 2>&1 | grep -E '(^|/)sbin/nbd-client$|scripts/local-top/nbd$|/nbd\.ko' | sed 's|.*/||' | sort | tr '\n' ' ')"
`)
	}
	b.WriteString(`say failed_units "$(systemctl --failed --no-legend --plain | awk '{ print $1 }' | tr '\n' ' ')"
say done 1
systemctl poweroff
`)
	return b.String()
}
