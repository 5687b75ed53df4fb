package stages

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/internal/rpi/netboot"
	"github.com/fhlab/provision/internal/rpi/netboot/nbdroot"
)

// NetbootConfig is how to serve the netbooted Pis: `provision netboot
// serve`'s flags, and what the pi-boot stage uses.
type NetbootConfig struct {
	Image  string         // the golden image
	Listen netip.AddrPort // TFTP
	DHCP   netboot.DHCPMode
	DHCPIf string // "" : the interface holding Listen
	Prefix netboot.Naming
	// Roots serves each Pi's root (qcow2 overlay, qemu-nbd) from this
	// process; NBDBind, NBDHost and NBDPort as nbdroot.Config's.
	Roots            bool
	NBDBind, NBDHost string
	NBDPort          int
	StateDir         string
	Log              *slog.Logger
	Lines            io.Writer // one line per Pi and boot step
	Now              func() time.Time
}

// NetbootRootsDir is where the Pis' root overlays live.
func NetbootRootsDir(stateDir string) string { return filepath.Join(stateDir, "netboot", "roots") }

// Netboot is a running netboot service: TFTP, DHCP (unless off), the boot
// event recorder and the Pis' root exports, until its context ends.
type Netboot struct {
	Pis     int
	Summary string // one line: what is served where
	wait    func() error
}

// Wait returns once the service has stopped (its context ended, or a part
// of it failed), with what failed.
func (n *Netboot) Wait() error { return n.wait() }

// StartNetboot opens the golden image and the listeners and starts serving
// the inventory's netbooted Pis; everything stops when ctx ends.
func StartNetboot(ctx context.Context, inv *inventory.Inventory, r *render.Renderer, c NetbootConfig) (*Netboot, error) {
	boards, err := netboot.NewBoards(inv, c.Prefix)
	if err != nil {
		return nil, err
	}
	pis := boards.Netbooted(inv)
	if len(pis) == 0 {
		return nil, fmt.Errorf("no rack of %s boots from the network (pis.racks[].boot: netboot)", inv.File)
	}
	now := c.Now
	if now == nil {
		now = time.Now
	}
	lines := c.Lines
	if lines == nil {
		lines = io.Discard
	}
	img, err := netboot.OpenBootImage(ctx, c.Image, os.TempDir())
	if err != nil {
		return nil, err
	}
	// Until the servers run, a failure closes what was opened.
	var tconn net.PacketConn
	serving := false
	defer func() {
		if !serving {
			if tconn != nil {
				tconn.Close()
			}
			img.Close()
		}
	}()
	var lineMu sync.Mutex
	say := func(format string, args ...any) {
		lineMu.Lock()
		defer lineMu.Unlock()
		fmt.Fprintf(lines, "%s  "+format+"\n", append([]any{now().Format("15:04:05")}, args...)...)
	}
	rec, err := netboot.NewRecorder(c.StateDir, func(e netboot.Event) {
		if e.Kind == netboot.EventFile && strings.Contains(e.File, "/") {
			return // overlays/*.dtbo: one line per boot step is enough
		}
		who := e.Node
		if who == "" {
			who = "(unknown " + e.Serial + e.MAC + ")"
		}
		addr := e.IP
		if addr == "" {
			addr = e.MAC
		}
		say("%-12s %-17s %s", who, addr, e.Step())
	})
	if err != nil {
		return nil, err
	}
	bind := c.NBDBind
	if bind == "" {
		bind = c.Listen.Addr().String()
	}
	nodes, err := NetbootPis(inv, nil)
	if err != nil {
		return nil, err
	}
	roots, err := nbdroot.New(ctx, nbdroot.Config{Golden: c.Image, Dir: NetbootRootsDir(c.StateDir), Nodes: nodes, Bind: bind, Host: c.NBDHost, BasePort: c.NBDPort, Log: c.Log,
		OnEvent: func(e nbdroot.Event) {
			line := fmt.Sprintf("%-12s %-17s root %s", e.Node, "", e.State)
			if e.Err != nil {
				line += ": " + e.Err.Error()
			}
			say("%s", line)
		}})
	if err != nil {
		return nil, fmt.Errorf("the Pis' roots: %w", err)
	}
	server := func(node string) (string, error) {
		e, err := roots.Export(node)
		if err != nil {
			return "", err
		}
		return e.Addr(), nil
	}
	files, err := netboot.NewBootFiles(inv, r, img, boards, netboot.RootOptions{Server: server}, rec, c.Log)
	if err != nil {
		return nil, err
	}
	tconn, err = netboot.DefaultListen(ctx, "udp4", c.Listen.String())
	if err != nil {
		return nil, fmt.Errorf("TFTP on %s: %w", c.Listen, err)
	}
	tftp := &netboot.TFTPServer{Handler: files, Log: c.Log, Done: files.Done}
	dhcpWhere := "DHCP off"
	var dhcp *netboot.DHCPServer
	var dconn net.PacketConn
	if c.DHCP != netboot.DHCPOff {
		ifname := c.DHCPIf
		if ifname == "" {
			if ifname, err = netboot.InterfaceOf(c.Listen.Addr()); err != nil {
				return nil, fmt.Errorf("DHCP: %w: pass --dhcp-interface", err)
			}
		}
		if dconn, err = netboot.ListenDHCP(ctx, ifname, 67); err != nil {
			return nil, err
		}
		dhcp = &netboot.DHCPServer{Mode: c.DHCP, ServerIP: c.Listen.Addr(), Boards: boards, Inv: inv, Events: rec, Log: c.Log}
		dhcpWhere = fmt.Sprintf("DHCP %s on %s", c.DHCP, ifname)
	}

	ctx, cancel := context.WithCancel(ctx)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	goRun := func(name string, fn func() error) {
		wg.Go(func() {
			if err := fn(); err != nil && ctx.Err() == nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				mu.Unlock()
				cancel()
			}
		})
	}
	if dhcp != nil {
		goRun("DHCP", func() error { return dhcp.Serve(ctx, dconn) })
	}
	goRun("TFTP", func() error { return tftp.Serve(ctx, tconn) })
	goRun("boot events", func() error { return rec.Run(ctx) })
	if c.Roots {
		// A Pi whose root cannot start is said on its line; the others serve.
		wg.Go(func() {
			if err := roots.Start(ctx); err != nil && ctx.Err() == nil && c.Log != nil {
				c.Log.Warn("netboot: root exports", "err", err)
			}
		})
	}
	n := &Netboot{Pis: len(pis),
		Summary: fmt.Sprintf("%d Pis (TFTP directories by %s) from %s (boot partition %d, %s); TFTP on %s, %s",
			len(pis), c.Prefix, c.Image, img.Layout.Boot.Number, img.Layout.Flavour, c.Listen, dhcpWhere)}
	serving = true
	n.wait = sync.OnceValue(func() error {
		<-ctx.Done()
		wg.Wait()
		if c.Roots {
			roots.Wait()
		}
		img.Close()
		cancel()
		return errors.Join(errs...)
	})
	return n, nil
}

// NetbootListen is the TFTP address: flag (IP or IP:PORT, port 69 unless
// given), or this host's address inside network.cidr.
func NetbootListen(inv *inventory.Inventory, flag string) (netip.AddrPort, error) {
	if flag != "" {
		if ap, err := netip.ParseAddrPort(flag); err == nil && ap.Addr().Is4() {
			return ap, nil
		}
		if a, err := netip.ParseAddr(flag); err == nil && a.Is4() {
			return netip.AddrPortFrom(a, 69), nil
		}
		return netip.AddrPort{}, fmt.Errorf("--listen %q: want an IPv4 address of this host, IP or IP:PORT", flag)
	}
	lan, err := netip.ParsePrefix(inv.Lab.Network.CIDR)
	if err != nil {
		return netip.AddrPort{}, err
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok && lan.Contains(ip.Unmap()) {
				return netip.AddrPortFrom(ip.Unmap(), 69), nil
			}
		}
	}
	return netip.AddrPort{}, fmt.Errorf("this host has no address in network.cidr %s: give its address on the boot network (netboot serve --listen IP, apply --netboot-listen IP)", lan)
}

// NetbootPis are the netbooted Pis named (all of them when names is
// empty), as nbdroot nodes; a name that is not a netbooted Pi is an error.
func NetbootPis(inv *inventory.Inventory, names []string) ([]nbdroot.Node, error) {
	byName := map[string]*inventory.Node{}
	var all []nbdroot.Node
	for i := range inv.Nodes {
		n := &inv.Nodes[i]
		byName[n.Name] = n
		if n.Kind == inventory.KindPi && n.Boot == inventory.BootNetboot {
			all = append(all, nbdroot.Node{Name: n.Name, Serial: n.Serial})
		}
	}
	if len(names) == 0 {
		if len(all) == 0 {
			return nil, fmt.Errorf("%s has no netbooted Pi (a rack with boot: netboot)", inv.File)
		}
		return all, nil
	}
	var out []nbdroot.Node
	var errs []error
	for _, name := range names {
		n, ok := byName[name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: no node %s", inv.File, name))
		case n.Kind != inventory.KindPi:
			errs = append(errs, fmt.Errorf("%s: %s is a VM, not a Raspberry Pi", inv.File, name))
		case n.Boot != inventory.BootNetboot:
			errs = append(errs, fmt.Errorf("%s:%d: %s boots from %s (rack %s), not from the network", n.Source.File, n.Source.Line, name, n.Boot, n.Rack))
		default:
			out = append(out, nbdroot.Node{Name: n.Name, Serial: n.Serial})
		}
	}
	return out, errors.Join(errs...)
}
