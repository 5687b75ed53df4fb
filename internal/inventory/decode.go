package inventory

import (
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"
)

// maxAliasExpansions bounds the YAML nodes decoded through aliases (the
// aliases and everything under them) so a hostile file cannot make the
// decoder walk an exponential tree ("billion laughs") or one small anchored
// subtree a thousand times over.
const maxAliasExpansions = 10000

// maxListLen bounds every list in the file. The longest real ones (VM
// groups, racks, keys) have tens of entries; validation compares some lists
// pairwise, so a list of 100,000 pools must stop here.
const maxListLen = 1000

// decoder turns a YAML node tree into Go values strictly: unknown fields,
// duplicate keys and wrong types are problems with a file, line and field
// path, and every one of them is reported, not only the first.
type decoder struct {
	file    string
	lines   map[string]int // field path → line of its value
	zeros   []string       // paths of whole numbers written as 0
	probs   Problems
	aliases int // nodes decoded through aliases so far
	inAlias int // depth of alias expansion
}

func (d *decoder) problem(line int, path, format string, args ...any) {
	d.probs = append(d.probs, Problem{File: d.file, Line: line, Field: path, Msg: fmt.Sprintf(format, args...)})
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// secretKey matches field names that would hold a secret.
var secretKey = regexp.MustCompile(`(?i)^(token|tokensecret|secret|password|passwd|privatekey|apikey|jointoken|pm_api_token_secret)$`)

// secretValue matches values that are secrets whatever field they are in.
var secretValue = regexp.MustCompile(`PVEAPIToken=|SWMTKN-1-|-----BEGIN [A-Z ]*PRIVATE KEY-----|![A-Za-z0-9_.-]+=[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-`)

// urlCredentials matches a URL with a user name or password in it.
var urlCredentials = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@`)

// controlChar returns the first control character in s (C0, DEL, C1, the
// Unicode line and paragraph separators) and its byte offset, or -1. Every
// inventory string ends up in a rendered file or a command line, where a
// line break would start a new entry.
func controlChar(s string) (rune, int) {
	for i, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return r, i
		}
	}
	return 0, -1
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode || d.inAlias > 0 {
		d.aliases++
		if d.aliases > maxAliasExpansions {
			if d.aliases == maxAliasExpansions+1 {
				d.problem(n.Line, path, "too many YAML alias expansions (aliases stand for more than %d nodes)", maxAliasExpansions)
			}
			return
		}
	}
	if n.Kind == yaml.AliasNode {
		d.inAlias++
		d.decode(n.Alias, v, path)
		d.inAlias--
		return
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) > 0 {
			d.decode(n.Content[0], v, path)
		}
		return
	}
	if path != "" {
		d.lines[path] = n.Line
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // absent value: the default applies
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.Slice:
		d.decodeSlice(n, v, path)
	default:
		d.decodeScalar(n, v, path)
	}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

func (d *decoder) expect(n *yaml.Node, kind yaml.Kind, path, want string) bool {
	if n.Kind != kind {
		d.problem(n.Line, path, "must be %s, not %s", want, kindName(n))
		return false
	}
	return true
}

// mapping walks the key/value pairs of a mapping node, reporting duplicate
// keys and secrets, and calls fn for each remaining pair.
func (d *decoder) mapping(n *yaml.Node, path string, fn func(key string, kn, vn *yaml.Node)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		key := kn.Value
		if first, dup := seen[key]; dup {
			d.problem(kn.Line, join(path, key), "duplicate key (first at line %d)", first)
			continue
		}
		seen[key] = kn.Line
		if r, _ := controlChar(key); r != 0 {
			d.problem(kn.Line, path, "a key contains the control character %U: keys are plain names", r)
			continue
		}
		if secretKey.MatchString(key) {
			d.problem(kn.Line, join(path, key), "secrets must not be written in the inventory: set them in the environment (see `provision --help`)")
			continue
		}
		fn(key, kn, vn)
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if !d.expect(n, yaml.MappingNode, path, "a mapping") {
		return
	}
	fields := map[string]int{}
	var names []string
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		fields[tag] = i
		names = append(names, tag)
	}
	sort.Strings(names)
	d.mapping(n, path, func(key string, kn, vn *yaml.Node) {
		i, ok := fields[key]
		if !ok {
			d.problem(kn.Line, join(path, key), "unknown field (known here: %s)", strings.Join(names, ", "))
			return
		}
		d.decode(vn, v.Field(i), join(path, key))
	})
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if !d.expect(n, yaml.MappingNode, path, "a mapping") {
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	d.mapping(n, path, func(key string, kn, vn *yaml.Node) {
		ev := reflect.New(v.Type().Elem()).Elem()
		d.decode(vn, ev, join(path, key))
		v.SetMapIndex(reflect.ValueOf(key), ev)
	})
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string) {
	if !d.expect(n, yaml.SequenceNode, path, "a list") {
		return
	}
	if len(n.Content) > maxListLen {
		d.problem(n.Line, path, "has %d entries, more than the %d an inventory list may have", len(n.Content), maxListLen)
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, en := range n.Content {
		d.decode(en, s.Index(i), index(path, i))
	}
	v.Set(s)
}

func (d *decoder) decodeScalar(n *yaml.Node, v reflect.Value, path string) {
	switch v.Kind() {
	case reflect.String:
		if !d.expect(n, yaml.ScalarNode, path, "a string") {
			return
		}
		if secretValue.MatchString(n.Value) {
			d.problem(n.Line, path, "this value looks like a secret (token or private key): secrets must come from the environment, never the inventory")
			return
		}
		if urlCredentials.MatchString(n.Value) {
			d.problem(n.Line, path, "credentials in the URL: a user name or password must not be written in the inventory (the Proxmox token comes from the environment)")
			return
		}
		if r, at := controlChar(n.Value); r != 0 {
			d.problem(n.Line, path, "contains the control character %U at byte %d: line breaks, tabs and other control characters are not allowed in inventory values", r, at)
			return
		}
		v.SetString(n.Value)
	case reflect.Int:
		if !d.expect(n, yaml.ScalarNode, path, "a whole number") {
			return
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
		if n.Tag != "!!int" || err != nil || i < -1<<31 || i > 1<<31-1 {
			d.problem(n.Line, path, "must be a whole number, not %q", n.Value)
			return
		}
		if i == 0 {
			d.zeros = append(d.zeros, path)
		}
		v.SetInt(i)
	case reflect.Bool:
		if !d.expect(n, yaml.ScalarNode, path, "true or false") {
			return
		}
		if n.Tag != "!!bool" {
			d.problem(n.Line, path, "must be true or false, not %q", n.Value)
			return
		}
		v.SetBool(n.Value == "true" || n.Value == "True" || n.Value == "TRUE")
	default:
		panic(fmt.Sprintf("inventory: no decoder for %s at %s", v.Type(), path))
	}
}
