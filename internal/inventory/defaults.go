package inventory

// Defaults from the field reports the lab was designed on; see
// ../shared/reference/swarm-and-host-tuning.md for the sources.
const (
	DefaultAddrPool           = "10.128.0.0/12"
	DefaultAddrPoolMaskLength = 16
	DefaultBridgePool         = "172.16.0.0/12"
	DefaultBridgePoolSize     = 24
)

// SetDefaults fills every field the admin left empty.
func (l *Lab) SetDefaults() {
	setDefault(&l.SSH.User, "provision")
	setDefault(&l.SSH.PrivateKeyFile, "~/.ssh/id_ed25519")
	setDefault(&l.SSH.Port, 22)
	if len(l.Network.NTP) == 0 && l.Network.Gateway != "" {
		l.Network.NTP = []string{l.Network.Gateway}
	}
	if len(l.Network.DNS) == 0 && l.Network.Gateway != "" {
		l.Network.DNS = []string{l.Network.Gateway}
	}

	if len(l.Swarm.DefaultAddrPool) == 0 {
		l.Swarm.DefaultAddrPool = []string{DefaultAddrPool}
	}
	setDefault(&l.Swarm.DefaultAddrPoolMaskLength, DefaultAddrPoolMaskLength)

	t := &l.HostTuning
	setDefault(&t.Keepalive.Time, 600)
	setDefault(&t.Keepalive.Interval, 60)
	setDefault(&t.Keepalive.Probes, 5)
	setDefault(&t.Neighbour.GCThresh1, 4096)
	setDefault(&t.Neighbour.GCThresh2, 8192)
	setDefault(&t.Neighbour.GCThresh3, 8192)
	setDefault(&t.IPVS.TCPTimeout, 7300)
	setDefault(&t.IPVS.Interval, "5min")
	setDefault(&t.LinkPolicy.MACAddressPolicy, "none")
	if len(t.LinkPolicy.Drivers) == 0 {
		t.LinkPolicy.Drivers = []string{"bridge", "bonding", "veth"}
	}
	setDefault(&t.Docker.Package, "docker.io")
	setDefault(&t.Docker.LogDriver, "json-file")
	setDefault(&t.Docker.LogMaxSize, "10m")
	setDefault(&t.Docker.LogMaxFile, 3)
	setDefault(&t.Docker.TasksMax, "infinity")
	setDefault(&t.Docker.LimitNPROC, "infinity")
	setDefault(&t.Docker.LimitNOFILE, "1048576")
	if len(t.Docker.AddressPools) == 0 {
		t.Docker.AddressPools = []AddressPool{{Base: DefaultBridgePool, Size: DefaultBridgePoolSize}}
	}
	setDefault(&t.Limits.PIDMax, 4194304)
	setDefault(&t.Limits.InotifyMaxWatches, 524288)
	setDefault(&t.Limits.InotifyMaxInstances, 8192)
	setDefault(&t.Limits.FileMax, 2097152)
	setDefault(&t.Zram.Percent, 50)
	setDefault(&t.Zram.Algorithm, "zstd")
	setDefault(&t.Timezone, "Etc/UTC")

	if p := l.Proxmox; p != nil {
		setDefault(&p.TokenIDEnv, "PM_API_TOKEN_ID")
		setDefault(&p.TokenSecretEnv, "PM_API_TOKEN_SECRET")
		setDefault(&p.Storage, "local-lvm")
		setDefault(&p.SnippetsStorage, "local")
		setDefault(&p.SnippetsDir, "/var/lib/vz/snippets")
		setDefault(&p.SSHUser, "root")
		setDefault(&p.Bridge, "vmbr0")
		setDefault(&p.VMIDStart, 1000)
		for i := range p.Nodes {
			setDefault(&p.Nodes[i].Address, p.Nodes[i].Name)
		}
		for i := range p.VMs {
			g := &p.VMs[i]
			setDefault(&g.Role, Worker)
			setDefault(&g.Count, 1)
			setDefault(&g.Cores, 2)
			setDefault(&g.Memory, 2048)
			setDefault(&g.Disk, "16G")
		}
	}
	for i := range l.Hosts {
		h := &l.Hosts[i]
		setDefault(&h.SSHUser, l.SSH.User)
		setDefault(&h.SSHPort, l.SSH.Port)
		setDefault(&h.Role, Worker)
		setDefault(&h.Arch, "amd64")
	}
	if p := l.Pis; p != nil {
		setDefault(&p.JoinServer.Port, DefaultJoinPort)
		setDefault(&p.JoinServer.TicketTTL, DefaultJoinTicketTTL)
		for i := range p.Racks {
			r := &p.Racks[i]
			setDefault(&r.Role, Worker)
			setDefault(&r.Boot, BootSD)
			setDefault(&r.Join, JoinPush)
			if r.Name != "" {
				setDefault(&r.Pattern, "pi-"+r.Name+"-%02d")
			}
		}
	}
}

func setDefault[T comparable](field *T, value T) {
	var zero T
	if *field == zero {
		*field = value
	}
}
