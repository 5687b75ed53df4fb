package inventory_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/inventory"
)

// invalid lists every fixture in testdata/invalid: a small inventory with one
// kind of mistake, and the problem it must produce. file is "" for the
// inventory itself or a rack CSV relative to testdata/invalid; n is how many
// problems the fixture gives (one per node or check that trips on it).
var invalid = []struct {
	name  string
	file  string
	line  int
	field string
	msg   string
	n     int
}{
	// Duplicates.
	{"dup-hostname", "", 24, "proxmox.vms[2].name", "hostname wrk-1 of wrk-1 is also the hostname of wrk-1 (testdata/invalid/dup-hostname.yaml:23)", 1},
	{"dup-ip-vm-groups", "", 23, "proxmox.vms[1].ipStart", "address 192.168.10.13 of wrk-1 is also the address of mgr-3 (testdata/invalid/dup-ip-vm-groups.yaml:22)", 1},
	{"dup-ip-vm-rack", "", 26, "pis.racks[0].ipStart", "address 192.168.10.22 of pi-r1-01 is also the address of wrk-2 (testdata/invalid/dup-ip-vm-rack.yaml:23)", 1},
	{"dup-ip-racks", "", 27, "pis.racks[1].ipStart", "address 192.168.10.103 of pi-r2-01 is also the address of pi-r1-03 (testdata/invalid/dup-ip-racks.yaml:26)", 1},
	{"dup-mac", "racks/dup-mac.csv", 4, "mac", "MAC dc:a6:32:01:01:01 of pi-r1-02 is also the MAC of pi-r1-01 (testdata/invalid/racks/dup-mac.csv:3)", 1},
	{"dup-serial", "racks/dup-serial.csv", 5, "serial", "serial 1a2b0102 is listed twice (also line 4)", 1},
	{"dup-serial-racks", "racks/dup-serial-racks-r2.csv", 4, "serial", "serial 1a2b0102 of pi-r2-02 is also the serial of pi-r1-02 (testdata/invalid/racks/dup-serial-racks-r1.csv:4)", 1},
	{"host-dup-ip", "", 25, "hosts[0].address", "address 192.168.10.22 of gpu-1 is also the address of wrk-2 (testdata/invalid/host-dup-ip.yaml:23)", 1},
	{"host-dup-name", "", 25, "hosts[0].name", "hostname wrk-2 of wrk-2 is also the hostname of wrk-2 (testdata/invalid/host-dup-name.yaml:23)", 1},
	{"host-outside", "", 25, "hosts[0].address", "10.1.2.3 of gpu-1 is outside the network 192.168.10.0/24", 1},
	{"host-bad-fields", "", 25, "hosts[0].arch", `"x86_64": use amd64 or arm64`, 6},
	{"dup-vmid", "", 23, "proxmox.vms[1].vmidStart", "VMID 1002 of wrk-1 is also the VMID of mgr-3 (testdata/invalid/dup-vmid.yaml:22)", 1},

	// Addresses and networks.
	{"ip-outside-network", "", 23, "proxmox.vms[1].ipStart", "192.168.11.21 of wrk-1 is outside the network 192.168.10.0/24", 2},
	{"ip-broadcast", "", 26, "pis.racks[0].ipStart", "192.168.10.255 of pi-r1-03 is outside the network 192.168.10.0/24", 1},
	{"ip-is-gateway", "", 22, "proxmox.vms[0].ipStart", "192.168.10.11 of mgr-1 is the gateway's address", 1},
	{"gateway-outside", "", 8, "network.gateway", "192.168.11.1 is not a host address of 192.168.10.0/24", 1},
	{"bad-cidr", "", 7, "network.cidr", `"192.168.10.0/33" is not an IPv4 network`, 1},
	{"cidr-host-bits", "", 7, "network.cidr", "has host bits set; the network is 192.168.10.0/24", 1},
	{"pool-overlaps-lan", "", 13, "swarm.defaultAddrPool[0]", "pool 192.168.0.0/16 overlaps the host network 192.168.10.0/24", 1},
	{"pools-overlap", "", 15, "swarm.defaultAddrPool[1]", "pool 10.130.0.0/16 overlaps pool 10.128.0.0/12 (swarm.defaultAddrPool[0])", 1},
	{"pool-overlaps-bridge", "", 13, "swarm.defaultAddrPool[0]", "pool 172.20.0.0/14 overlaps Docker's bridge pool 172.16.0.0/12", 1},
	{"ingress-overlaps-pool", "", 14, "swarm.ingress.subnet", "ingress 10.130.0.0/24 overlaps 10.128.0.0/12: pick a subnet outside the overlay and bridge pools", 1},
	{"ingress-subnet-disabled", "", 14, "swarm.ingress.subnet", "is set but swarm.ingress.enabled is false: drop one of them", 1},
	{"mask-does-not-fit", "", 14, "swarm.defaultAddrPoolMaskLength", "/8 does not fit in pool 10.128.0.0/12", 1},

	// Managers.
	{"managers-even", "", 13, "swarm.managers", "2 nodes have role manager (mgr-1, mgr-2): use 1, 3, 5 or 7", 2},
	{"managers-too-many", "", 13, "swarm.managers", "9 managers: use 1, 3, 5 or 7", 2},
	{"managers-mismatch", "", 13, "swarm.managers", "says 5, but 3 nodes have role manager (mgr-1, mgr-2, mgr-3)", 1},
	{"managers-one-host", "", 13, "swarm.managers", "all 3 managers are on host pve1 although 4 failure domains exist", 1},
	{"managers-one-rack", "", 13, "swarm.managers", "all 3 managers are on rack r1 although 2 failure domains exist", 1},

	// Proxmox, SSH, tuning, racks.
	{"unknown-proxmox-host", "", 23, "proxmox.vms[0].hosts[1]", `"pve9" is not one of proxmox.nodes (pve1, pve2, pve3)`, 1},
	{"bad-name-pattern", "", 23, "proxmox.vms[1].name", `pattern "worker" names 2 nodes but has no number in it`, 1},
	{"bad-ssh-key", "", 12, "ssh.authorizedKeys[1]", "not an SSH public key", 1},
	{"keepalive-too-long", "", 13, "hostTuning.keepalive.time", "900 s: must be below 900 s", 1},
	{"bad-boot-mode", "", 26, "pis.racks[0].boot", `"pxe": use sd or netboot`, 1},
	{"netboot-no-csv", "", 26, "pis.racks[0].nodes", "rack boots by netboot, so it needs a CSV of slot,serial,mac", 1},
	{"bad-join-mode", "", 26, "pis.racks[0].join", `"itself": use push (provision joins the Pis over SSH) or self`, 1},
	{"self-join-no-address", "", 25, "pis.joinServer.address", "a rack joins by itself (join: self), so the join endpoint needs the admin host's IP address", 1},
	{"self-join-manager", "", 26, "pis.racks[0].join", "a rack of managers cannot join by itself", 1},
	{"join-server-outside", "", 27, "pis.joinServer.address", "10.9.9.9 is outside network.cidr 192.168.10.0/24", 1},
	{"ticket-ttl-too-long", "", 27, "pis.joinServer.ticketTTL", "2000h is longer than 720h0m0s: tickets are short-lived", 1},
	{"join-port-zero", "", 27, "pis.joinServer.port", "0 is not a usable value: leave the field out for the default (9443)", 1},

	// Rack CSVs. A missing row has no line of its own: line 0 of the CSV.
	{"csv-missing-file", "", 26, "pis.racks[0].nodes", "cannot read rack CSV testdata/invalid/racks/no-such-rack.csv", 1},
	{"csv-missing-slot", "racks/csv-missing-slot.csv", 0, "slot 2", "no row for slot 2", 1},
	{"csv-bad-header", "racks/csv-bad-header.csv", 2, "", "the first line must be the header slot,serial,mac", 1},
	{"csv-bad-mac", "racks/csv-bad-mac.csv", 4, "mac", `"dc:a6:32:zz:01:02" is not a MAC address`, 1},
	{"csv-bad-serial", "racks/csv-bad-serial.csv", 4, "serial", `"1a2b01" is not a Pi serial number`, 1},
	{"csv-slot-out-of-range", "racks/csv-slot-out-of-range.csv", 6, "slot", `"4" is not a slot between 1 and 3`, 1},
	{"csv-empty", "racks/csv-empty.csv", 0, "", "the file is empty: the first line must be the header slot,serial,mac", 1},
	{"csv-bare-quote", "racks/csv-bare-quote.csv", 4, "", `not valid CSV: parse error on line 4, column 2: bare "`, 1},

	// The file itself: secrets, schema, YAML.
	{"secret-key", "", 21, "proxmox.token", "secrets must not be written in the inventory", 1},
	{"secret-value-pve-token", "", 16, "proxmox.tokenIDEnv", "this value looks like a secret", 1},
	{"secret-value-private-key", "", 12, "ssh.authorizedKeys[1]", "this value looks like a secret", 1},
	{"unknown-field", "", 9, "network.vlan", "unknown field (known here: cidr, dns, domain, gateway, ntp)", 1},
	{"wrong-type", "", 22, "proxmox.vms[0].cores", `must be a whole number, not "four"`, 1},
	{"wrong-api-version", "", 2, "apiVersion", `"provision/v2" is not supported; this tool reads apiVersion: provision/v1`, 1},
	{"wrong-kind", "", 3, "kind", `"Cluster" is not supported; this tool reads kind: Lab`, 1},
	{"duplicate-key", "", 10, "network.gateway", "duplicate key (first at line 8)", 1},
	{"syntax-error", "", 19, "", "not valid YAML: did not find expected ',' or '}'", 1},
	{"empty", "", 0, "", "the file is empty", 1},
	{"alias-bomb", "", 23, "proxmox.vms[48].hosts[57]", "too many YAML alias expansions", 1},
	{"undefined-anchor", "", 23, "", "not valid YAML: alias *workers names no anchor (define &workers before it)", 1},
	{"nul-byte", "", 20, "", "not valid YAML: a NUL byte; is this a binary file?", 1},

	// Files that are not regular files (a FIFO cannot be committed: see
	// TestUserFilesMustBeRegular).
	{"csv-device", "", 26, "pis.racks[0].nodes", "cannot read rack CSV /dev/zero: a character device, not a regular file", 1},
	{"key-file-device", "", 12, "ssh.authorizedKeyFiles[0]", "cannot read public key file /dev/zero: a character device, not a regular file", 1},
	{"cafile-directory", "", 16, "proxmox.caFile", "cannot use testdata/invalid: a directory, not a regular file", 1},

	// Secrets and control characters: refused without echoing the value.
	{"url-credentials", "", 15, "proxmox.apiURL", "credentials in the URL", 1},
	{"domain-newline", "", 9, "network.domain", "contains the control character U+000A at byte 11", 1},
	{"key-newline", "", 11, "ssh.authorizedKeys[0]", "contains the control character U+000A", 1},
	{"label-control-char", "", 23, "proxmox.vms[1].labels.team", "contains the control character U+001B at byte 1", 1},

	// An explicit 0 is not quietly the default.
	{"zero-memory", "", 23, "proxmox.vms[1].memory", "0 is not a usable value: leave the field out for the default (2048)", 1},
	{"zero-ssh-port", "", 12, "ssh.port", "0 is not a usable value: leave the field out for the default (22)", 1},
	{"zero-probes", "", 28, "hostTuning.keepalive.probes", "0 is not a usable value: leave the field out for the default (5)", 1},
	{"host-zero-port", "", 25, "hosts[0].sshPort", "0 is not a usable value: leave the field out for the default (22)", 1},
	{"zero-managers", "", 13, "swarm.managers", "0 is not a usable value: leave the field out to have provision work it out", 1},
	{"zero-count-bad-pattern", "", 23, "proxmox.vms[1].name", `"Wrk_1" is not a valid hostname`, 1},

	// Values no lab can use.
	{"mac-broadcast", "racks/mac-broadcast.csv", 3, "mac", "ff:ff:ff:ff:ff:ff is the broadcast address: no network card has it", 1},
	{"mac-multicast", "racks/mac-multicast.csv", 4, "mac", "01:00:5e:00:00:fb is a multicast address", 1},
	{"mac-zero", "racks/mac-zero.csv", 2, "mac", "00:00:00:00:00:00 is all zeros", 1},
	{"netboot-no-serial", "racks/netboot-no-serial.csv", 4, "serial", "slot 2 has no serial: the rack boots by netboot", 1},
	{"cidr-slash-31", "", 7, "network.cidr", "192.168.10.0/31 leaves no room for a gateway and nodes", 1},
	{"cidr-too-large", "", 7, "network.cidr", "0.0.0.0/0 is larger than any LAN: use /8 to /30", 1},
	{"cidr-loopback", "", 7, "network.cidr", "127.0.0.0/24 is loopback (127.0.0.0/8), not a LAN", 1},
	{"cidr-multicast", "", 7, "network.cidr", "224.1.0.0/24 is multicast (224.0.0.0/4), not a LAN", 1},
	{"cidr-link-local", "", 7, "network.cidr", "169.254.10.0/24 is link-local (169.254.0.0/16), not a LAN", 1},
	{"pool-host-bits", "", 14, "swarm.defaultAddrPool[0]", "10.128.0.1/12 has host bits set; did you mean 10.128.0.0/12?", 1},
	{"pool-class-e", "", 14, "swarm.defaultAddrPool[0]", "240.0.0.0/12 is reserved (class E, 240.0.0.0/4): containers cannot use it", 1},
	{"proxmox-address-url", "", 18, "proxmox.nodes[1].address", `"https://pve2:8006" is not an IP address or host name`, 1},
	{"proxmox-address-digits", "", 18, "proxmox.nodes[1].address", `"10.0.300.1" is not an IP address or host name`, 1},
	{"vmid-too-large", "", 23, "proxmox.vms[1].vmidStart", "VMID 1000000000 of wrk-2 is past 999999999, the largest Proxmox accepts", 1},
	{"label-overrides-role", "", 23, "proxmox.vms[1].labels.role", `"role" is a label provision sets itself`, 1},
}

// problemsOf loads an inventory that must be invalid and returns its problems.
func problemsOf(t *testing.T, path string) inventory.Problems {
	t.Helper()
	inv, err := inventory.Load(path)
	if err == nil {
		t.Fatalf("%s loaded (%d nodes), want problems", path, len(inv.Nodes))
	}
	var probs inventory.Problems
	if !errors.As(err, &probs) {
		t.Fatalf("%s: error %T is not inventory.Problems: %v", path, err, err)
	}
	return probs
}

func TestInvalidInventories(t *testing.T) {
	listed := map[string]bool{}
	for _, tc := range invalid {
		listed[tc.name+".yaml"] = true
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join("testdata", "invalid", tc.name+".yaml")
			file := path
			if tc.file != "" {
				file = filepath.Join("testdata", "invalid", tc.file)
			}
			probs := problemsOf(t, path)
			if len(probs) != tc.n {
				t.Errorf("%d problems, want %d:\n%v", len(probs), tc.n, probs)
			}
			for _, p := range probs {
				if p.File == file && p.Line == tc.line && p.Field == tc.field && strings.Contains(p.Msg, tc.msg) {
					return
				}
			}
			t.Errorf("no problem %s:%d: %s: ...%s...; got:\n%v", file, tc.line, tc.field, tc.msg, probs)
		})
	}
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !listed[filepath.Base(f)] {
			t.Errorf("%s has no entry in the table", f)
		}
	}
	if len(files) < 30 {
		t.Errorf("%d invalid fixtures, want at least 30", len(files))
	}
}

// TestEveryProblemAtOnce checks that problems are not reported one per run:
// each fixture has several distinct mistakes and all of them come back.
func TestEveryProblemAtOnce(t *testing.T) {
	type want struct {
		line  int
		field string
		msg   string
	}
	for file, wants := range map[string][]want{
		// Found while decoding: the decoder does not stop at the first.
		"testdata/many-decode-problems.yaml": {
			{9, "network.mtu", "unknown field"},
			{15, "swarm.managers", "duplicate key (first at line 14)"},
			{23, "proxmox.password", "secrets must not be written"},
			{25, "proxmox.vms[0].memory", `must be a whole number, not "8GB"`},
		},
		// Found by validation after a clean decode.
		"testdata/many-problems.yaml": {
			{12, "ssh.authorizedKeys[1]", "not an SSH public key"},
			{14, "hostTuning.keepalive.time", "1200 s: must be below 900 s"},
			{17, "swarm.defaultAddrPool[0]", "overlaps the host network"},
			{26, "proxmox.vms[0].hosts[1]", `"pve7" is not one of proxmox.nodes`},
			{27, "proxmox.vms[1].ipStart", "address 192.168.10.13 of wrk-1 is also the address of mgr-3"},
			{31, "pis.racks[1].nodes", "needs a CSV"},
		},
	} {
		t.Run(filepath.Base(file), func(t *testing.T) {
			probs := problemsOf(t, file)
			if len(probs) != len(wants) {
				t.Errorf("%d problems, want %d:\n%v", len(probs), len(wants), probs)
			}
			for i, w := range wants {
				if i >= len(probs) {
					break
				}
				p := probs[i] // Problems are sorted by file and line.
				if p.File != file || p.Line != w.line || p.Field != w.field || !strings.Contains(p.Msg, w.msg) {
					t.Errorf("problem %d is %v, want %s:%d: %s: ...%s...", i, p, file, w.line, w.field, w.msg)
				}
			}
		})
	}
}

// copyExample copies inventory/example.yaml and its racks into a temporary
// directory, applying edit to the inventory text, and returns its path.
func copyExample(t *testing.T, edit func(string) string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "racks"), 0o755); err != nil {
		t.Fatal(err)
	}
	racks, err := filepath.Glob("../../inventory/racks/*.csv")
	if err != nil || len(racks) == 0 {
		t.Fatalf("no rack CSVs: %v", err)
	}
	for _, r := range racks {
		data, err := os.ReadFile(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "racks", filepath.Base(r)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile("../../inventory/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	edited := edit(string(data))
	if edited == string(data) {
		t.Fatal("the edit changed nothing")
	}
	path := filepath.Join(dir, "example.yaml")
	if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// lineOf returns the 1-based line of the only line of text containing s.
func lineOf(t *testing.T, text, s string) int {
	t.Helper()
	line := 0
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			if line != 0 {
				t.Fatalf("%q is on lines %d and %d", s, line, i+1)
			}
			line = i + 1
		}
	}
	if line == 0 {
		t.Fatalf("%q not found", s)
	}
	return line
}

// TestExampleWithDuplicateIP edits one line of a copy of the real example so
// that two nodes share an address; the error must name both nodes and the
// lines their addresses come from.
func TestExampleWithDuplicateIP(t *testing.T) {
	example, err := os.ReadFile("../../inventory/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name             string
		old, new         string
		firstLine, later string // lines of the two groups or racks, by a unique substring
		field            string
		first, second    string // node names
		ip               string
	}{
		{
			name: "worker VMs start on the last manager",
			old:  "ipStart: 192.168.10.21", new: "ipStart: 192.168.10.13",
			firstLine: "name: mgr-%d", later: "name: wrk-%02d",
			field: "proxmox.vms[1].ipStart", first: "mgr-3", second: "wrk-01", ip: "192.168.10.13",
		},
		{
			name: "rack r2 starts inside rack r1",
			old:  "ipStart: 192.168.11.41", new: "ipStart: 192.168.11.30",
			firstLine: "name: r1,", later: "name: r2,",
			field: "pis.racks[1].ipStart", first: "pi-r1-30", second: "pi-r2-01", ip: "192.168.11.30",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := copyExample(t, func(s string) string { return strings.Replace(s, tc.old, tc.new, 1) })
			firstLine := lineOf(t, string(example), tc.firstLine)
			laterLine := lineOf(t, string(example), tc.later)
			probs := problemsOf(t, path)
			p := probs[0]
			want := fmt.Sprintf("address %s of %s is also the address of %s (%s:%d)", tc.ip, tc.second, tc.first, path, firstLine)
			if p.File != path || p.Line != laterLine || p.Field != tc.field || p.Msg != want {
				t.Fatalf("first problem is\n  %v\nwant\n  %s:%d: %s: %s\nall: %v", p, path, laterLine, tc.field, want, probs)
			}
			// What the admin reads names both nodes and both lines.
			msg := probs.Error()
			for _, s := range []string{tc.first, tc.second, fmt.Sprintf("%s:%d", path, firstLine), fmt.Sprintf("%s:%d", path, laterLine)} {
				if !strings.Contains(msg, s) {
					t.Errorf("error does not name %q:\n%s", s, msg)
				}
			}
			for _, p := range probs {
				if !strings.Contains(p.Msg, "is also the address of") {
					t.Errorf("unrelated problem: %v", p)
				}
			}
		})
	}
}

// TestHostileInputsAreRejectedFast covers inputs that once took minutes or
// all memory: a small file whose aliases stand for millions of nodes, and
// lists long enough to make pairwise checks quadratic.
func TestHostileInputsAreRejectedFast(t *testing.T) {
	base, err := os.ReadFile("testdata/invalid/dup-hostname.yaml")
	if err != nil {
		t.Fatal(err)
	}
	replace := func(old, new string) []byte {
		if !strings.Contains(string(base), old) {
			t.Fatalf("%q not in the base inventory", old)
		}
		return []byte(strings.Replace(string(base), old, new, 1))
	}
	for _, tc := range []struct {
		name, field, msg string
		data             []byte
	}{
		{
			// 999 aliases of one group with 20,000 hosts, a 100 KB file,
			// decoded to 20 million nodes; the list cap now stops that, so
			// the group has 900 hosts here: still 900,000 nodes.
			name: "wide alias", field: "proxmox.vms[", msg: "too many YAML alias expansions",
			data: []byte(string(base[:strings.Index(string(base), "  vms:\n")]) +
				"  vms: [&g {name: a-%d, hosts: [" + strings.Repeat("pve1, ", 899) + "pve1]}, " + strings.Repeat("*g, ", 998) + "*g]\n"),
		},
		{
			name: "long list", field: "swarm.defaultAddrPool", msg: "has 20000 entries, more than the 1000",
			data: replace("swarm:\n", "swarm:\n  defaultAddrPool: ["+strings.Repeat("10.128.0.0/12, ", 19999)+"10.128.0.0/12]\n"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := inventory.Parse("lab.yaml", tc.data, mapFS{})
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
			var probs inventory.Problems
			if !errors.As(err, &probs) {
				t.Fatalf("error %v, want Problems", err)
			}
			for _, p := range probs {
				if strings.HasPrefix(p.Field, tc.field) && strings.Contains(p.Msg, tc.msg) && p.Line > 0 {
					return
				}
			}
			t.Errorf("no problem %s: ...%s...; got %v", tc.field, tc.msg, probs)
		})
	}
}
