package netboot

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"text/template"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/internal/rpi/image"
)

// RootOptions say where a netbooted Pi finds its root file system: its own
// NBD export (package nbdroot), a copy-on-write overlay of the golden
// image, whose partitions the kernel sees as /dev/nbd0pN.
type RootOptions struct {
	// NBDServer is the NBD server's address (host, or host:port when not
	// 10809); default the TFTP server's address.
	NBDServer string
	// Export names node's export; default the node's name.
	Export func(node string) string
	// Server, when set, is node's own NBD server HOST:PORT (one export per
	// Pi, package nbdroot), instead of NBDServer.
	Server func(node string) (string, error)
}

// cmdlineTemplate is the one template of a netbooted Pi's cmdline.txt: the
// image's own line as `provision image seed` makes it for the node (memory
// cgroup on, the seed pointer ds=nocloud;s=file:///boot/firmware/;i=... or
// firstrun.sh) without its root=, then the NBD root in the nobodd style
// (nbdroot=HOST[:PORT]/EXPORT root=/dev/nbd0pN, which Debian nbd-client's
// initramfs script and nobodd both read) and the node's
// fixed address for the initramfs (kernel ip= syntax).
var cmdlineTemplate = template.Must(template.New("cmdline.txt").Option("missingkey=error").Parse(
	`{{ .Base }} root=/dev/nbd0p{{ .RootPartition }} nbdroot={{ .NBDServer }}/{{ .Export }} ip={{ .IP }}::{{ .Gateway }}:{{ .Netmask }}:{{ .Hostname }}:eth0:off` + "\n"))

// configMarker starts what provision appends to the image's config.txt.
const configMarker = "# --- provision netboot: generated for "

// NodeFiles renders node n's generated boot files: cmdline.txt and
// config.txt (the image's, with the node named and cmdline.txt pinned).
func NodeFiles(inv *inventory.Inventory, r *render.Renderer, img *BootImage, n *inventory.Node, dir string, root RootOptions) (map[string][]byte, error) {
	seed, _, err := image.NodeSeed(r, inv, &image.Result{M: image.Manifest{Layout: img.Layout}}, n)
	if err != nil {
		return nil, fmt.Errorf("netboot %s: %w", n.Name, err)
	}
	lan, err := netip.ParsePrefix(inv.Lab.Network.CIDR)
	if err != nil {
		return nil, fmt.Errorf("netboot %s: network.cidr: %w", n.Name, err)
	}
	export := n.Name
	if root.Export != nil {
		export = root.Export(n.Name)
	}
	server := root.NBDServer
	if root.Server != nil {
		if server, err = root.Server(n.Name); err != nil {
			return nil, fmt.Errorf("netboot %s: its root: %w", n.Name, err)
		}
	}
	if server == "" {
		return nil, fmt.Errorf("netboot %s: no NBD server address for its root", n.Name)
	}
	base := withoutTokens(strings.TrimSpace(string(seed["cmdline.txt"])), "root=", "nbdroot=", "ip=", "init=")
	var cmdline bytes.Buffer
	err = cmdlineTemplate.Execute(&cmdline, map[string]any{
		"Base": base, "RootPartition": img.Layout.Root.Number, "NBDServer": server, "Export": export,
		"IP": n.IP, "Gateway": inv.Lab.Network.Gateway, "Netmask": net.IP(net.CIDRMask(lan.Bits(), 32)).String(), "Hostname": n.Name,
	})
	if err != nil {
		return nil, fmt.Errorf("netboot %s: cmdline.txt: %w", n.Name, err)
	}
	config, err := img.ReadFile("config.txt")
	if err != nil {
		return nil, err
	}
	if i := bytes.Index(config, []byte(configMarker)); i >= 0 {
		config = config[:i]
	}
	if len(config) > 0 && config[len(config)-1] != '\n' {
		config = append(config, '\n')
	}
	config = fmt.Appendf(config, "%s%s (TFTP directory %s/) ---\n[all]\ncmdline=cmdline.txt\n", configMarker, n.Name, dir)
	return map[string][]byte{"cmdline.txt": cmdline.Bytes(), "config.txt": config}, nil
}

// withoutTokens drops the tokens starting with any of prefixes.
func withoutTokens(line string, prefixes ...string) string {
	var out []string
	for _, f := range strings.Fields(line) {
		keep := true
		for _, p := range prefixes {
			if strings.HasPrefix(f, p) {
				keep = false
			}
		}
		if keep {
			out = append(out, f)
		}
	}
	return strings.Join(out, " ")
}
