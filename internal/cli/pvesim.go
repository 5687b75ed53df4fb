package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/lab"
	"github.com/fhlab/provision/internal/pvesim"
	"github.com/fhlab/provision/internal/state"
	"github.com/fhlab/provision/internal/userfile"
)

type pveSimFlags struct {
	listen           string
	tls              bool
	stateFile        string
	tokenFile        string
	withLab          bool
	allowRemote      bool
	templates        bool
	offlineDownloads bool
	sftp             bool
	sftpRoot         string
}

func (a *app) pveSimCommand() *cobra.Command {
	var f pveSimFlags
	cmd := &cobra.Command{
		Use:   "pve-sim -i FILE [--listen 127.0.0.1:8006] [--tls] [--state FILE] [--token-file FILE] [--lab] [--sftp]",
		Short: "Run the Proxmox VE API simulator for local rehearsal",
		Long: `Serve a simulated Proxmox VE 9.1 API for the inventory's proxmox section, so
preflight, template and the Terraform provider can be rehearsed on this
machine. The simulator checks every request against PVE's API schema and
answers like PVE (errors, status lines, tasks, locks).

Seeded from the inventory: every proxmox node online, storages "local"
(dir: iso, vztmpl, backup, import, snippets) and proxmox.storage (lvmthin),
the template proxmox.template on every node (--templates=false leaves it
out, to rehearse provision template), and an API token.

The token comes from the inventory's token variables (PM_API_TOKEN_ID /
PM_API_TOKEN_SECRET unless proxmox.tokenIDEnv/tokenSecretEnv say otherwise)
when both are set; otherwise it is read from --token-file, or made and
written there (mode 0600). The secret is never printed: load the file with
  set -a; . FILE; set +a

--state keeps the simulated cluster (VMs, volumes) between runs; it never
holds the token. --lab starts the emulated lab node of a VM when the VM
starts (provision lab; needs root), with the address of its ipconfig0 and
the verify image loaded; a stop is a power cut of the node (its daemons
end, its namespace and disk stay), a reboot both.
download-url only fetches from loopback hosts; --offline-downloads stores a
placeholder for other URLs instead (checksums are then not verified).

A VM starts only when its cicustom snippets exist on its host, as in PVE
("can't find file 'local:snippets/...'"). --sftp gives every simulated host
the SFTP endpoint provision vms apply uploads them to: a real sshd (needs
root and openssh-server) at the host's address and proxmox.nodes[].sshPort
from the inventory, which must be a loopback address with a port of its own
per host (inventory/local.yaml has 2221-2223). It serves SFTP only, to
proxmox.sshUser (a user of this machine; root by default) with the
inventory's keys, chrooted into <sftp-root>/<node>: an upload to
/var/lib/vz/snippets lands in <sftp-root>/<node>/var/lib/vz/snippets, which
the simulated host reads at VM start. Host keys are made once and kept in
<state-dir>/pve-sim/sshd/<node>.

Listens on loopback only unless --allow-remote is given. Every path it
prints is absolute.`,
		Example: `  provision pve-sim -i inventory/local.yaml
  provision pve-sim -i inventory/local.yaml --templates=false --offline-downloads
  provision pve-sim -i inventory/local.yaml --state .provision/local/pve-sim.json --lab
  provision pve-sim -i inventory/local.yaml --sftp    # then: provision vms apply -i inventory/local.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runPVESim(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8006", "address to listen on")
	fl.BoolVar(&f.tls, "tls", true, "serve HTTPS with a generated CA (its PEM is written next to the token file)")
	fl.StringVar(&f.stateFile, "state", "", "load the simulated cluster from FILE if it exists and save it there on exit")
	fl.StringVar(&f.tokenFile, "token-file", "", "env file with the token (default <state-dir>/pve-sim.env)")
	fl.BoolVar(&f.withLab, "lab", false, "start a VM's emulated lab node when the VM starts, power it off when it stops (needs root)")
	fl.BoolVar(&f.allowRemote, "allow-remote", false, "allow a --listen address that is not loopback")
	fl.BoolVar(&f.templates, "templates", true, "seed the inventory's template on every node")
	fl.BoolVar(&f.offlineDownloads, "offline-downloads", false, "download-url of a non-loopback URL stores a placeholder instead of failing")
	fl.BoolVar(&f.sftp, "sftp", false, "serve SFTP for every simulated host with a real sshd at its address and sshPort (needs root)")
	fl.StringVar(&f.sftpRoot, "sftp-root", "", "where the simulated hosts' file systems live, root-owned (default /run/provision/pve-sim/<lab>)")
	return cmd
}

func (a *app) runPVESim(ctx context.Context, f pveSimFlags) error {
	inv, err := a.loadInventory()
	if err != nil {
		return err
	}
	p := inv.Lab.Proxmox
	if p == nil {
		return exitError{2, fmt.Errorf("pve-sim: %s has no proxmox section", inv.File)}
	}
	if err := checkListen(f.listen, f.allowRemote); err != nil {
		return exitError{2, err}
	}
	dir, err := filepath.Abs(a.stateDir(inv))
	if err != nil {
		return fmt.Errorf("pve-sim: state dir: %w", err)
	}
	if f.tokenFile == "" {
		f.tokenFile = filepath.Join(dir, "pve-sim.env")
	}
	// The hints below are pasted into other directories and inventories
	// (proxmox.caFile is relative to the inventory's directory): every
	// path is absolute.
	invFile, err := filepath.Abs(inv.File)
	if err != nil {
		return fmt.Errorf("pve-sim: %w", err)
	}
	for _, p := range []*string{&f.tokenFile, &f.stateFile, &f.sftpRoot} {
		if *p != "" {
			if *p, err = filepath.Abs(*p); err != nil {
				return fmt.Errorf("pve-sim: %w", err)
			}
		}
	}
	if f.sftp && f.sftpRoot == "" {
		f.sftpRoot = filepath.Join("/run/provision/pve-sim", inv.Lab.Metadata.Name)
	}
	var sftpHosts []sftpHost
	if f.sftp {
		if sftpHosts, err = sftpHostsOf(p); err != nil {
			return exitError{2, err}
		}
	}
	tokenID, secret, fromFile, err := simToken(p, f.tokenFile)
	if err != nil {
		return err
	}
	a.redactor.Add(secret)

	opts := pvesim.Options{Cluster: inv.Lab.Metadata.Name, Log: a.log, PlaceholderDownloads: f.offlineDownloads}
	if f.withLab {
		// Starting a lab node takes seconds: run tasks in the background,
		// as PVE does, instead of answering the POST when they are done.
		opts.TaskDuration = 100 * time.Millisecond
		start, stop, err := a.labHooks(inv)
		if err != nil {
			return err
		}
		opts.OnStart, opts.OnStop = start, stop
	}
	sim, err := pvesim.New(opts)
	if err != nil {
		return err
	}
	defer sim.Close()
	if err := pvesim.Seed(sim, inv, pvesim.SeedOptions{TokenID: tokenID, Secret: secret, SkipTemplates: !f.templates}); err != nil {
		return err
	}
	if f.stateFile != "" {
		data, err := userfile.Read(f.stateFile, maxStateFile)
		switch {
		case err == nil:
			snap, err := pvesim.UnmarshalSnapshot(data)
			if err == nil {
				err = sim.Restore(snap)
			}
			if err != nil {
				return fmt.Errorf("pve-sim: state %s: %w", f.stateFile, err)
			}
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("pve-sim: state %s: %s", f.stateFile, userfile.Reason(err))
		}
	}

	var sshds []*pvesim.SSHD
	if f.sftp {
		if sshds, err = a.startSFTP(ctx, sim, inv, sftpHosts, f.sftpRoot, filepath.Join(dir, "pve-sim", "sshd")); err != nil {
			return err
		}
		defer func() {
			for _, d := range sshds {
				_ = d.Close()
			}
		}()
	}

	srv, err := sim.Listen(ctx, f.listen, f.tls)
	if err != nil {
		return err
	}
	defer srv.Close()
	caFile := ""
	if f.tls {
		caFile = filepath.Join(filepath.Dir(f.tokenFile), "pve-sim-ca.pem")
		if err := state.WriteFileAtomic(caFile, srv.CAPEM, 0o644); err != nil {
			return fmt.Errorf("pve-sim: write CA: %w", err)
		}
	}
	out := a.streams.Out
	fmt.Fprintf(out, "pve-sim: Proxmox VE API simulator for %s at %s\n", inv.Lab.Metadata.Name, srv.URL)
	fmt.Fprintf(out, "  nodes: %s; template %q: %v\n", nodeNames(p), p.Template, f.templates)
	if fromFile != "" {
		fmt.Fprintf(out, "  token %s: from %s\n", tokenID, fromFile)
	} else {
		fmt.Fprintf(out, "  token %s: from $%s and $%s\n", tokenID, p.TokenIDEnv, p.TokenSecretEnv)
	}
	if caFile != "" {
		fmt.Fprintf(out, "  CA certificate: %s (set proxmox.caFile to it, or keep insecure: true)\n", caFile)
	}
	for _, d := range sshds {
		fmt.Fprintf(out, "  SFTP for %s: %s as %s, files in %s, host key %s\n", d.Node, d.Addr, p.SSHUser,
			sim.NodeDir(d.Node), hostKeyFingerprint(d.HostKey))
	}
	if f.stateFile != "" {
		fmt.Fprintf(out, "  state: %s (saved on exit)\n", f.stateFile)
	}
	if fromFile != "" {
		fmt.Fprintf(out, "use it: set -a; . %s; set +a; provision preflight -i %s\n", fromFile, invFile)
	} else {
		fmt.Fprintf(out, "use it: provision preflight -i %s\n", invFile)
	}
	if u := strings.TrimSuffix(srv.URL, "/api2/json"); p.APIURL != "" && !strings.HasPrefix(p.APIURL, u) {
		fmt.Fprintf(a.streams.Err, "note: the inventory's proxmox.apiURL is %s, not %s\n", p.APIURL, srv.URL)
	}
	fmt.Fprintln(out, "Ctrl-C stops it.")
	<-ctx.Done()
	if f.stateFile != "" {
		data, err := pvesim.MarshalSnapshot(sim.Snapshot())
		if err == nil {
			err = state.WriteFileAtomic(f.stateFile, data, 0o644)
		}
		if err != nil {
			return fmt.Errorf("pve-sim: save state %s: %w", f.stateFile, err)
		}
		fmt.Fprintf(a.streams.Err, "pve-sim: state saved to %s\n", f.stateFile)
	}
	return nil
}

// checkListen refuses a non-loopback address unless allowed.
func checkListen(addr string, allowRemote bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err == nil && ip.IsLoopback() {
		return nil
	}
	if allowRemote {
		return nil
	}
	return fmt.Errorf("--listen %s: not a loopback address; the simulator accepts any client that has the token, so pass --allow-remote to mean it", addr)
}

func nodeNames(p *inventory.Proxmox) string {
	var names []string
	for _, n := range p.Nodes {
		names = append(names, n.Name)
	}
	return strings.Join(names, ", ")
}

// maxStateFile bounds a --state file; a simulated lab of thousands of VMs
// saves a few MiB.
const maxStateFile = 64 << 20

// simToken returns the token from the environment (both variables set),
// else from the token file, else a new one written to the token file.
// fromFile is the file it came from or went to ("" for the environment).
func simToken(p *inventory.Proxmox, file string) (id, secret, fromFile string, err error) {
	id, secret = os.Getenv(p.TokenIDEnv), os.Getenv(p.TokenSecretEnv)
	if id != "" && secret != "" {
		if err := inventory.CheckTokenID("$"+p.TokenIDEnv, id); err != nil {
			return "", "", "", fmt.Errorf("pve-sim: %w", err)
		}
		return id, secret, "", nil
	}
	data, err := userfile.Read(file, userfile.MaxSmall)
	if err == nil {
		vars := map[string]string{}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok {
				vars[k] = strings.Trim(v, `'"`)
			}
		}
		id, secret = vars[p.TokenIDEnv], vars[p.TokenSecretEnv]
		if id == "" || secret == "" {
			return "", "", "", fmt.Errorf("pve-sim: token file %s lacks %s or %s; delete it to make a new token", file, p.TokenIDEnv, p.TokenSecretEnv)
		}
		if err := inventory.CheckTokenID(p.TokenIDEnv+" in "+file, id); err != nil {
			return "", "", "", fmt.Errorf("pve-sim: %w; delete the file to make a new token", err)
		}
		return id, secret, file, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", "", "", fmt.Errorf("pve-sim: token file: %w", err)
	}
	id, secret = "provision@pve!pvesim", rand.Text()
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return "", "", "", fmt.Errorf("pve-sim: token file: %w", err)
	}
	content := fmt.Sprintf("%s=%s\n%s=%s\n", p.TokenIDEnv, id, p.TokenSecretEnv, secret)
	if err := state.WriteFileAtomic(file, []byte(content), 0o600); err != nil {
		return "", "", "", fmt.Errorf("pve-sim: token file: %w", err)
	}
	return id, secret, file, nil
}

// labHooks returns the hooks that make the emulated lab follow the VMs:
// a VM's start brings up the lab node of the inventory node named like the
// VM (at the address of its ipconfig0, else the inventory's; the verify
// image loaded, as lab up does), its stop is a power cut of that node (its
// daemons end, its namespace and disk stay); a reboot is both. provision
// lab down removes them all.
func (a *app) labHooks(inv *inventory.Inventory) (start, stop func(context.Context, pvesim.VMEvent) error, err error) {
	if err := lab.Preflight(); err != nil {
		return nil, nil, err
	}
	cfg, err := lab.ConfigFromInventory(inv)
	if err != nil {
		return nil, nil, err
	}
	cfg.Logger = a.log
	cfg.Concurrency = a.settings.Concurrency
	l, err := lab.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	var busybox bytes.Buffer
	if _, err := lab.WriteBusyboxImage(&busybox, lab.ImageOptions{}); err != nil {
		return nil, nil, err
	}
	node := func(vm pvesim.VMEvent) *inventory.Node {
		n := inv.Node(vm.Name)
		if n == nil {
			a.log.Warn("pve-sim: VM is not in the inventory; no lab node", "vm", vm.VMID, "name", vm.Name)
		}
		return n
	}
	start = func(ctx context.Context, vm pvesim.VMEvent) error {
		n := node(vm)
		if n == nil {
			return nil
		}
		specs, err := lab.SpecsFromInventory([]inventory.Node{*n}, false)
		if err != nil {
			return err
		}
		if vm.IP.IsValid() {
			specs[0].IP = vm.IP.Addr()
		}
		up, err := l.Up(ctx, specs)
		if err == nil {
			err = lab.LoadImage(ctx, up[0].DockerSocket, bytes.NewReader(busybox.Bytes()))
		}
		if err != nil {
			return fmt.Errorf("lab node %s: %w", vm.Name, err)
		}
		return nil
	}
	stop = func(ctx context.Context, vm pvesim.VMEvent) error {
		if n := node(vm); n != nil {
			if err := l.PowerOff(ctx, n.Name); err != nil {
				return fmt.Errorf("lab node %s: %w", vm.Name, err)
			}
		}
		return nil
	}
	return start, stop, nil
}
