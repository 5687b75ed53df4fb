package cli

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/pvesim"
	"github.com/fhlab/provision/internal/remote"
)

// sftpHost is where pve-sim --sftp serves a simulated host's SFTP.
type sftpHost struct {
	node string
	addr netip.AddrPort
}

// sftpHostsOf takes the simulated hosts' SFTP addresses from the
// inventory: each proxmox.nodes[] address must be a loopback address, and
// no two hosts may share an address and port.
func sftpHostsOf(p *inventory.Proxmox) ([]sftpHost, error) {
	var hosts []sftpHost
	seen := map[netip.AddrPort]string{}
	for i, n := range p.Nodes {
		addr := n.Address
		if addr == "localhost" {
			addr = "127.0.0.1"
		}
		ip, err := netip.ParseAddr(addr)
		if err != nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("pve-sim --sftp: proxmox.nodes[%d] (%s) has address %q: the simulated hosts' sshd runs on this machine, so give it address: 127.0.0.1 and an sshPort of its own", i, n.Name, n.Address)
		}
		port := n.SSHPort
		if port == 0 {
			port = remote.DefaultPort
		}
		ap := netip.AddrPortFrom(ip, uint16(port))
		if other, dup := seen[ap]; dup {
			return nil, fmt.Errorf("pve-sim --sftp: proxmox.nodes[%d] (%s) and %s are both at %s: give each proxmox.nodes[] entry its own sshPort (inventory/local.yaml uses 2221-2223)", i, n.Name, other, ap)
		}
		seen[ap] = n.Name
		hosts = append(hosts, sftpHost{node: n.Name, addr: ap})
	}
	return hosts, nil
}

// startSFTP gives every simulated host its file system under root/<node>
// and starts its sshd (config and host key in sshdDir/<node>), accepting
// the inventory's keys and the key provision logs in with.
func (a *app) startSFTP(ctx context.Context, sim *pvesim.Sim, inv *inventory.Inventory, hosts []sftpHost, root, sshdDir string) ([]*pvesim.SSHD, error) {
	p := inv.Lab.Proxmox
	keys, err := a.sftpKeys(inv)
	if err != nil {
		return nil, err
	}
	var started []*pvesim.SSHD
	fail := func(err error) ([]*pvesim.SSHD, error) {
		for _, d := range started {
			_ = d.Close()
		}
		return nil, err
	}
	for _, h := range hosts {
		nodeRoot := filepath.Join(root, h.node)
		if err := os.MkdirAll(nodeRoot, 0o755); err != nil {
			return fail(fmt.Errorf("pve-sim --sftp: %w", err))
		}
		sim.SetNodeDir(h.node, nodeRoot)
		snippets := sim.SnippetsDir(h.node, p.SnippetsStorage)
		if snippets == "" {
			return fail(fmt.Errorf("pve-sim --sftp: the simulated storage %q of %s keeps no files (proxmox.snippetsStorage must be a directory storage)", p.SnippetsStorage, h.node))
		}
		if err := os.MkdirAll(snippets, 0o755); err != nil {
			return fail(fmt.Errorf("pve-sim --sftp: %w", err))
		}
		if inHost := "/" + strings.TrimPrefix(filepath.ToSlash(strings.TrimPrefix(snippets, nodeRoot)), "/"); inHost != filepath.Clean(p.SnippetsDir) {
			fmt.Fprintf(a.streams.Err, "note: proxmox.snippetsDir is %s, but the simulated storage %q keeps its snippets in %s: uploaded snippets will not be found at VM start\n",
				p.SnippetsDir, p.SnippetsStorage, inHost)
		}
		d, err := pvesim.StartSSHD(ctx, pvesim.SSHDConfig{Node: h.node, Root: nodeRoot, Dir: filepath.Join(sshdDir, h.node),
			Addr: h.addr.String(), User: p.SSHUser, AuthorizedKeys: keys})
		if err != nil {
			return fail(err)
		}
		started = append(started, d)
	}
	return started, nil
}

// sftpKeys are the public keys the simulated hosts accept: the
// inventory's, plus the one of the key provision logs in with (--ssh-key,
// else ssh.privateKeyFile, made now when the inventory says createKey).
func (a *app) sftpKeys(inv *inventory.Inventory) ([]string, error) {
	keys := slices.Clone(inv.Lab.SSH.AuthorizedKeys)
	path := a.settings.SSHKey
	if path == "" {
		path = inv.PrivateKeyPath()
	}
	var signer ssh.Signer
	var err error
	if inv.Lab.SSH.CreateKey {
		signer, _, err = remote.EnsureKey(path)
	} else {
		signer, err = remote.LoadSigner(path)
	}
	switch {
	case err == nil:
		keys = append(keys, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))))
	case len(keys) == 0:
		return nil, fmt.Errorf("pve-sim --sftp: no key could log in to the simulated hosts: %w", err)
	}
	slices.Sort(keys)
	return slices.Compact(keys), nil
}

// hostKeyFingerprint is the SHA256 fingerprint of an authorized_keys line.
func hostKeyFingerprint(line string) string {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return "(unreadable)"
	}
	return ssh.FingerprintSHA256(k)
}
