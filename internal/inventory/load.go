package inventory

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"

	"gopkg.in/yaml.v3"
)

// maxFileSize bounds what Parse will read; a real inventory is a few KiB.
const maxFileSize = 4 << 20

// Inventory is a loaded, defaulted and expanded lab: the spec as written and
// the nodes it describes.
type Inventory struct {
	File  string
	Dir   string // relative paths in the file start here
	Lab   Lab
	Nodes []Node
	lines map[string]int
}

// PrivateKeyPath is ssh.privateKeyFile resolved against the inventory.
func (inv *Inventory) PrivateKeyPath() string {
	return ResolvePath(inv.Dir, inv.Lab.SSH.PrivateKeyFile)
}

// Line returns the line of a field path in the inventory file, or 0.
func (inv *Inventory) Line(path string) int { return inv.lines[path] }

// FS reads the files an inventory refers to (rack CSVs). Tests and the fuzzer
// pass a map; the CLI passes the real file system.
type FS interface {
	ReadFile(name string) ([]byte, error)
}

// OSFS reads from the operating system.
type OSFS struct{}

// ReadFile implements FS.
func (OSFS) ReadFile(name string) ([]byte, error) { return os.ReadFile(name) }

// Load reads, decodes, defaults, expands and validates an inventory file.
// The error, if any, is Problems: every problem found, each with its place.
func Load(path string) (*Inventory, error) {
	data, err := os.ReadFile(path)
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
		p := Problem{File: path, Msg: "not valid YAML: " + err.Error()}
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
	inv := &Inventory{File: path, Dir: filepath.Dir(path), Lab: lab, lines: d.lines}
	inv.Lab.SetDefaults()
	probs := inv.expand(fsys, inv.Dir)
	probs = append(probs, inv.validate()...)
	if err := probs.Err(); err != nil {
		return nil, err
	}
	return inv, nil
}

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
