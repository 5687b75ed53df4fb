package inventory

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/fhlab/provision/internal/userfile"
)

// maxNodes bounds expansion so a typo such as count: 1000000 is an error, not
// a machine out of memory.
const maxNodes = 10000

// namePattern is a hostname with at most one integer verb: mgr-%d, pi-r1-%02d.
var namePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
var intVerb = regexp.MustCompile(`%0?[1-9]?d`)

func (inv *Inventory) problem(path, format string, args ...any) Problem {
	return Problem{File: inv.File, Line: inv.lineNear(path), Field: path, Msg: fmt.Sprintf(format, args...)}
}

// lineNear is the line of a field path or, when that field is not written
// (its default applies), of the nearest enclosing field that is.
func (inv *Inventory) lineNear(path string) int {
	for {
		if line := inv.lines[path]; line > 0 {
			return line
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return 0
		}
		path = path[:i]
	}
}

// expand turns VM groups and Pi racks into nodes.
func (inv *Inventory) expand(fsys FS, dir string) Problems {
	probs := inv.readKeyFiles(fsys, dir)
	if p := inv.Lab.Proxmox; p != nil {
		probs = append(probs, inv.expandVMs(p)...)
	}
	if p := inv.Lab.Pis; p != nil {
		for i := range p.Racks {
			probs = append(probs, inv.expandRack(i, &p.Racks[i], fsys, dir)...)
		}
	}
	return append(probs, inv.expandHosts()...)
}

// readKeyFiles appends the lines of ssh.authorizedKeyFiles to the keys.
func (inv *Inventory) readKeyFiles(fsys FS, dir string) Problems {
	var probs Problems
	for i, f := range inv.Lab.SSH.AuthorizedKeyFiles {
		path := index("ssh.authorizedKeyFiles", i)
		data, err := fsys.ReadFile(ResolvePath(dir, f))
		if err != nil {
			probs = append(probs, inv.problem(path, "cannot read public key file %s: %s", f, userfile.Reason(err)))
			continue
		}
		inv.addKeys(data, path)
	}
	key := ResolvePath(dir, inv.Lab.SSH.PrivateKeyFile)
	if inv.Lab.SSH.CreateKey {
		// The key may not exist yet; provision creates it before it is used.
		data, err := fsys.ReadFile(key + ".pub")
		switch {
		case err == nil:
			inv.addKeys(data, "ssh.privateKeyFile")
		case !errors.Is(err, fs.ErrNotExist):
			probs = append(probs, inv.problem("ssh.privateKeyFile", "cannot read public key file %s.pub: %s", key, userfile.Reason(err)))
		}
	}
	// Files later stages read: refuse a device, FIFO or directory now, with
	// the field that names it. A file that does not exist yet (or cannot be
	// looked at by this user) is for the stage that reads it to report.
	if c, ok := fsys.(CheckFS); ok {
		files := []struct{ field, path string }{{"ssh.privateKeyFile", key}}
		if p := inv.Lab.Proxmox; p != nil && p.CAFile != "" {
			files = append(files, struct{ field, path string }{"proxmox.caFile", ResolvePath(dir, p.CAFile)})
		}
		for _, f := range files {
			var ue *userfile.Error
			if err := c.Check(f.path, userfile.MaxSmall); errors.As(err, &ue) {
				probs = append(probs, inv.problem(f.field, "cannot use %s: %s", f.path, userfile.Reason(err)))
			}
		}
	}
	return probs
}

func (inv *Inventory) addKeys(data []byte, from string) {
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			inv.Lab.SSH.AuthorizedKeys = append(inv.Lab.SSH.AuthorizedKeys, line)
			inv.lines[index("ssh.authorizedKeys", len(inv.Lab.SSH.AuthorizedKeys)-1)] = inv.lines[from]
		}
	}
}

// ResolvePath expands a leading ~/ to the home directory and makes a relative
// path relative to dir (the inventory file's directory).
func ResolvePath(dir, p string) string {
	if strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[2:])
		}
	}
	if filepath.IsAbs(p) || p == "" {
		return p
	}
	return filepath.Join(dir, p)
}

// hostname applies a name pattern to a 1-based index.
func hostname(pattern string, i, count int) (string, error) {
	verbs := intVerb.FindAllStringIndex(pattern, -1)
	switch {
	case len(verbs) == 0 && count > 1:
		return "", fmt.Errorf("pattern %q names %d nodes but has no number in it (use e.g. %q)", pattern, count, pattern+"-%d")
	case len(verbs) > 1:
		return "", fmt.Errorf("pattern %q has more than one number verb", pattern)
	case strings.Count(pattern, "%") != len(verbs):
		return "", fmt.Errorf("pattern %q may only contain one %%d-style verb", pattern)
	}
	name := pattern
	if len(verbs) == 1 {
		name = fmt.Sprintf(pattern, i)
	}
	if len(name) > 63 || !namePattern.MatchString(name) {
		return "", fmt.Errorf("%q is not a valid hostname (lower-case letters, digits and '-', at most 63)", name)
	}
	return name, nil
}

// addIP returns start+n, or false when it leaves the address family.
func addIP(start netip.Addr, n int) (netip.Addr, bool) {
	a := start
	for ; n > 0; n-- {
		a = a.Next()
		if !a.IsValid() {
			return a, false
		}
	}
	return a, true
}

func (inv *Inventory) expandVMs(p *Proxmox) Problems {
	var probs Problems
	vmid := p.VMIDStart
	perHost := map[string]int{}
	managersPerHost := map[string]int{}
	for gi, g := range p.VMs {
		path := index("proxmox.vms", gi)
		if g.Count < 0 || len(inv.Nodes)+g.Count > maxNodes {
			probs = append(probs, inv.problem(path+".count", "must be between 0 (no VMs for now) and %d", maxNodes-len(inv.Nodes)))
			continue
		}
		start, err := netip.ParseAddr(g.IPStart)
		if err != nil || !start.Is4() {
			probs = append(probs, inv.problem(path+".ipStart", "%q is not an IPv4 address", g.IPStart))
			continue
		}
		if g.Count == 0 {
			// An emptied group: its name must still be a valid pattern.
			if _, err := hostname(g.Name, 1, 0); err != nil {
				probs = append(probs, inv.problem(path+".name", "%v", err))
			}
			continue
		}
		hosts := g.Hosts
		if len(hosts) == 0 {
			for _, n := range p.Nodes {
				hosts = append(hosts, n.Name)
			}
		}
		if g.VMIDStart != 0 {
			vmid = g.VMIDStart
		}
		for i := 1; i <= g.Count; i++ {
			name, err := hostname(g.Name, i, g.Count)
			if err != nil {
				probs = append(probs, inv.problem(path+".name", "%v", err))
				break
			}
			ip, ok := addIP(start, i-1)
			if !ok {
				probs = append(probs, inv.problem(path+".ipStart", "%d addresses from %s run past the end of IPv4", g.Count, start))
				break
			}
			host := ""
			if len(hosts) > 0 {
				host = pickHost(hosts, g.Role == Manager, perHost, managersPerHost)
			}
			n := Node{
				Name: name, Kind: KindVM, Role: g.Role, IP: ip.String(), Arch: "amd64",
				Host: host, VMID: vmid, Cores: g.Cores, Memory: g.Memory, Disk: g.Disk,
				Source:  Pos{File: inv.File, Line: inv.lines[path+".name"]},
				ipField: path + ".ipStart", field: path,
			}
			n.Labels = nodeLabels(n, g.Labels)
			inv.Nodes = append(inv.Nodes, n)
			vmid++
		}
	}
	return probs
}

// pickHost spreads VMs: managers go to the host with the fewest managers,
// everyone to the host with the fewest VMs; ties keep inventory order.
func pickHost(hosts []string, manager bool, perHost, managersPerHost map[string]int) string {
	best := hosts[0]
	for _, h := range hosts[1:] {
		if manager && managersPerHost[h] != managersPerHost[best] {
			if managersPerHost[h] < managersPerHost[best] {
				best = h
			}
			continue
		}
		if perHost[h] < perHost[best] {
			best = h
		}
	}
	perHost[best]++
	if manager {
		managersPerHost[best]++
	}
	return best
}

func nodeLabels(n Node, custom map[string]string) map[string]string {
	labels := map[string]string{"kind": n.Kind, "arch": n.Arch, "role": n.Role}
	if n.Host != "" {
		labels["host"] = n.Host
	}
	if n.Rack != "" {
		labels["rack"] = n.Rack
	}
	for k, v := range custom {
		labels[k] = v
	}
	return labels
}

// slotInfo is one row of a rack CSV.
type slotInfo struct {
	serial, mac string
	line        int
}

func (inv *Inventory) expandRack(ri int, r *Rack, fsys FS, dir string) Problems {
	path := index("pis.racks", ri)
	var probs Problems
	if r.Count == 0 && !inv.zeros[path+".count"] {
		return Problems{inv.problem(path+".count", "missing: how many Pis the rack holds (0 for an empty rack)")}
	}
	if r.Count < 0 || len(inv.Nodes)+r.Count > maxNodes {
		return Problems{inv.problem(path+".count", "must be between 0 (an empty rack) and %d", maxNodes-len(inv.Nodes))}
	}
	start, err := netip.ParseAddr(r.IPStart)
	if err != nil || !start.Is4() {
		return Problems{inv.problem(path+".ipStart", "%q is not an IPv4 address", r.IPStart)}
	}
	slots := map[int]slotInfo{}
	csvFile := ""
	if r.Nodes != "" {
		csvFile = ResolvePath(dir, r.Nodes)
		data, err := fsys.ReadFile(csvFile)
		if err != nil {
			return Problems{inv.problem(path+".nodes", "cannot read rack CSV %s: %s", csvFile, userfile.Reason(err))}
		}
		var ps Problems
		slots, ps = readRackCSV(csvFile, data, r.Count)
		if len(ps) > 0 {
			return ps
		}
	}
	if r.Count == 0 {
		if _, err := hostname(r.Pattern, 1, 0); err != nil {
			probs = append(probs, inv.problem(path+".namePattern", "%v", err))
		}
		return probs
	}
	for slot := 1; slot <= r.Count; slot++ {
		name, err := hostname(r.Pattern, slot, r.Count)
		if err != nil {
			probs = append(probs, inv.problem(path+".namePattern", "%v", err))
			break
		}
		ip, ok := addIP(start, slot-1)
		if !ok {
			probs = append(probs, inv.problem(path+".ipStart", "%d addresses from %s run past the end of IPv4", r.Count, start))
			break
		}
		s, ok := slots[slot]
		if !ok && r.Boot == BootNetboot {
			if csvFile == "" {
				probs = append(probs, inv.problem(path+".nodes", "rack boots by netboot, so it needs a CSV of slot,serial,mac"))
				break
			}
			probs = append(probs, Problem{File: csvFile, Field: "slot " + strconv.Itoa(slot), Msg: fmt.Sprintf("no row for slot %d: a netbooted Pi is found by its serial number", slot)})
			continue
		}
		if ok && s.serial == "" && r.Boot == BootNetboot {
			probs = append(probs, Problem{File: csvFile, Line: s.line, Field: "serial", Msg: fmt.Sprintf("slot %d has no serial: the rack boots by netboot, and a netbooted Pi is found by its serial number (8 hex digits from /proc/cpuinfo)", slot)})
			continue
		}
		src := Pos{File: inv.File, Line: inv.lines[path+".name"]}
		if ok {
			src = Pos{File: csvFile, Line: s.line}
		}
		n := Node{
			Name: name, Kind: KindPi, Role: r.Role, IP: ip.String(), Arch: "arm64",
			Rack: r.Name, Slot: slot, Boot: r.Boot, Serial: s.serial, MAC: s.mac, Source: src,
			Join:    selfJoin(r.Join),
			ipField: path + ".ipStart", field: path,
		}
		n.Labels = nodeLabels(n, r.Labels)
		inv.Nodes = append(inv.Nodes, n)
	}
	return probs
}

// selfJoin is a node's Join: JoinSelf, or empty for the default push.
func selfJoin(join string) string {
	if join == JoinSelf {
		return JoinSelf
	}
	return ""
}

var serialPattern = regexp.MustCompile(`^[0-9a-f]{8}$`)

// readRackCSV reads "slot,serial,mac" rows (a header line is required).
func readRackCSV(file string, data []byte, count int) (map[int]slotInfo, Problems) {
	if len(data) > maxFileSize {
		return nil, Problems{{File: file, Msg: "rack CSV is too large"}}
	}
	// Spreadsheets save CSV with a UTF-8 byte order mark; it is not part of
	// the header.
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))
	if count == 0 {
		count = maxNodes // an empty rack: its rows are kept for later
	}
	rd := csv.NewReader(bytes.NewReader(data))
	rd.Comment = '#'
	rd.FieldsPerRecord = -1
	var probs Problems
	slots := map[int]slotInfo{}
	serials := map[string]int{}
	header := true
	for {
		rec, err := rd.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			// FieldPos would panic here: a record that fails to parse may
			// have no fields. The parse error knows its line.
			var line int
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				line = pe.Line
			}
			probs = append(probs, Problem{File: file, Line: line, Msg: "not valid CSV: " + err.Error()})
			break
		}
		line, _ := rd.FieldPos(0)
		if header {
			header = false
			want := []string{"slot", "serial", "mac"}
			if len(rec) != 3 || !equalFold(rec, want) {
				probs = append(probs, Problem{File: file, Line: line, Msg: "the first line must be the header slot,serial,mac"})
				break
			}
			continue
		}
		if len(rec) != 3 {
			probs = append(probs, Problem{File: file, Line: line, Msg: fmt.Sprintf("want 3 columns (slot,serial,mac), got %d", len(rec))})
			continue
		}
		slot, err := strconv.Atoi(strings.TrimSpace(rec[0]))
		if err != nil || slot < 1 || slot > count {
			probs = append(probs, Problem{File: file, Line: line, Field: "slot", Msg: fmt.Sprintf("%q is not a slot between 1 and %d", rec[0], count)})
			continue
		}
		if prev, dup := slots[slot]; dup {
			probs = append(probs, Problem{File: file, Line: line, Field: "slot", Msg: fmt.Sprintf("slot %d is listed twice (also line %d)", slot, prev.line)})
			continue
		}
		s := slotInfo{serial: strings.ToLower(strings.TrimSpace(rec[1])), mac: strings.ToLower(strings.TrimSpace(rec[2])), line: line}
		if s.serial != "" && !serialPattern.MatchString(strings.TrimPrefix(s.serial, "0x")) {
			probs = append(probs, Problem{File: file, Line: line, Field: "serial", Msg: fmt.Sprintf("%q is not a Pi serial number (8 hex digits, as in /proc/cpuinfo)", rec[1])})
			continue
		}
		s.serial = strings.TrimPrefix(s.serial, "0x")
		if s.mac != "" {
			hw, err := net.ParseMAC(s.mac)
			if err != nil || len(hw) != 6 {
				probs = append(probs, Problem{File: file, Line: line, Field: "mac", Msg: fmt.Sprintf("%q is not a MAC address like dc:a6:32:01:02:03", rec[2])})
				continue
			}
			if why := unusableMAC(hw); why != "" {
				probs = append(probs, Problem{File: file, Line: line, Field: "mac", Msg: fmt.Sprintf("%s %s: no network card has it; copy the MAC from the Pi's label or `ip link`", hw, why)})
				continue
			}
			s.mac = hw.String()
		}
		if s.serial != "" {
			if prev, dup := serials[s.serial]; dup {
				probs = append(probs, Problem{File: file, Line: line, Field: "serial", Msg: fmt.Sprintf("serial %s is listed twice (also line %d)", s.serial, prev)})
				continue
			}
			serials[s.serial] = line
		}
		slots[slot] = s
	}
	if header && len(probs) == 0 {
		probs = append(probs, Problem{File: file, Msg: "the file is empty: the first line must be the header slot,serial,mac"})
	}
	return slots, probs
}

// unusableMAC says why no NIC can have hw (a 6-byte MAC), or "".
func unusableMAC(hw net.HardwareAddr) string {
	switch {
	case bytes.Equal(hw, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}):
		return "is the broadcast address"
	case hw[0]&1 != 0:
		return "is a multicast address (the lowest bit of the first byte is set)"
	case bytes.Equal(hw, make([]byte, 6)):
		return "is all zeros"
	}
	return ""
}

func equalFold(a, b []string) bool {
	for i := range a {
		if !strings.EqualFold(strings.TrimSpace(a[i]), b[i]) {
			return false
		}
	}
	return true
}
