package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns` keeps named network namespaces.
const netnsDir = "/run/netns"

// isNsfs reports whether a namespace is bound at path.
func isNsfs(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}

// linkExists reports whether the host has a network interface of that name.
func linkExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

// ensureBridge creates the lab bridge with the gateway address, or checks
// the one there. It refuses a network already routed through another
// interface: two labs on one subnet would steal each other's traffic.
func (l *Lab) ensureBridge(ctx context.Context) error {
	br := l.bridge
	addr := netip.PrefixFrom(l.cfg.Gateway, l.cfg.Network.Bits()).String()
	if err := l.checkNetworkFree(); err != nil {
		return err
	}
	batch := fmt.Sprintf("link set %s type bridge stp_state 0 forward_delay 0\naddress replace %s dev %s\nlink set %s up\n", br, addr, br, br)
	if !linkExists(br) {
		batch = fmt.Sprintf("link add %s type bridge\n", br) + batch
	}
	if _, err := runInput(ctx, batch, l.tools.ip, "-batch", "-"); err != nil {
		return fmt.Errorf("set up bridge %s: %w", br, err)
	}
	return nil
}

// checkNetworkFree fails when an interface other than the lab bridge has an
// address inside the lab network.
func (l *Lab) checkNetworkFree() error {
	ifs, err := net.Interfaces()
	if err != nil {
		return fmt.Errorf("list interfaces: %w", err)
	}
	for _, ifc := range ifs {
		if ifc.Name == l.bridge {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if ok && l.cfg.Network.Contains(ip.Unmap()) {
				return fmt.Errorf("network %s is already in use on interface %s (%s): another lab up? run `provision lab down` for it, or pick another network", l.cfg.Network, ifc.Name, ipn)
			}
		}
	}
	return nil
}

// ensureNetns gives a node its network namespace, with loopback up and
// eth0 on the lab bridge holding the node's address, and no default route.
func (l *Lab) ensureNetns(ctx context.Context, n Node) error {
	if !isNsfs(n.NetnsPath()) {
		// A file without a namespace is a leftover of an interrupted add.
		_ = os.Remove(n.NetnsPath())
		if _, err := run(ctx, l.tools.ip, "netns", "add", n.Netns); err != nil {
			return fmt.Errorf("create network namespace %s: %w", n.Netns, err)
		}
	}
	host := ""
	if !linkExists(n.Veth) {
		host = fmt.Sprintf("link add %s type veth peer name eth0 netns %s\n", n.Veth, n.Netns)
	}
	host += fmt.Sprintf("link set %s master %s up\n", n.Veth, l.bridge)
	if _, err := runInput(ctx, host, l.tools.ip, "-batch", "-"); err != nil {
		return fmt.Errorf("connect %s to bridge %s: %w", n.Netns, l.bridge, err)
	}
	inside := fmt.Sprintf("link set lo up\naddress replace %s dev eth0\nlink set eth0 up\n",
		netip.PrefixFrom(n.IP, l.cfg.Network.Bits()))
	if _, err := runInput(ctx, inside, l.tools.ip, "-n", n.Netns, "-batch", "-"); err != nil {
		return fmt.Errorf("configure eth0 in %s: %w", n.Netns, err)
	}
	return nil
}

// ensureUTS keeps a UTS namespace with hostname bound at n.UTS, so the
// node's dockerd and sshd (and SSH sessions) see its name.
func ensureUTS(n Node, hostname string) error {
	if isNsfs(n.UTS) {
		return nil
	}
	if err := os.WriteFile(n.UTS, nil, 0o444); err != nil {
		return fmt.Errorf("create UTS namespace file: %w", err)
	}
	errc := make(chan error, 1)
	go func() {
		// The thread makes the new UTS namespace, binds it and goes back to
		// its own. A thread that cannot go back is never reused: without
		// UnlockOSThread the runtime ends it with the goroutine. Ending
		// threads is avoided otherwise: a child started from one with
		// Pdeathsig (qemu-nbd) would be killed with it.
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/uts")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own UTS namespace: %w", err)
			return
		}
		defer self.Close()
		if err := unix.Unshare(unix.CLONE_NEWUTS); err != nil {
			runtime.UnlockOSThread() // unshare failed: the thread is clean
			errc <- fmt.Errorf("unshare UTS namespace: %w", err)
			return
		}
		err = unix.Sethostname([]byte(hostname))
		if err != nil {
			err = fmt.Errorf("set hostname %s: %w", hostname, err)
		} else if err = unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/uts", unix.Gettid()), n.UTS, "", unix.MS_BIND, ""); err != nil {
			err = fmt.Errorf("bind UTS namespace to %s: %w", n.UTS, err)
		}
		if serr := unix.Setns(int(self.Fd()), unix.CLONE_NEWUTS); serr != nil {
			errc <- errors.Join(err, fmt.Errorf("leave the new UTS namespace: %w", serr))
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// deleteNetns removes a named network namespace (its bind mount and file).
func deleteNetns(name string) error {
	p := filepath.Join(netnsDir, name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}

// namedNetns lists the network namespaces under /run/netns whose names
// start with prefix-.
func namedNetns(prefix string) []string {
	ents, _ := os.ReadDir(netnsDir)
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix+"-") {
			names = append(names, e.Name())
		}
	}
	return names
}

// prefixedLinks lists host interfaces whose names start with prefix-.
func prefixedLinks(prefix string) []string {
	ifs, _ := net.Interfaces()
	var names []string
	for _, ifc := range ifs {
		if strings.HasPrefix(ifc.Name, prefix+"-") {
			names = append(names, ifc.Name)
		}
	}
	return names
}
