package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"text/template"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/render"
)

// SeedManifestName is the file in each node's seed directory that says
// what goes where.
const SeedManifestName = "manifest.json"

// SeedManifest describes one node's seed: the files to put on the boot
// partition of a card flashed with Image (or to serve over netboot).
type SeedManifest struct {
	Node        string  `json:"node"`
	Image       string  `json:"image"`
	ImageSHA256 string  `json:"imageSHA256"`
	Flavour     Flavour `json:"flavour"`
	Seed        string  `json:"seed"`
	// Partition is the MBR partition number the files go to (the FAT boot
	// partition); paths are absolute on that file system.
	Partition  int        `json:"partition"`
	InstanceID string     `json:"instanceID"`
	Files      []SeedFile `json:"files"`
}

// SeedFile is one file of a seed.
type SeedFile struct {
	Path   string `json:"path"`   // on the boot partition: /user-data
	Source string `json:"source"` // in the seed directory: user-data
	SHA256 string `json:"sha256"`
}

// SeedSummary counts what WriteSeeds did.
type SeedSummary struct {
	Nodes, Written, Unchanged int
}

// WriteSeeds writes the seed of every Pi of inv (only those of rack, when
// set) to dir/<node>/: the files the node's image reads at first boot and
// its cmdline.txt, plus manifest.json. Each image must be built (its
// manifest says the flavour and the base cmdline.txt). Files are replaced
// only when their content changes.
func WriteSeeds(ctx context.Context, b *Builder, rack, dir string) (SeedSummary, error) {
	var nodes []*inventory.Node
	for i := range b.Inv.Nodes {
		n := &b.Inv.Nodes[i]
		if n.Kind == inventory.KindPi && (rack == "" || n.Rack == rack) {
			nodes = append(nodes, n)
		}
	}
	if len(nodes) == 0 {
		if rack != "" {
			return SeedSummary{}, fmt.Errorf("seeds: the inventory has no rack %q", rack)
		}
		return SeedSummary{}, errors.New("seeds: the inventory has no Pis (pis.racks)")
	}
	images := map[string]*Result{}
	for _, n := range nodes {
		name := b.Inv.RackImage(n.Rack)
		if name == "" {
			return SeedSummary{}, fmt.Errorf("seeds: rack %s names no image: set pis.image or pis.racks[].image", n.Rack)
		}
		if _, ok := images[name]; ok {
			continue
		}
		res, err := b.Built(name)
		if err != nil {
			return SeedSummary{}, fmt.Errorf("seeds for rack %s: %w", n.Rack, err)
		}
		images[name] = res
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return SeedSummary{}, err
	}
	var (
		mu   sync.Mutex
		sum  = SeedSummary{Nodes: len(nodes)}
		errs []error
		wg   sync.WaitGroup
	)
	jobs := make(chan *inventory.Node)
	for range min(runtime.GOMAXPROCS(0), len(nodes)) {
		wg.Go(func() {
			for n := range jobs {
				if ctx.Err() != nil {
					continue
				}
				changed, err := writeSeed(b, images[b.Inv.RackImage(n.Rack)], n, dir)
				mu.Lock()
				switch {
				case err != nil:
					errs = append(errs, err)
				case changed:
					sum.Written++
				default:
					sum.Unchanged++
				}
				mu.Unlock()
			}
		})
	}
	for _, n := range nodes {
		jobs <- n
	}
	close(jobs)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return sum, err
	}
	return sum, ctx.Err()
}

// NodeSeed renders node n's seed files for the built image img: name on
// the boot partition → content.
func NodeSeed(r *render.Renderer, inv *inventory.Inventory, img *Result, n *inventory.Node) (map[string][]byte, string, error) {
	return nodeSeed(r, inv, img, n, nil)
}

// nodeSeed is NodeSeed with the ticket, endpoint and CA of a self-joining
// node (join may be nil).
func nodeSeed(r *render.Renderer, inv *inventory.Inventory, img *Result, n *inventory.Node, join *render.JoinSeed) (map[string][]byte, string, error) {
	d, err := render.NewData(inv, n)
	if err != nil {
		return nil, "", fmt.Errorf("seed %s: %w", n.Name, err)
	}
	d.Baked = true
	d.Join = join
	f, err := r.Render(d)
	if err != nil {
		return nil, "", fmt.Errorf("seed %s: %w", n.Name, err)
	}
	l := img.M.Layout
	cmdline := withoutTokens(l.Cmdline, "ds=", "systemd.run", "systemd.unit=kernel-command-line.target")
	cmdline = withTokens(cmdline, cgroupTokens...)
	cmdline = withTokens(cmdline, l.SeedCmdlineTokens(f.InstanceID)...)
	files := map[string][]byte{"cmdline.txt": []byte(cmdline + "\n")}
	switch l.Seed {
	case SeedFirstrun:
		if d.JoinFiles, err = r.JoinFiles(d); err != nil {
			return nil, "", fmt.Errorf("seed %s: %w", n.Name, err)
		}
		script, err := firstrunScript(inv, n, d)
		if err != nil {
			return nil, "", fmt.Errorf("seed %s: %w", n.Name, err)
		}
		files["firstrun.sh"] = script
	default:
		files[render.UserData] = f.UserData
		files[render.MetaData] = f.MetaData
		files[render.NetworkConfig] = f.NetworkConfig
	}
	return files, f.InstanceID, nil
}

func writeSeed(b *Builder, img *Result, n *inventory.Node, dir string) (bool, error) {
	var join *render.JoinSeed
	if n.Join == inventory.JoinSelf {
		if b.Join == nil {
			return false, fmt.Errorf("seed %s: rack %s joins by itself, but no join endpoint is set up", n.Name, n.Rack)
		}
		previous := ""
		if _, old, err := ReadSeed(filepath.Join(dir, n.Name)); err == nil {
			for _, f := range old {
				if previous = ticketIn(f); previous != "" {
					break
				}
			}
		}
		var err error
		if join, err = b.Join(n, previous); err != nil {
			return false, fmt.Errorf("seed %s: %w", n.Name, err)
		}
	}
	files, id, err := nodeSeed(b.Renderer, b.Inv, img, n, join)
	if err != nil {
		return false, err
	}
	m := SeedManifest{Node: n.Name, Image: img.M.Name, ImageSHA256: img.M.SHA256, Flavour: img.M.Layout.Flavour,
		Seed: img.M.Layout.Seed, Partition: img.M.Layout.Boot.Number, InstanceID: id}
	changed, err := WriteSeedDir(filepath.Join(dir, n.Name), m, files)
	if err == nil && join != nil {
		// The seed holds the node's ticket: for root's eyes only.
		for name := range files {
			if err = os.Chmod(filepath.Join(dir, n.Name, name), 0o600); err != nil {
				break
			}
		}
	}
	return changed, err
}

// WriteSeedDir writes a seed directory: each of files (named as on the boot
// partition's root) and manifest.json, m with the files listed. Only what
// changed is rewritten; it reports whether anything was.
func WriteSeedDir(nodeDir string, m SeedManifest, files map[string][]byte) (bool, error) {
	if err := os.MkdirAll(nodeDir, 0o755); err != nil {
		return false, err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	changed := false
	m.Files = nil
	for _, name := range names {
		s := sha256.Sum256(files[name])
		m.Files = append(m.Files, SeedFile{Path: "/" + name, Source: name, SHA256: hex.EncodeToString(s[:])})
		c, err := writeIfChanged(filepath.Join(nodeDir, name), files[name], 0o644)
		if err != nil {
			return false, fmt.Errorf("seed %s: %w", m.Node, err)
		}
		changed = changed || c
	}
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return false, err
	}
	c, err := writeIfChanged(filepath.Join(nodeDir, SeedManifestName), append(mj, '\n'), 0o644)
	if err != nil {
		return false, fmt.Errorf("seed %s: %w", m.Node, err)
	}
	return changed || c, nil
}

func writeIfChanged(p string, data []byte, mode os.FileMode) (bool, error) {
	if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	return true, writeFileAtomic(p, data, mode)
}

// ReadSeed reads a node's seed directory.
func ReadSeed(nodeDir string) (SeedManifest, map[string][]byte, error) {
	var m SeedManifest
	data, err := os.ReadFile(filepath.Join(nodeDir, SeedManifestName))
	if err != nil {
		return m, nil, fmt.Errorf("seed %s: %w", nodeDir, err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, nil, fmt.Errorf("seed %s: %w", nodeDir, err)
	}
	files := map[string][]byte{}
	for _, f := range m.Files {
		if !filepath.IsLocal(f.Source) {
			return m, nil, fmt.Errorf("seed %s: file %q is outside the seed directory", nodeDir, f.Source)
		}
		b, err := os.ReadFile(filepath.Join(nodeDir, f.Source))
		if err != nil {
			return m, nil, fmt.Errorf("seed %s: %w", nodeDir, err)
		}
		if s := sha256.Sum256(b); hex.EncodeToString(s[:]) != f.SHA256 {
			return m, nil, fmt.Errorf("seed %s: %s changed since it was written (sha256)", nodeDir, f.Source)
		}
		files[f.Path] = b
	}
	return m, files, nil
}

// ApplySeed writes a node's seed onto a card or image file that holds its
// image (what flashing does after the image): the files into the boot
// partition the manifest names, in user space.
func ApplySeed(ctx context.Context, target, nodeDir string) error {
	m, files, err := ReadSeed(nodeDir)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(target, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	if size == 0 { // a block device
		if size, err = f.Seek(0, 2); err != nil {
			return err
		}
	}
	mbr, err := readMBR(f, size, target)
	if err != nil {
		return err
	}
	var part *Partition
	for i := range mbr.Partitions {
		if mbr.Partitions[i].Number == m.Partition {
			part = &mbr.Partitions[i]
		}
	}
	if part == nil || !part.isFAT() {
		return fmt.Errorf("apply seed %s to %s: partition %d is not a FAT boot partition", m.Node, target, m.Partition)
	}
	fat, err := openFAT(f, *part)
	if err != nil {
		return err
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fat.writeFile(p, files[p]); err != nil {
			return fmt.Errorf("apply seed %s to %s: %w", m.Node, target, err)
		}
	}
	if err := updateFSInfo(f, *part); err != nil {
		return fmt.Errorf("apply seed %s to %s: %w", m.Node, target, err)
	}
	return f.Sync()
}

// firstrunScript is a Raspberry Pi OS Bookworm first-boot script (what
// Raspberry Pi Imager writes as firstrun.sh): hostname, static address
// through NetworkManager, ssh on, a fresh machine-id and docker identity,
// then it removes itself and its cmdline.txt tokens. The lab's user, keys
// and tuning are baked into the image already.
func firstrunScript(inv *inventory.Inventory, n *inventory.Node, d *render.Data) ([]byte, error) {
	lan, err := netip.ParsePrefix(inv.Lab.Network.CIDR)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	err = firstrunTmpl.Execute(&b, map[string]any{
		"Node": n.Name, "FQDN": d.FQDN, "Address": n.IP + "/" + fmt.Sprint(lan.Bits()),
		"Gateway": inv.Lab.Network.Gateway, "DNS": strings.Join(inv.Lab.Network.DNS, ";"), "MAC": n.MAC,
		"JoinFiles": d.JoinFiles,
	})
	return b.Bytes(), err
}

var firstrunTmpl = template.Must(template.New("firstrun.sh").Option("missingkey=error").Parse(`#!/bin/bash
# firstrun.sh for {{ .Node }}, written by provision image seed. Raspberry Pi OS
# Bookworm runs it once at first boot (systemd.run= in cmdline.txt).
set +e

NAME={{ .Node }}
echo "$NAME" >/etc/hostname
sed -i "s/^127\.0\.1\.1.*/127.0.1.1\t{{ .FQDN }} $NAME/" /etc/hosts
grep -q "^127\.0\.1\.1" /etc/hosts || printf '127.0.1.1\t%s %s\n' "{{ .FQDN }}" "$NAME" >>/etc/hosts

# The node's fixed address (NetworkManager, Bookworm's network stack).
install -d -m 0700 /etc/NetworkManager/system-connections
cat >/etc/NetworkManager/system-connections/provision-lan.nmconnection <<'NM'
[connection]
id=provision-lan
type=ethernet
{{- if .MAC }}
[ethernet]
mac-address={{ .MAC }}
{{- else }}
interface-name=eth0
{{- end }}

[ipv4]
method=manual
address1={{ .Address }},{{ .Gateway }}
dns={{ .DNS }};

[ipv6]
method=disabled
NM
chmod 0600 /etc/NetworkManager/system-connections/provision-lan.nmconnection

systemctl enable ssh
# Own machine-id and docker engine ID (docker is not running yet).
/usr/local/sbin/provision-identity
{{- if .JoinFiles }}

# join: self. provision-self-join presents the single-use ticket in
# config.json to the join endpoint (checked against the lab CA) and joins
# the swarm with the answer; no join token is in this file.
install -d -m 0700 /etc/provision/join
{{- range .JoinFiles }}
(umask 077; cat >{{ .Path }} <<'PROVISION_EOF'
{{ .Content }}PROVISION_EOF
)
chmod {{ .Mode }} {{ .Path }}
{{- end }}
systemctl enable provision-self-join.service
{{- end }}

rm -f /boot/firstrun.sh /boot/firmware/firstrun.sh
sed -i 's| systemd.run.*||g' /boot/firmware/cmdline.txt 2>/dev/null || sed -i 's| systemd.run.*||g' /boot/cmdline.txt
exit 0
`))

// seedTicket finds the ticket in a seed file (its join config's JSON).
var seedTicket = regexp.MustCompile(`"ticket": "(pjt_[A-Za-z0-9_-]+)"`)

func ticketIn(b []byte) string {
	if m := seedTicket.FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return ""
}

// RackImages lists the image definitions the racks of inv boot, sorted.
func RackImages(inv *inventory.Inventory) []string {
	seen := map[string]bool{}
	if inv.Lab.Pis != nil {
		for _, r := range inv.Lab.Pis.Racks {
			if name := inv.RackImage(r.Name); name != "" {
				seen[name] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
