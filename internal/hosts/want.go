package hosts

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/render"
)

// File is one file provision keeps on a host.
type File struct {
	Path    string
	Mode    fs.FileMode
	Content []byte
}

// sum is how Facts.Files describes a file: "mode sha256".
func (f File) sum() string {
	h := sha256.Sum256(f.Content)
	return fmt.Sprintf("%o %s", f.Mode.Perm(), hex.EncodeToString(h[:]))
}

// The files that decide which services are restarted or reloaded.
const (
	SysctlFile   = "/etc/sysctl.d/90-provision-swarm.conf"
	LinkFile     = "/etc/systemd/network/10-provision-docker.link"
	DaemonJSON   = "/etc/docker/daemon.json"
	AptSource    = render.AptSourcePath
	AptKeyring   = render.AptKeyringPath
	dockerDropIn = "/etc/systemd/system/docker.service.d/"
)

// Source is the lab's apt repository (see internal/mirror): hosts install
// their packages from it.
type Source = render.AptMirror

// Desired computes what every host of inv should have: the tuning files
// (the same bytes VMs get from user-data's write_files, through
// render.HostFiles), the apt source when there is a lab mirror, the
// packages and the services.
func Desired(r *render.Renderer, inv *inventory.Inventory, src *Source) (Want, error) {
	hf, err := r.HostFiles(inv, inventory.KindHost)
	if err != nil {
		return Want{}, err
	}
	w := Want{Packages: Packages(&inv.Lab.HostTuning), Sysctls: map[string]string{}}
	for _, f := range hf {
		w.Files = append(w.Files, File{Path: f.Path, Mode: f.Mode, Content: f.Content})
		if f.Path == SysctlFile {
			w.Sysctls = parseSysctls(f.Content)
		}
	}
	if src != nil {
		for _, f := range src.Files() {
			mode, err := strconv.ParseUint(f.Mode, 8, 32)
			if err != nil {
				return Want{}, fmt.Errorf("mode of %s: %w", f.Path, err)
			}
			w.Files = append(w.Files, File{Path: f.Path, Mode: fs.FileMode(mode), Content: []byte(f.Content)})
		}
	}
	sort.Slice(w.Files, func(i, j int) bool { return w.Files[i].Path < w.Files[j].Path })
	w.Services = []string{"docker.service", "chrony.service", "provision-netns-tuning.timer"}
	if inv.Lab.HostTuning.Firewall.Enabled {
		w.Services = append(w.Services, "nftables.service")
	}
	return w, nil
}

// Packages are the Debian packages a node needs: the ones user-data
// installs on a VM (templates/cloud-init/user-data.tmpl), without the Pi's.
func Packages(t *inventory.HostTuning) []string {
	pkgs := []string{t.Docker.Package, "ipvsadm", "chrony"}
	if t.Firewall.Enabled {
		pkgs = append(pkgs, "nftables")
	}
	return append(pkgs, t.ExtraPkgs...)
}

// parseSysctls reads the key = value lines of a sysctl.d file.
func parseSysctls(data []byte) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "-"), "=")
		if !ok {
			continue
		}
		out[strings.ReplaceAll(strings.TrimSpace(k), "/", ".")] = strings.TrimSpace(v)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
