package inventory

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// AddRack returns the inventory file's bytes with rack r appended to
// pis.racks as one flow-style line, every other byte as it was (comments,
// order, spacing), and the 1-based line the rack is on. It does not
// validate the result: Parse the bytes for that.
func AddRack(path string, data []byte, r Rack) ([]byte, int, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	if len(root.Content) == 0 {
		return nil, 0, fmt.Errorf("%s: empty file", path)
	}
	pis := mapValue(root.Content[0], "pis")
	racks := mapValue(pis, "racks")
	switch {
	case racks == nil:
		return nil, 0, fmt.Errorf("%s: no pis.racks section to add the rack to: write the first rack by hand (see inventory/example.yaml)", path)
	case racks.Kind != yaml.SequenceNode || racks.Style&yaml.FlowStyle != 0 || len(racks.Content) == 0:
		return nil, 0, fmt.Errorf("%s:%d: pis.racks is not a list of racks one per item (- {...}): add the rack by hand", path, racks.Line)
	}
	last := racks.Content[len(racks.Content)-1]
	lines := strings.SplitAfter(string(data), "\n")
	itemLine := lines[last.Line-1]
	dash := strings.LastIndex(itemLine[:min(last.Column-1, len(itemLine))], "-")
	if dash < 0 || strings.TrimSpace(itemLine[:dash]) != "" {
		return nil, 0, fmt.Errorf("%s:%d: cannot tell how the racks are indented: add the rack by hand", path, last.Line)
	}
	flow, err := rackFlow(r)
	if err != nil {
		return nil, 0, err
	}
	after := endLine(last) // the rack goes after the last line of the last item
	newLine := itemLine[:dash] + "- " + flow + "\n"
	if after > len(lines) {
		after = len(lines)
	}
	if after > 0 && !strings.HasSuffix(lines[after-1], "\n") {
		lines[after-1] += "\n"
	}
	out := slices.Concat(lines[:after], []string{newLine}, lines[after:])
	return []byte(strings.Join(out, "")), after + 1, nil
}

// mapValue is the value of key in mapping n, or nil.
func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// endLine is the last line any part of n is on.
func endLine(n *yaml.Node) int {
	end := n.Line
	for _, c := range n.Content {
		end = max(end, endLine(c))
	}
	return end
}

// rackFlow is r as a flow mapping in the inventory's field order, empty
// fields left out.
func rackFlow(r Rack) (string, error) {
	m := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
	add := func(k, v string, tag string) {
		if v == "" {
			return
		}
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, &yaml.Node{Kind: yaml.ScalarNode, Value: v, Tag: tag})
	}
	add("name", r.Name, "!!str")
	add("count", strconv.Itoa(r.Count), "!!int")
	add("role", r.Role, "!!str")
	add("boot", r.Boot, "!!str")
	add("ipStart", r.IPStart, "!!str")
	add("namePattern", r.Pattern, "!!str")
	add("nodes", r.Nodes, "!!str")
	add("image", r.Image, "!!str")
	add("join", r.Join, "!!str")
	if len(r.Labels) > 0 {
		l := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
		for _, k := range slices.Sorted(maps.Keys(r.Labels)) {
			l.Content = append(l.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k, Tag: "!!str"}, &yaml.Node{Kind: yaml.ScalarNode, Value: r.Labels[k], Tag: "!!str"})
		}
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "labels"}, l)
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(m); err != nil {
		return "", err
	}
	enc.Close()
	s := strings.TrimSpace(b.String())
	if strings.Contains(s, "\n") {
		return "", fmt.Errorf("rack %s does not fit on one line", r.Name)
	}
	return s, nil
}
