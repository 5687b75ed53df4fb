package nbdroot

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Export is where a Pi finds its root disk.
type Export struct {
	Node string
	// Host and Port are the address the Pi connects to; Name is the NBD
	// export name (the node's name).
	Host string
	Port int
	Name string
	// Overlay is the Pi's qcow2 overlay on the server.
	Overlay string
	// Partition is the root file system's MBR partition in the golden
	// image, 0 when the image is a bare file system.
	Partition int
}

// Addr is host:port.
func (e Export) Addr() string { return net.JoinHostPort(e.Host, strconv.Itoa(e.Port)) }

// URI is the export as an NBD URI (nbdinfo, nbdcopy, qemu's -drive).
func (e Export) URI() string {
	return (&url.URL{Scheme: "nbd", Host: e.Addr(), Path: "/" + e.Name}).String()
}

// RootDevice is the root file system's device on the Pi: the first NBD
// device, or its partition.
func (e Export) RootDevice() string {
	if e.Partition == 0 {
		return "/dev/nbd0"
	}
	return fmt.Sprintf("/dev/nbd0p%d", e.Partition)
}

// KernelArgs are the tokens the Pi's cmdline.txt needs for its root, in
// the syntax of Debian's nbd-client initramfs script
// (nbdroot=SERVER:PORT/NAME). The network comes up in the initramfs (ip=
// on the same line, DHCP when absent).
func (e Export) KernelArgs() string {
	host := e.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return fmt.Sprintf("nbdroot=%s:%d/%s root=%s rootfstype=ext4 rw rootwait", host, e.Port, e.Name, e.RootDevice())
}
