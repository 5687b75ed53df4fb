package pvesim

// Config values: the create schema's keys and property strings.

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// qemuConfigSchema is the create method's parameters: the config keys a
// VM can have, with their property-string formats.
func (s *Sim) qemuConfigSchema() *objectSchema {
	n, _ := s.schema.match("/nodes/x/qemu")
	return n.methods["POST"].Parameters
}

// qemuFormat returns the property-string format of a config key, or nil.
func (s *Sim) qemuFormat(key string) map[string]*propSchema {
	p := s.qemuConfigSchema().lookup(key)
	if p == nil || p.Format == nil {
		return nil
	}
	if p.Format.Keys != nil {
		return p.Format.Keys
	}
	return hashFormats[p.Format.Name]
}

// parseProp parses a config value of key as a property string.
func (s *Sim) parseProp(key, v string) (map[string]string, error) {
	f := s.qemuFormat(key)
	if f == nil {
		return nil, fmt.Errorf("%s is not a property string", key)
	}
	m, msg := s.chk.parsePropertyString(f, v, key)
	if msg != "" {
		return nil, fmt.Errorf("%s", strings.TrimRight(msg, "\n"))
	}
	return m, nil
}

// printProp renders a property string like PVE's print_property_string:
// the default key's bare value first (or "model=mac" for a key alias such
// as net's "virtio=BC:24:11:..."), then the other keys sorted.
func (s *Sim) printProp(key string, data map[string]string) string {
	f := s.qemuFormat(key)
	var parts []string
	skip := map[string]bool{}
	for _, k := range slices.Sorted(maps.Keys(f)) {
		if !f[k].DefaultKey {
			continue
		}
		dv, ok := data[k]
		if !ok {
			break
		}
		skip[k] = true
		if a := f[dv]; a != nil && a.Alias != "" && a.KeyAlias == k && data[a.Alias] != "" {
			parts = append(parts, dv+"="+data[a.Alias])
			skip[a.Alias] = true
		} else {
			parts = append(parts, dv)
		}
		break
	}
	for _, k := range slices.Sorted(maps.Keys(data)) {
		if !skip[k] {
			parts = append(parts, k+"="+data[k])
		}
	}
	return strings.Join(parts, ",")
}

// typedValue returns a config value with the JSON type PVE gives it:
// numbers for integer, number and boolean keys, strings otherwise.
func (s *Sim) typedValue(key, v string) any {
	p := s.qemuConfigSchema().lookup(key)
	if p == nil {
		return v
	}
	switch p.Type {
	case "integer", "boolean":
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	case "number":
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			return f
		}
	}
	return v
}

// newMAC is PVE's random_ether_addr with Proxmox's BC:24:11 prefix.
func newMAC() string {
	b := randUint32()
	return fmt.Sprintf("BC:24:11:%02X:%02X:%02X", byte(b>>16), byte(b>>8), byte(b))
}

// normaliseNetLocked assigns a MAC to a net option without one.
func (s *Sim) normaliseNet(key, value string) (string, error) {
	net, err := s.parseProp(key, value)
	if err != nil {
		return "", paramErr1(key, err.Error())
	}
	if net["macaddr"] == "" {
		net["macaddr"] = newMAC()
	}
	return s.printProp(key, net), nil
}

// propFile is a drive's volume (the property string's first field).
func propFile(v string) string {
	f, _, _ := strings.Cut(v, ",")
	if strings.HasPrefix(f, "file=") {
		return f[5:]
	}
	return f
}
