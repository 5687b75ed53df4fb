package inventory

import (
	"bytes"
	"reflect"

	"gopkg.in/yaml.v3"
)

// DecodeStrict decodes one YAML document into v (a pointer to a struct with
// yaml tags) the way inventories are decoded: unknown fields, duplicate keys,
// wrong types and secrets are Problems naming file, line and field, all of
// them at once. Other files provision reads (image definitions) use it. It
// returns the line of every field path it decoded ("boot.config" → 12).
func DecodeStrict(file string, data []byte, v any) (map[string]int, error) {
	if len(data) > maxFileSize {
		return nil, Problems{{File: file, Msg: "file is too large"}}
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		p := yamlProblem(file, err)
		return nil, Problems{p}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, Problems{{File: file, Line: extra.Line, Msg: "more than one YAML document"}}
	}
	d := &decoder{file: file, lines: map[string]int{}}
	d.decode(&root, reflect.ValueOf(v).Elem(), "")
	return d.lines, d.probs.Err()
}

// RackImage is the image definition the rack's Pis boot: the rack's
// image, else pis.image; "" when neither is set.
func (inv *Inventory) RackImage(rack string) string {
	if inv.Lab.Pis == nil {
		return ""
	}
	for _, r := range inv.Lab.Pis.Racks {
		if r.Name == rack && r.Image != "" {
			return r.Image
		}
	}
	return inv.Lab.Pis.Image
}
