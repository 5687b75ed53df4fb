package pvesim

import (
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// value is one request parameter as PVE's HTTP server hands it to the
// schema check: a string, a list (the key was sent more than once, or a
// JSON array), or, from JSON bodies, a boolean or an object.
type value struct {
	s    string
	list []string
	ref  string // "" for a scalar, else Perl's ref type: ARRAY, HASH, JSON::PP::Boolean
}

func scalar(s string) value { return value{s: s} }

// params are a request's parameters by name; a key whose value was empty
// ("k=" or "k") is present with ok=false, as PVE decodes it to undef.
type params map[string]*value

// get returns a parameter's string and whether it was given (non-empty).
func (p params) get(name string) (string, bool) {
	v, ok := p[name]
	if !ok || v == nil || v.ref != "" {
		return "", false
	}
	return v.s, true
}

// checker validates parameters against the schema the way PVE's
// PVE::JSONSchema does, with its messages. Regexps compiled from the
// schema's patterns are cached per checker.
type checker struct {
	mu       sync.Mutex
	patterns map[string]*regexp.Regexp
}

func newChecker() *checker { return &checker{patterns: map[string]*regexp.Regexp{}} }

func (c *checker) pattern(p string) *regexp.Regexp {
	c.mu.Lock()
	defer c.mu.Unlock()
	if re, ok := c.patterns[p]; ok {
		return re
	}
	re, err := regexp.Compile(`^(?:` + p + `)$`)
	if err != nil {
		re = nil // a Perl-only construct: the pattern is not checked
	}
	c.patterns[p] = re
	return re
}

// check validates all parameters and returns PVE's per-parameter errors.
func (c *checker) check(o *objectSchema, ps params) map[string]string {
	errs := map[string]string{}
	if o == nil {
		o = &objectSchema{AdditionalProperties: true}
	}
	for name, p := range o.Properties {
		if strings.HasSuffix(name, "[n]") {
			continue
		}
		v := ps[name]
		if v == nil {
			if !bool(p.Optional) && p.Alias == "" {
				addError(errs, name, "property is missing and it is not optional")
			}
			continue
		}
		c.checkProp(errs, name, p, *v)
	}
	names := make([]string, 0, len(ps))
	for name := range ps {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		v := ps[name]
		if _, ok := o.Properties[name]; ok && !strings.HasSuffix(name, "[n]") {
			if p := o.Properties[name]; v != nil && p.Requires != "" {
				if r := ps[string(p.Requires)]; r == nil {
					addError(errs, string(p.Requires), fmt.Sprintf("missing property - '%s' requires this property", name))
				}
			}
			continue
		}
		if p := o.lookup(name); p != nil {
			if v != nil {
				c.checkProp(errs, name, p, *v)
			}
			continue
		}
		if !o.AdditionalProperties {
			addError(errs, name, "property is not defined in schema and the schema does not allow additional properties")
		}
	}
	return errs
}

func addError(errs map[string]string, path, msg string) {
	if path == "" {
		path = "_root"
	}
	if old, ok := errs[path]; ok {
		errs[path] = old + `\n` + msg // PVE joins with a literal backslash-n
		return
	}
	errs[path] = msg
}

var (
	reInteger = regexp.MustCompile(`^[+-]?\d+$`)
	reNumber  = regexp.MustCompile(`^[+-]?(\d+\.\d+|\d+\.|\.\d+|\d+)([eE][+-]?\d+)?$`)
)

// checkProp is PVE::JSONSchema::check_prop for a defined value.
func (c *checker) checkProp(errs map[string]string, path string, p *propSchema, v value) {
	if !checkType(errs, path, p.Type, v) {
		return
	}
	if v.list != nil || v.ref == "HASH" {
		if p.Items != nil {
			for i, el := range v.list {
				if el == "" {
					continue
				}
				c.checkProp(errs, fmt.Sprintf("%s[%d]", path, i), p.Items, scalar(el))
			}
		}
		return
	}
	s := v.s
	if v.ref == "JSON::PP::Boolean" {
		return
	}
	if p.Format != nil {
		if msg := c.checkFormat(p.Format, s, path); msg != "" {
			addError(errs, path, "invalid format - "+msg)
			return
		}
	}
	if p.Pattern != "" {
		if re := c.pattern(p.Pattern); re != nil && !re.MatchString(s) {
			addError(errs, path, "value does not match the regex pattern")
			return
		}
	}
	if p.MaxLength != nil && float64(len([]rune(s))) > float64(*p.MaxLength) {
		addError(errs, path, fmt.Sprintf("value may only be %s characters long", p.MaxLength))
		return
	}
	if p.MinLength != nil && float64(len([]rune(s))) < float64(*p.MinLength) {
		addError(errs, path, fmt.Sprintf("value must be at least %s characters long", p.MinLength))
		return
	}
	if reNumber.MatchString(s) {
		f, _ := strconv.ParseFloat(s, 64)
		if p.Maximum != nil && f > float64(*p.Maximum) {
			addError(errs, path, fmt.Sprintf("value must have a maximum value of %s", p.Maximum))
			return
		}
		if p.Minimum != nil && f < float64(*p.Minimum) {
			addError(errs, path, fmt.Sprintf("value must have a minimum value of %s", p.Minimum))
			return
		}
	}
	if len(p.Enum) > 0 {
		vals := make([]string, len(p.Enum))
		for i, e := range p.Enum {
			vals[i] = string(e)
			if string(e) == s {
				return
			}
		}
		addError(errs, path, fmt.Sprintf("value '%s' does not have a value in the enumeration '%s'", s, strings.Join(vals, ", ")))
	}
}

// checkType is PVE::JSONSchema::check_type.
func checkType(errs map[string]string, path, typ string, v value) bool {
	switch typ {
	case "", "any":
		return true
	case "array":
		if v.list == nil {
			if v.ref == "" { // a single urlencoded value: PVE's clients send lists as repeated keys
				return true
			}
			addError(errs, path, "type check ('array') failed")
			return false
		}
		return true
	case "object":
		if v.ref != "HASH" {
			addError(errs, path, "type check ('object') failed")
			return false
		}
		return true
	}
	ref := v.ref
	if v.list != nil {
		ref = "ARRAY"
	}
	if ref != "" {
		if typ == "boolean" && ref == "JSON::PP::Boolean" {
			return true
		}
		addError(errs, path, fmt.Sprintf("type check ('%s') failed - got %s", typ, ref))
		return false
	}
	ok := true
	switch typ {
	case "boolean":
		ok = v.s == "0" || v.s == "1"
	case "integer":
		ok = reInteger.MatchString(v.s)
	case "number":
		ok = reNumber.MatchString(v.s)
	}
	if !ok {
		addError(errs, path, fmt.Sprintf("type check ('%s') failed - got '%s'", typ, v.s))
	}
	return ok
}

// checkFormat is PVE::JSONSchema::check_format; it returns the error text
// (with PVE's trailing newline where PVE dies with one), or "".
func (c *checker) checkFormat(f *formatSpec, s, path string) string {
	if f.Keys != nil {
		_, msg := c.parsePropertyString(f.Keys, s, path)
		return msg
	}
	name := f.Name
	if name == "" || name == "regex" {
		return ""
	}
	base, kind := name, ""
	if b, ok := strings.CutSuffix(name, "-list"); ok && namedFormats[b] != nil {
		base, kind = b, "list"
	} else if b, ok := strings.CutSuffix(name, "-opt"); ok && namedFormats[b] != nil {
		base, kind = b, "opt"
	}
	if keys := hashFormats[base]; keys != nil {
		_, msg := c.parsePropertyString(keys, s, path)
		return msg
	}
	fn := namedFormats[base]
	if fn == nil {
		return "" // a format the simulator does not know: accepted
	}
	switch kind {
	case "list":
		for _, item := range splitList(s) {
			if msg := fn(item); msg != "" {
				return msg
			}
		}
		return ""
	case "opt":
		if s == "" {
			return ""
		}
	}
	return fn(s)
}

// splitList is PVE::Tools::split_list: items separated by , ; space or NUL.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ';' || r == ' ' || r == '\t' || r == '\n' || r == 0
	})
}

// parseBoolean is PVE::JSONSchema::parse_boolean.
func parseBoolean(s string) (string, bool) {
	switch strings.ToLower(s) {
	case "1", "on", "yes", "true":
		return "1", true
	case "0", "off", "no", "false":
		return "0", true
	}
	return s, false
}

// parsePropertyString is PVE::JSONSchema::parse_property_string: it
// returns the keys and values, or PVE's error text.
func (c *checker) parsePropertyString(format map[string]*propSchema, data, path string) (map[string]string, string) {
	res := map[string]string{}
	defaultKey := ""
	for part := range strings.SplitSeq(data, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		if k, v, ok := strings.Cut(part, "="); ok && k != "" && v != "" {
			if _, dup := res[k]; dup {
				return nil, "duplicate key in comma-separated list property: " + k + "\n"
			}
			schema := format[k]
			if schema != nil && schema.Alias != "" {
				if schema.KeyAlias != "" {
					if _, dup := res[schema.KeyAlias]; dup {
						return nil, "key alias '" + schema.KeyAlias + "' is already defined\n"
					}
					res[schema.KeyAlias] = k
				}
				k = schema.Alias
				schema = format[k]
			}
			if schema == nil {
				return nil, "invalid key in comma-separated list property: " + k + "\n"
			}
			if schema.Type == "boolean" {
				v, _ = parseBoolean(v)
			}
			res[k] = v
			continue
		} else if !strings.Contains(part, "=") {
			if defaultKey != "" {
				return nil, "duplicate key in comma-separated list property: " + defaultKey + "\n"
			}
			for _, key := range slices.Sorted(maps.Keys(format)) {
				if format[key].DefaultKey {
					defaultKey = key
					if res[key] != "" {
						return nil, "duplicate key in comma-separated list property: " + key + "\n"
					}
					res[key] = part
					break
				}
			}
			if defaultKey == "" {
				return nil, "value without key, but schema does not define a default key\n"
			}
			continue
		}
		return nil, "missing key in comma-separated list property\n"
	}
	errs := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(format)) {
		p := format[k]
		sub := k
		if path != "" {
			sub = path + "." + k
		}
		v, ok := res[k]
		if !ok {
			if !bool(p.Optional) && p.Alias == "" {
				addError(errs, sub, "property is missing and it is not optional")
			}
			continue
		}
		c.checkProp(errs, sub, p, scalar(v))
	}
	for _, k := range slices.Sorted(maps.Keys(res)) {
		if format[k] == nil {
			sub := k
			if path != "" {
				sub = path + "." + k
			}
			addError(errs, sub, "property is not defined in schema and the schema does not allow additional properties")
		}
	}
	if len(errs) > 0 {
		msg := "format error\n"
		for _, k := range slices.Sorted(maps.Keys(errs)) {
			msg += k + ": " + errs[k] + "\n"
		}
		return nil, msg
	}
	return res, ""
}

var (
	reConfigID  = regexp.MustCompile(`^(?i:[a-z][a-z0-9_-]+)$`)
	reID        = regexp.MustCompile(`^(?i:[a-z][a-z0-9\-_.]*[a-z0-9])$`)
	reVMID      = regexp.MustCompile(`^[1-9][0-9]{2,8}$`)
	reNode      = regexp.MustCompile(`^([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)$`)
	reBridge    = regexp.MustCompile(`^[-_.\w\d]+$`)
	reMAC       = regexp.MustCompile(`^(?i:[a-f0-9][02468ace](?::[a-f0-9]{2}){5})$`)
	reDNSName   = regexp.MustCompile(`^(([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)\.)*([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)$`)
	reTag       = regexp.MustCompile(`^(?i:[a-z0-9_][a-z0-9_\-+.]*)$`)
	reUserID    = regexp.MustCompile(`^[^\s:/]+@[A-Za-z][A-Za-z0-9.\-_]+$`)
	reTokenName = regexp.MustCompile(`^(?i:[A-Za-z][A-Za-z0-9.\-_]+)$`)
	reRealm     = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9.\-_]+$`)
	reVolumeID  = regexp.MustCompile(`^(?i:[a-z][a-z0-9\-_.]*[a-z0-9]):(.+)$`)
	reDiskSize  = regexp.MustCompile(`^(\d+(\.\d+)?)([KMGT])?$`)
	reURLEnc    = regexp.MustCompile(`^[-%a-zA-Z0-9_.!~*'()]*$`)
	reIface     = regexp.MustCompile(`^(?i:[a-z][a-z0-9_]{1,20}([:.]\d+)?)$`)
	rePoolID    = regexp.MustCompile(`^[A-Za-z0-9_\-]+$`)
	rePriv      = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9.]*$`)
)

// namedFormats are the string formats the checker verifies, with PVE's
// messages. Formats missing here are accepted unchecked.
var namedFormats = map[string]func(string) string{
	"pve-configid": func(s string) string {
		if !reConfigID.MatchString(s) {
			return "invalid configuration ID '" + s + "'\n"
		}
		return ""
	},
	"pve-storage-id": func(s string) string {
		if !reID.MatchString(s) {
			return "storage ID '" + s + "' contains illegal characters\n"
		}
		return ""
	},
	"pve-vmid": func(s string) string {
		if !reVMID.MatchString(s) {
			return "value does not look like a valid VM ID\n"
		}
		return ""
	},
	"pve-node": func(s string) string {
		if !reNode.MatchString(s) {
			return "value does not look like a valid node name\n"
		}
		return ""
	},
	"pve-bridge-id": func(s string) string {
		if !reBridge.MatchString(s) {
			return "invalid bridge ID '" + s + "'\n"
		}
		return ""
	},
	"mac-addr": func(s string) string {
		if !reMAC.MatchString(s) {
			return "value does not look like a valid unicast MAC address\n"
		}
		return ""
	},
	"ipv4": func(s string) string {
		if a, err := netip.ParseAddr(s); err != nil || !a.Is4() {
			return "value does not look like a valid IPv4 address\n"
		}
		return ""
	},
	"ipv6": func(s string) string {
		if a, err := netip.ParseAddr(s); err != nil || !a.Is6() || a.Zone() != "" {
			return "value does not look like a valid IPv6 address\n"
		}
		return ""
	},
	"ip": func(s string) string {
		if a, err := netip.ParseAddr(s); err != nil || a.Zone() != "" {
			return "value does not look like a valid IP address\n"
		}
		return ""
	},
	"CIDRv4": func(s string) string {
		if !isCIDR(s, 4) {
			return "value does not look like a valid IPv4 CIDR network\n"
		}
		return ""
	},
	"CIDRv6": func(s string) string {
		if !isCIDR(s, 6) {
			return "value does not look like a valid IPv6 CIDR network\n"
		}
		return ""
	},
	"CIDR": func(s string) string {
		if !isCIDR(s, 4) && !isCIDR(s, 6) {
			return "value does not look like a valid CIDR network\n"
		}
		return ""
	},
	"pve-ipv4-config": func(s string) string {
		if s != "dhcp" && s != "manual" && !isCIDR(s, 4) {
			return "value does not look like a valid ipv4 network configuration\n"
		}
		return ""
	},
	"pve-ipv6-config": func(s string) string {
		if s != "auto" && s != "dhcp" && s != "manual" && !isCIDR(s, 6) {
			return "value does not look like a valid ipv6 network configuration\n"
		}
		return ""
	},
	"dns-name": func(s string) string {
		if !reDNSName.MatchString(s) {
			return "value does not look like a valid DNS name\n"
		}
		return ""
	},
	"address": func(s string) string {
		if _, err := netip.ParseAddr(s); err != nil && !reDNSName.MatchString(s) {
			return "value does not look like a valid address: " + s + "\n"
		}
		return ""
	},
	"disk-size": func(s string) string {
		if !reDiskSize.MatchString(s) {
			return "value does not look like a valid disk size: " + s + "\n"
		}
		return ""
	},
	"urlencoded": func(s string) string {
		if !reURLEnc.MatchString(s) {
			return "invalid urlencoded string: " + s + "\n"
		}
		return ""
	},
	"pve-iface": func(s string) string {
		if !reIface.MatchString(s) {
			return "invalid network interface name '" + s + "'\n"
		}
		return ""
	},
	"pve-tag": func(s string) string {
		if !reTag.MatchString(s) {
			return "invalid characters in tag\n"
		}
		return ""
	},
	"pve-userid": func(s string) string {
		if len(s) > 64 || !reUserID.MatchString(s) {
			return "value '" + s + "' does not look like a valid user name\n"
		}
		return ""
	},
	"pve-tokenid": func(s string) string {
		user, token, ok := strings.Cut(s, "!")
		if !ok || !reUserID.MatchString(user) || !reTokenName.MatchString(token) {
			return "value '" + s + "' does not look like a valid token ID\n"
		}
		return ""
	},
	"pve-realm": func(s string) string {
		if !reRealm.MatchString(s) {
			return "value '" + s + "' does not look like a valid realm\n"
		}
		return ""
	},
	"pve-poolid": func(s string) string {
		if !rePoolID.MatchString(s) {
			return "invalid pool ID '" + s + "'\n"
		}
		return ""
	},
	"pve-priv": func(s string) string {
		if !rePriv.MatchString(s) {
			return "invalid privilege name '" + s + "'\n"
		}
		return ""
	},
	"pve-volume-id": func(s string) string {
		if !reVolumeID.MatchString(s) {
			return "unable to parse volume ID '" + s + "'\n"
		}
		return ""
	},
	"pve-volume-id-or-qm-path": func(s string) string {
		if s == "none" || s == "cdrom" || strings.HasPrefix(s, "/") || reVolumeID.MatchString(s) {
			return ""
		}
		return "unable to parse volume ID '" + s + "'\n"
	},
	"pve-volume-id-or-absolute-path": func(s string) string {
		if strings.HasPrefix(s, "/") || reVolumeID.MatchString(s) {
			return ""
		}
		return "unable to parse volume ID '" + s + "'\n"
	},
	"pve-storage-content": func(s string) string {
		switch s {
		case "images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import", "none":
			return ""
		}
		return "invalid content type '" + s + "'\n"
	},
	"pve-qm-bootdev": func(s string) string {
		if !reBootDisk.MatchString(s) && !reBootDev.MatchString(s) {
			return "invalid boot device '" + s + "'\n"
		}
		return ""
	},
	"pve-qm-bootdisk": func(s string) string {
		if !reBootDisk.MatchString(s) {
			return "invalid drive name '" + s + "'\n"
		}
		return ""
	},
}

var (
	reBootDisk = regexp.MustCompile(`^(ide[0-3]|sata[0-5]|scsi([0-9]|[12][0-9]|30)|virtio([0-9]|1[0-5])|efidisk0|tpmstate0)$`)
	reBootDev  = regexp.MustCompile(`^(net([0-9]|[12][0-9]|3[01])|hostpci([0-9]|1[0-5])|usb([0-9]|1[0-3]))$`)
)

// hashFormats are named property-string formats the dump shows only by
// name (qemu-server registers them): keys as PVE defines them.
var hashFormats = map[string]map[string]*propSchema{
	"pve-qm-ipconfig": {
		"ip":  {Type: "string", Optional: true, Format: &formatSpec{Name: "pve-ipv4-config"}},
		"gw":  {Type: "string", Optional: true, Format: &formatSpec{Name: "ipv4"}},
		"ip6": {Type: "string", Optional: true, Format: &formatSpec{Name: "pve-ipv6-config"}},
		"gw6": {Type: "string", Optional: true, Format: &formatSpec{Name: "ipv6"}},
	},
	"pve-qm-cicustom": {
		"meta":    {Type: "string", Optional: true, Format: &formatSpec{Name: "pve-volume-id"}},
		"network": {Type: "string", Optional: true, Format: &formatSpec{Name: "pve-volume-id"}},
		"user":    {Type: "string", Optional: true, Format: &formatSpec{Name: "pve-volume-id"}},
		"vendor":  {Type: "string", Optional: true, Format: &formatSpec{Name: "pve-volume-id"}},
	},
	"pve-qm-boot": {
		"legacy": {Type: "string", Optional: true, DefaultKey: true, Pattern: `[acdn]{1,4}`},
		"order":  {Type: "string", Optional: true, Format: &formatSpec{Name: "pve-qm-bootdev-list"}},
	},
}

func isCIDR(s string, family int) bool {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return false
	}
	if family == 4 {
		return p.Addr().Is4() && p.Bits() > 7 && p.Bits() <= 32
	}
	return p.Addr().Is6() && p.Addr().Zone() == "" && p.Bits() > 7 && p.Bits() <= 128
}
