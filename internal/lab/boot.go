package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/fhlab/provision/internal/netns"
	"github.com/fhlab/provision/internal/rpi/netboot"
)

// PiBoot is a netboot node as its bootloader knows itself.
type PiBoot struct {
	Name string
	MAC  net.HardwareAddr
	// Dir is its TFTP directory (serial number or MAC; netboot.Boards).
	Dir string
}

// BootOptions say how Boot checks and starts the netbooted nodes.
type BootOptions struct {
	// Golden is the golden image's boot partition: every file a Pi reads
	// that is not generated for it (cmdline.txt, config.txt) must be the
	// image's, byte for byte.
	Golden *netboot.BootImage
	// Image, when set, is a docker image archive loaded into each node
	// once its dockerd runs (as lab up loads it into the others).
	Image []byte
	// Retry is how long a Pi waits for a DHCP answer before it asks again.
	Retry time.Duration
	// Progress is told each Pi's steps.
	Progress func(node, step string)
}

// Boot does, for each of pis that is not running yet, what the Pi's
// bootloader does on power-on, from the Pi's own namespace: DHCP DISCOVER
// until a netboot server answers it, then its boot files over TFTP
// (netboot.Bootloader). The files are checked against the golden image and
// the Pi's inventory entry (cmdline.txt's ip= must give its address and
// name); then its system starts with the hostname cmdline.txt gives:
// dockerd and sshd, as Up starts every other node. Pis keep asking for
// DHCP until ctx ends; a Pi whose answer or files are wrong fails at once.
// Boot returns when every Pi runs or failed, with the failures joined.
func (l *Lab) Boot(ctx context.Context, pis []PiBoot, o BootOptions) error {
	if l.toolErr != nil {
		return l.toolErr
	}
	if o.Golden == nil {
		return errors.New("lab boot: no golden image to check the boot files against")
	}
	m, unlock, err := l.lockedManifest(ctx, "lab boot")
	if err != nil {
		return err
	}
	defer unlock()
	if m == nil {
		return fmt.Errorf("lab boot: lab %s is not up (provision lab up --boot netboot)", l.cfg.Prefix)
	}
	say := func(node, format string, args ...any) {
		if o.Progress != nil {
			o.Progress(node, fmt.Sprintf(format, args...))
		}
	}
	// Every Pi powers on at once; starting their systems is bounded as in Up.
	starting := make(chan struct{}, l.cfg.Concurrency)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, pi := range pis {
		n, ok := m.node(pi.Name)
		if !ok || !n.Netboot {
			errs = append(errs, fmt.Errorf("boot %s: not a netboot node of lab %s (provision lab up --boot netboot)", pi.Name, l.cfg.Prefix))
			continue
		}
		wg.Go(func() {
			err := l.bootPi(ctx, n, pi, o, starting, func(f string, a ...any) { say(n.Name, f, a...) })
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("boot %s: %w", n.Name, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (l *Lab) bootPi(ctx context.Context, n Node, pi PiBoot, o BootOptions, starting chan struct{}, say func(string, ...any)) error {
	hostname := n.Name
	if !n.WaitingForBoot() {
		say("already booted")
	} else {
		bl := &netboot.Bootloader{MAC: pi.MAC, Dir: pi.Dir, Interface: "eth0", Addr: n.IP, Retry: o.Retry,
			In:       func(fn func() error) error { return netns.In(n.NetnsPath(), fn) },
			Progress: func(step string) { say("%s", step) }}
		// A Pi whose server stops answering starts its boot over, as the
		// bootloader does; a refusal or a wrong answer ends it.
		var boot *netboot.Boot
		var err error
		for {
			boot, err = bl.Boot(ctx)
			if err == nil || !errors.Is(err, netboot.ErrNoAnswer) || ctx.Err() != nil {
				break
			}
			say("%v; starting over", err)
		}
		if err != nil {
			return err
		}
		if hostname, err = checkBoot(boot, n, o.Golden); err != nil {
			return err
		}
		say("boot files match the golden image; %d files in %s", len(boot.Files), boot.Took.Round(time.Millisecond))
	}
	select {
	case starting <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-starting }()
	if err := l.startSystem(ctx, n, hostname, o.Image); err != nil {
		return err
	}
	say("running as %s: dockerd and sshd answer", hostname)
	return nil
}

// checkBoot compares what a Pi read with the golden image and its node,
// and returns the hostname its cmdline.txt gives.
func checkBoot(b *netboot.Boot, n Node, golden *netboot.BootImage) (string, error) {
	for _, f := range b.Files {
		if f.Name == "cmdline.txt" || f.Name == "config.txt" {
			continue
		}
		want, err := golden.ReadFile(f.Name)
		if err != nil {
			return "", fmt.Errorf("%s: served, but the golden image has no such file: %w", f.Name, err)
		}
		if !bytes.Equal(f.Data, want) {
			return "", fmt.Errorf("%s: %d bytes served differ from the golden image's %d", f.Name, len(f.Data), len(want))
		}
	}
	config, _ := b.File("config.txt")
	gc, err := golden.ReadFile("config.txt")
	if err != nil {
		return "", err
	}
	if !bytes.HasPrefix(config, bytes.TrimRight(gc, "\n")) {
		return "", errors.New("config.txt does not start with the golden image's config.txt")
	}
	cmdline, ok := b.File("cmdline.txt")
	if !ok {
		return "", errors.New("no cmdline.txt read")
	}
	ip, host, err := cmdlineIP(string(cmdline))
	if err != nil {
		return "", err
	}
	if ip != n.IP || host != n.Name {
		return "", fmt.Errorf("cmdline.txt gives the Pi %s named %q; the node is %s, %s", ip, host, n.IP, n.Name)
	}
	return host, nil
}

// cmdlineIP reads the kernel's ip=CLIENT::GATEWAY:NETMASK:HOSTNAME:... of
// a cmdline.txt.
func cmdlineIP(cmdline string) (netip.Addr, string, error) {
	for _, f := range strings.Fields(cmdline) {
		v, ok := strings.CutPrefix(f, "ip=")
		if !ok {
			continue
		}
		parts := strings.Split(v, ":")
		if len(parts) < 5 {
			break
		}
		ip, err := netip.ParseAddr(parts[0])
		if err != nil {
			return netip.Addr{}, "", fmt.Errorf("cmdline.txt ip=%s: %w", v, err)
		}
		return ip, parts[4], nil
	}
	return netip.Addr{}, "", fmt.Errorf("cmdline.txt has no ip=CLIENT::GATEWAY:NETMASK:HOSTNAME: %q", strings.TrimSpace(cmdline))
}
