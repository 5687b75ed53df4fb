package pvesim

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// schemaGz is PVE's API schema (pve-docs api-viewer apidata.js as JSON,
// the tree of {path, text, info:{METHOD:{parameters, returns, permissions,
// proxyto, allowtoken, ...}}, children}), gzip-compressed.
//
//go:embed pve-api-schema.json.gz
var schemaGz []byte

// apiSchema is the parsed path tree. It is built once per Sim and never
// changed afterwards.
type apiSchema struct {
	root *pathNode
	// paths counts the schema's paths, for tests and docs.
	paths int
}

// pathNode is one path of the API, e.g. /nodes/{node}/qemu.
type pathNode struct {
	path     string // the schema's path, e.g. /nodes/{node}/qemu/{vmid}
	segment  string // last segment: a literal or "{param}"
	param    string // the parameter name when segment is {param}
	methods  map[string]*methodInfo
	literals map[string]*pathNode
	params   []*pathNode // children whose segment is a {param}
}

// methodInfo is what the simulator uses of one method's schema.
type methodInfo struct {
	Method      string         `json:"method"`
	Name        string         `json:"name"`
	Parameters  *objectSchema  `json:"parameters"`
	Permissions map[string]any `json:"permissions"`
	Proxyto     string         `json:"proxyto"`
	AllowToken  flexBool       `json:"allowtoken"`
	Protected   flexBool       `json:"protected"`
}

// objectSchema is a method's parameters.
type objectSchema struct {
	AdditionalProperties flexBool               `json:"additionalProperties"`
	Properties           map[string]*propSchema `json:"properties"`
	// indexed holds "scsi[n]"-style properties by their prefix ("scsi").
	indexed map[string]*propSchema
}

// propSchema is PVE's JSONSchema subset for one parameter or one key of a
// property string.
type propSchema struct {
	Type       string      `json:"type"`
	Optional   flexBool    `json:"optional"`
	Format     *formatSpec `json:"format"`
	Enum       []flexStr   `json:"enum"`
	Pattern    string      `json:"pattern"`
	MinLength  *flexNum    `json:"minLength"`
	MaxLength  *flexNum    `json:"maxLength"`
	Minimum    *flexNum    `json:"minimum"`
	Maximum    *flexNum    `json:"maximum"`
	DefaultKey flexBool    `json:"default_key"`
	Alias      string      `json:"alias"`
	KeyAlias   string      `json:"keyAlias"`
	Requires   flexStr     `json:"requires"`
	Items      *propSchema `json:"items"`
	TypeText   string      `json:"typetext"`
}

// formatSpec is either a named format ("pve-vmid") or an inline property
// string format (key → schema).
type formatSpec struct {
	Name string
	Keys map[string]*propSchema
}

func (f *formatSpec) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &f.Name)
	}
	if len(b) > 0 && b[0] == '{' {
		return json.Unmarshal(b, &f.Keys)
	}
	return nil // other shapes carry nothing the checker uses
}

// flexBool reads PVE's 0/1 (as number or string) and JSON booleans.
type flexBool bool

func (v *flexBool) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	*v = flexBool(s == "1" || s == "true")
	return nil
}

// flexNum reads a number written as a JSON number or string.
type flexNum float64

func (v *flexNum) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil // "N" and such in a few schema entries: no bound
	}
	*v = flexNum(f)
	return nil
}

// String renders a bound as Perl would print it.
func (v flexNum) String() string { return strconv.FormatFloat(float64(v), 'f', -1, 64) }

// flexStr reads a string or number as a string; objects become "".
type flexStr string

func (v *flexStr) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*v = flexStr(s)
	case len(b) > 0 && (b[0] == '{' || b[0] == '['):
		*v = ""
	default:
		*v = flexStr(b)
	}
	return nil
}

type rawNode struct {
	Path     string                 `json:"path"`
	Info     map[string]*methodInfo `json:"info"`
	Children []*rawNode             `json:"children"`
}

// indexMax is the highest index of PVE's "name[n]" properties (the
// schema dump collapses scsi0..scsi30 into "scsi[n]").
var indexMax = map[string]int{
	"acmedomain": 4, "dev": 255, "hostpci": 15, "ide": 3, "ipconfig": 31,
	"link": 7, "mp": 255, "net": 31, "numa": 7, "parallel": 2, "sata": 5,
	"scsi": 30, "serial": 3, "unused": 255, "usb": 13, "virtio": 15,
	"virtiofs": 9,
}

// loadSchema parses the embedded schema.
func loadSchema() (*apiSchema, error) {
	zr, err := gzip.NewReader(bytes.NewReader(schemaGz))
	if err != nil {
		return nil, fmt.Errorf("pvesim: read embedded API schema: %w", err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("pvesim: read embedded API schema: %w", err)
	}
	var roots []*rawNode
	if err := json.Unmarshal(data, &roots); err != nil {
		return nil, fmt.Errorf("pvesim: parse embedded API schema: %w", err)
	}
	s := &apiSchema{root: &pathNode{path: "", literals: map[string]*pathNode{}}}
	var add func(n *rawNode)
	add = func(n *rawNode) {
		s.insert(n)
		for _, c := range n.Children {
			add(c)
		}
	}
	for _, r := range roots {
		add(r)
	}
	return s, nil
}

func (s *apiSchema) insert(n *rawNode) {
	cur := s.root
	for seg := range strings.SplitSeq(strings.Trim(n.Path, "/"), "/") {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			var next *pathNode
			for _, p := range cur.params {
				if p.segment == seg {
					next = p
				}
			}
			if next == nil {
				next = &pathNode{segment: seg, param: seg[1 : len(seg)-1], literals: map[string]*pathNode{}}
				cur.params = append(cur.params, next)
			}
			cur = next
			continue
		}
		next := cur.literals[seg]
		if next == nil {
			next = &pathNode{segment: seg, literals: map[string]*pathNode{}}
			cur.literals[seg] = next
		}
		cur = next
	}
	cur.path = n.Path
	if cur.methods == nil {
		s.paths++
		cur.methods = map[string]*methodInfo{}
	}
	for m, info := range n.Info {
		if info.Parameters != nil {
			info.Parameters.index()
		}
		cur.methods[m] = info
	}
}

func (o *objectSchema) index() {
	for k, p := range o.Properties {
		if prefix, ok := strings.CutSuffix(k, "[n]"); ok {
			if o.indexed == nil {
				o.indexed = map[string]*propSchema{}
			}
			o.indexed[prefix] = p
		}
	}
}

// lookup finds the schema for a parameter name, expanding "scsi[n]".
func (o *objectSchema) lookup(name string) *propSchema {
	if p, ok := o.Properties[name]; ok && !strings.HasSuffix(name, "[n]") {
		return p
	}
	i := len(name)
	for i > 0 && name[i-1] >= '0' && name[i-1] <= '9' {
		i--
	}
	if i == len(name) || i == 0 {
		return nil
	}
	p := o.indexed[name[:i]]
	if p == nil {
		return nil
	}
	digits := name[i:]
	if len(digits) > 1 && digits[0] == '0' {
		return nil
	}
	n, err := strconv.Atoi(digits)
	if err != nil {
		return nil
	}
	if limit, ok := indexMax[name[:i]]; ok && n > limit {
		return nil
	}
	return p
}

// match resolves a request path (relative to /api2/json) to its schema
// node and the path parameters. Literal segments win over {param} ones,
// as in PVE's find_handler.
func (s *apiSchema) match(path string) (*pathNode, map[string]string) {
	params := map[string]string{}
	cur := s.root
	path = strings.Trim(path, "/")
	if path == "" {
		return nil, nil
	}
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "" {
			return nil, nil
		}
		if next, ok := cur.literals[seg]; ok {
			cur = next
			continue
		}
		if len(cur.params) == 0 {
			return nil, nil
		}
		next := cur.params[0]
		params[next.param] = seg
		cur = next
	}
	if cur.methods == nil {
		return nil, nil
	}
	return cur, params
}
