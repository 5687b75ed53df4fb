package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/fhlab/provision/internal/userfile"
	"gopkg.in/yaml.v3"
)

// maxFileSize bounds what Parse will read; a real inventory is a few KiB.
const maxFileSize = userfile.MaxInventory

// Inventory is a loaded, defaulted and expanded lab: the spec as written and
// the nodes it describes.
type Inventory struct {
	File  string
	Dir   string // relative paths in the file start here
	Lab   Lab
	Nodes []Node
	lines map[string]int
	zeros map[string]bool // fields written as 0
}

// PrivateKeyPath is ssh.privateKeyFile resolved against the inventory.
func (inv *Inventory) PrivateKeyPath() string {
	return ResolvePath(inv.Dir, inv.Lab.SSH.PrivateKeyFile)
}

// Line returns the line of a field path in the inventory file, or 0.
func (inv *Inventory) Line(path string) int { return inv.lines[path] }

// FS reads the files an inventory refers to (rack CSVs, public keys). Tests
// and the fuzzer pass a map; the CLI passes the real file system.
type FS interface {
	ReadFile(name string) ([]byte, error)
}

// CheckFS is an FS that can also tell, without reading, whether a file
// that a later stage reads (the CA file, the private key) is a regular file
// of at most limit bytes; see userfile.Check.
type CheckFS interface {
	FS
	Check(name string, limit int64) error
}

// OSFS reads from the operating system: regular files of bounded size only
// (a device, FIFO or directory is refused before it is opened).
type OSFS struct{}

// ReadFile implements FS.
func (OSFS) ReadFile(name string) ([]byte, error) { return userfile.Read(name, maxFileSize) }

// Check implements CheckFS.
func (OSFS) Check(name string, limit int64) error { return userfile.Check(name, limit) }

// Load reads, decodes, defaults, expands and validates an inventory file.
// The error, if any, is Problems: every problem found, each with its place.
func Load(path string) (*Inventory, error) {
	data, err := userfile.Read(path, maxFileSize)
	var ue *userfile.Error
	if errors.As(err, &ue) {
		return nil, Problems{{File: path, Msg: "cannot read the inventory: " + ue.Reason}}
	}
	if err != nil {
		return nil, fmt.Errorf("read inventory: %w", err)
	}
	return Parse(path, data, OSFS{})
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlParserErrors are the problems yaml.v3's parser, unlike its scanner,
// reports with a 0-based line number.
var yamlParserErrors = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found undefined tag handle":             true,
	"found duplicate %YAML directive":        true,
	"found duplicate %TAG directive":         true,
	"found incompatible YAML document":       true,
}

// Parse is Load on bytes already read. Files the inventory names (rack CSVs)
// are read through fsys, relative to the directory of path.
func Parse(path string, data []byte, fsys FS) (*Inventory, error) {
	if len(data) > maxFileSize {
		return nil, Problems{{File: path, Msg: fmt.Sprintf("file is larger than %d bytes; is this an inventory?", maxFileSize)}}
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		p := yamlProblem(path, err)
		if p.Line == 0 {
			p.Line, p.Msg = locateYAMLError(data, err.Error(), p.Msg)
		}
		return nil, Problems{p}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, Problems{{File: path, Line: extra.Line, Msg: "more than one YAML document: an inventory is one document"}}
	}

	d := &decoder{file: path, lines: map[string]int{}}
	if ps := checkHeader(path, &root); len(ps) > 0 {
		return nil, ps
	}
	var lab Lab
	d.decode(&root, reflect.ValueOf(&lab).Elem(), "")
	if len(d.probs) > 0 {
		return nil, d.probs.Err()
	}
	inv := &Inventory{File: path, Dir: filepath.Dir(path), Lab: lab, lines: d.lines, zeros: map[string]bool{}}
	for _, z := range d.zeros {
		inv.zeros[z] = true
	}
	inv.Lab.SetDefaults()
	if err := inv.explicitZeros(d.zeros).Err(); err != nil {
		return nil, err
	}
	probs := inv.expand(fsys, inv.Dir)
	probs = append(probs, inv.validate()...)
	if err := probs.Err(); err != nil {
		return nil, err
	}
	return inv, nil
}

var unknownAnchor = regexp.MustCompile(`^yaml: unknown anchor '(.*)' referenced$`)

// yamlProblem is the Problem of a YAML syntax error yaml.v3 returned while
// decoding file: its line when the message has one, and the message
// without yaml.v3's prefix.
func yamlProblem(file string, err error) Problem {
	p := Problem{File: file, Msg: "not valid YAML: " + err.Error()}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		if yamlParserErrors[m[2]] {
			p.Line++
		}
		p.Msg = "not valid YAML: " + m[2]
	}
	if err.Error() == "EOF" {
		p.Msg = "the file is empty"
	}
	return p
}

// locateYAMLError finds the line of the errors yaml.v3 reports without one:
// a byte YAML does not allow (NUL, other control characters, invalid UTF-8)
// and an alias of an anchor that is not defined.
func locateYAMLError(data []byte, err, msg string) (int, string) {
	if m := unknownAnchor.FindStringSubmatch(err); m != nil {
		alias := regexp.MustCompile(`\*` + regexp.QuoteMeta(m[1]) + `(?:[\s,\]}]|$)`)
		if loc := alias.FindIndex(data); loc != nil {
			return lineAt(data, loc[0]), fmt.Sprintf("not valid YAML: alias *%s names no anchor (define &%s before it)", m[1], m[1])
		}
		return 0, msg
	}
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			return lineAt(data, i), fmt.Sprintf("not valid YAML: byte %#02x is not UTF-8", data[i])
		case r == 0:
			return lineAt(data, i), "not valid YAML: a NUL byte; is this a binary file?"
		case r != '\t' && r != '\n' && r != '\r' && r != 0x85 && unicode.IsControl(r):
			return lineAt(data, i), fmt.Sprintf("not valid YAML: control character %U", r)
		}
		i += size
	}
	return 0, msg
}

// lineAt is the 1-based line of byte offset off in data.
func lineAt(data []byte, off int) int { return bytes.Count(data[:off], []byte("\n")) + 1 }

// checkHeader reads apiVersion and kind before anything else, so a file of
// another kind gets one clear message instead of a page of unknown fields.
func checkHeader(path string, root *yaml.Node) Problems {
	doc := root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		doc = doc.Content[0]
	}
	if doc.Kind != yaml.MappingNode {
		return Problems{{File: path, Line: doc.Line, Msg: "an inventory must be a mapping with apiVersion: " + APIVersion + " and kind: " + Kind}}
	}
	var probs Problems
	found := map[string]*yaml.Node{}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		found[doc.Content[i].Value] = doc.Content[i+1]
	}
	for _, want := range []struct{ key, value string }{{"apiVersion", APIVersion}, {"kind", Kind}} {
		n, ok := found[want.key]
		switch {
		case !ok:
			probs = append(probs, Problem{File: path, Line: doc.Line, Field: want.key, Msg: fmt.Sprintf("missing; this tool reads %s: %s", want.key, want.value)})
		case n.Kind != yaml.ScalarNode || n.Value != want.value:
			probs = append(probs, Problem{File: path, Line: n.Line, Field: want.key, Msg: fmt.Sprintf("%q is not supported; this tool reads %s: %s", n.Value, want.key, want.value)})
		}
	}
	return probs
}

// Node returns the node named name, or nil.
func (inv *Inventory) Node(name string) *Node {
	for i := range inv.Nodes {
		if inv.Nodes[i].Name == name {
			return &inv.Nodes[i]
		}
	}
	return nil
}
