package smoke

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"

	"gopkg.in/yaml.v3"

	"github.com/fhlab/provision/internal/render"
)

// offlineKeys are user-data keys the smoke boot drops: the guest has no
// network (-nic none), and the golden image has the packages already.
var offlineKeys = []string{"package_update", "package_upgrade", "package_reboot_if_required", "packages", "apt"}

// SmokeUserData returns the node's user-data with the smoke check added:
// the check script and its unit under write_files, a runcmd entry that
// starts the unit once cloud-init is done, and without the package steps
// (offlineKeys) the network-less guest cannot run.
func SmokeUserData(userData []byte, script string) ([]byte, error) {
	return EditUserData(userData, func(root *yaml.Node) {
		for i := 0; i < len(root.Content); i += 2 {
			if slices.Contains(offlineKeys, root.Content[i].Value) {
				root.Content = slices.Delete(root.Content, i, i+2)
				i -= 2
			}
		}
		files := seq(root, "write_files")
		files.Content = append(files.Content,
			writeFile(ScriptPath, "0755", script),
			writeFile("/etc/systemd/system/"+UnitName, "0644", unit))
		AddCommand(root, "runcmd", "systemctl", "start", "--no-block", UnitName)
	})
}

// EditUserData parses a #cloud-config user-data, lets edit change its
// top-level mapping, and writes it out again.
func EditUserData(userData []byte, edit func(root *yaml.Node)) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(userData, &doc); err != nil {
		return nil, fmt.Errorf("user-data: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("user-data: not a #cloud-config mapping")
	}
	edit(doc.Content[0])
	var out bytes.Buffer
	out.WriteString("#cloud-config\n")
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("user-data: %w", err)
	}
	return out.Bytes(), nil
}

// AddCommand appends a command (argv, in flow style) to the list under key
// (bootcmd, runcmd) of a user-data mapping.
func AddCommand(root *yaml.Node, key string, argv ...string) {
	s := seq(root, key)
	s.Content = append(s.Content, flowSeq(argv...))
}

// seq returns root's sequence under key, adding an empty one.
func seq(root *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == key && root.Content[i+1].Kind == yaml.SequenceNode {
			return root.Content[i+1]
		}
	}
	s := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	root.Content = append(root.Content, scalar(key), s)
	return s
}

func scalar(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v} }

func writeFile(path, perm, content string) *yaml.Node {
	c := scalar(content)
	c.Style = yaml.LiteralStyle
	p := scalar(perm)
	p.Style = yaml.DoubleQuotedStyle
	return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{
		scalar("path"), scalar(path), scalar("owner"), scalar("root:root"),
		scalar("permissions"), p, scalar("content"), c,
	}}
}

func flowSeq(vals ...string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
	for _, v := range vals {
		n.Content = append(n.Content, scalar(v))
	}
	return n
}

// SeedDisk writes a NoCloud seed disk: a FAT filesystem labelled CIDATA
// holding user-data, meta-data and network-config, made with mkfs.vfat
// and mtools (no mount). cloud-init finds it by its label.
func SeedDisk(ctx context.Context, path string, files render.Files) error {
	dir := filepath.Dir(path)
	if err := os.RemoveAll(path); err != nil {
		return err
	}
	mk := exec.CommandContext(ctx, "mkfs.vfat", "-C", "-n", "CIDATA", path, "2048")
	if out, err := mk.CombinedOutput(); err != nil {
		return fmt.Errorf("seed disk %s: mkfs.vfat: %w: %s", path, err, out)
	}
	for name, data := range files.ByName() {
		if data == nil && name == render.NetworkConfig {
			continue // optional
		}
		src := filepath.Join(dir, name)
		if err := os.WriteFile(src, data, 0o600); err != nil {
			return fmt.Errorf("seed disk %s: %w", path, err)
		}
		cp := exec.CommandContext(ctx, "mcopy", "-o", "-i", path, src, "::"+name)
		cp.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		if out, err := cp.CombinedOutput(); err != nil {
			return fmt.Errorf("seed disk %s: mcopy %s: %w: %s", path, name, err, out)
		}
	}
	return nil
}
