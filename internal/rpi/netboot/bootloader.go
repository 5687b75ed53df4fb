package netboot

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Bootloader does what a Raspberry Pi 4's bootloader does to boot from the
// network, for the emulated lab and tests: DHCP DISCOVER as the Pi (vendor
// class PXEClient, option 93 = 0, option 97 its GUID, its MAC), repeated
// until an answer carries option 43 "Raspberry Pi Boot"; then its boot
// files over TFTP from its own directory, in the bootloader's order:
// config.txt, start4.elf, fixup4.dat, the device tree, the kernel and
// initramfs config.txt names, cmdline.txt (blksize 1468 and tsize, no
// window, as the EEPROM's client asks).
type Bootloader struct {
	MAC net.HardwareAddr
	// Dir is the Pi's TFTP directory (its serial number, or its MAC with
	// dashes; Boards.Dir).
	Dir string
	// Interface is the Pi's network interface. In runs fn where the Pi's
	// sockets must be opened (in its network namespace, for the emulated
	// lab); nil opens them here.
	Interface string
	In        func(fn func() error) error
	// Addr is the Pi's address in the inventory: what a full DHCP answer
	// must hand it.
	Addr netip.Addr
	// Retry is how long the Pi waits for an answer before it asks again
	// (default 2 s); the bootloader keeps asking until ctx ends.
	Retry time.Duration
	// Progress, when set, is told each step (DHCP answered, file read).
	Progress func(step string)
}

// Boot is what a Bootloader got: who answered, how, and the files.
type Boot struct {
	Server netip.Addr // the TFTP server
	// Offered is the address a full DHCP answer handed the Pi; invalid
	// for a proxy answer, which hands none.
	Offered netip.Addr
	Files   []BootFile // in the order read
	Took    time.Duration
}

// BootFile is one file the bootloader read.
type BootFile struct {
	Name string // without the Pi's directory
	Data []byte
}

// File returns the data of the file name, if it was read.
func (b *Boot) File(name string) ([]byte, bool) {
	for _, f := range b.Files {
		if f.Name == name {
			return f.Data, true
		}
	}
	return nil, false
}

// pxeClass is the vendor class the Pi 4 bootloader sends (option 60).
const pxeClass = "PXEClient:Arch:00000:UNDI:002001"

// piDiscovery is the DISCOVER a Pi 4 bootloader sends from mac: option 60
// class (pxeClass), option 93 = 0 and option 97 guid.
func piDiscovery(mac net.HardwareAddr, class string, guid []byte) (*dhcpv4.DHCPv4, error) {
	return dhcpv4.NewDiscovery(mac,
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(class)),
		dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{0, 0}),
		dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, guid),
	)
}

// Boot runs the bootloader to the end of cmdline.txt or until ctx ends. A
// DHCP answer without the Pi's option 43, or a full answer with another
// address than Addr, is an error; so is any file the server refuses.
func (b *Bootloader) Boot(ctx context.Context) (*Boot, error) {
	start := time.Now()
	out := &Boot{}
	if err := b.dhcp(ctx, out); err != nil {
		return nil, err
	}
	server := netip.AddrPortFrom(out.Server, 69)
	read := func(name string) ([]byte, error) {
		// A port of its own per file, as TFTP has it: a late answer to
		// the request before cannot be taken for this one's.
		var conn net.PacketConn
		err := b.in(func() (err error) {
			conn, err = DefaultListen(ctx, "udp4", "0.0.0.0:0")
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("tftp: %w", err)
		}
		defer conn.Close()
		var buf bytes.Buffer
		if _, err := Fetch(ctx, conn, server, b.Dir+"/"+name, FetchOptions{Blksize: 1468, TSize: true}, &buf); err != nil {
			return nil, fmt.Errorf("tftp %s/%s from %s: %w", b.Dir, name, out.Server, err)
		}
		out.Files = append(out.Files, BootFile{Name: name, Data: buf.Bytes()})
		b.say(fmt.Sprintf("read %s (%d bytes)", name, buf.Len()))
		return buf.Bytes(), nil
	}
	config, err := read("config.txt")
	if err != nil {
		return nil, err
	}
	files := append([]ConfigFile{{Name: "start4.elf"}, {Name: "fixup4.dat"}}, ConfigFiles(config)...)
	for _, f := range files {
		_, err := read(f.Name)
		var refused *ClientAbort // the server's ERROR packet
		if err != nil && !(f.Optional && errors.As(err, &refused) && refused.Code == errNotFound) {
			return nil, err
		}
	}
	out.Took = time.Since(start)
	return out, nil
}

func (b *Bootloader) in(fn func() error) error {
	if b.In == nil {
		return fn()
	}
	return b.In(fn)
}

func (b *Bootloader) say(step string) {
	if b.Progress != nil {
		b.Progress(step)
	}
}

// dhcp sends DISCOVERs until an answer for the Pi comes.
func (b *Bootloader) dhcp(ctx context.Context, out *Boot) error {
	var conn net.PacketConn
	err := b.in(func() (err error) {
		conn, err = ListenDHCP(ctx, b.Interface, 68)
		return err
	})
	if err != nil {
		return fmt.Errorf("dhcp: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	retry := b.Retry
	if retry <= 0 {
		retry = 2 * time.Second
	}
	// GUID: "RPi4" and the low bytes of the MAC (a real one goes on with
	// the board revision and serial).
	guid := append([]byte{0}, []byte("RPi4")...)
	disc, err := piDiscovery(b.MAC, pxeClass, append(guid, b.MAC[2:]...))
	if err != nil {
		return fmt.Errorf("dhcp: %w", err)
	}
	buf := make([]byte, 1500)
	for tries := 1; ; tries++ {
		if _, err := conn.WriteTo(disc.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: 67}); err != nil {
			return fmt.Errorf("dhcp: send DISCOVER: %w", err)
		}
		deadline := time.Now().Add(retry)
		conn.SetReadDeadline(deadline)
		for {
			n, _, err := conn.ReadFrom(buf)
			if ctx.Err() != nil {
				return fmt.Errorf("dhcp: no answer to %d DISCOVERs: %w", tries, ctx.Err())
			}
			if isNetTimeout(err) {
				break
			}
			if err != nil {
				return fmt.Errorf("dhcp: %w", err)
			}
			m, err := dhcpv4.FromBytes(buf[:n])
			if err != nil || m.TransactionID != disc.TransactionID || m.OpCode != dhcpv4.OpcodeBootReply {
				continue // another client's, or not DHCP
			}
			return b.accept(m, out)
		}
	}
}

// accept checks an answer as the Pi would, and a full answer's address
// against the Pi's.
func (b *Bootloader) accept(m *dhcpv4.DHCPv4, out *Boot) error {
	if m.MessageType() != dhcpv4.MessageTypeOffer {
		return fmt.Errorf("dhcp: answered with %s, not an OFFER", m.MessageType())
	}
	if !bytes.Contains(m.GetOneOption(dhcpv4.OptionVendorSpecificInformation), []byte("Raspberry Pi Boot")) {
		return fmt.Errorf("dhcp: the OFFER from %s has no option 43 \"Raspberry Pi Boot\": the bootloader ignores it", m.ServerIdentifier())
	}
	server, ok := netip.AddrFromSlice(m.ServerIdentifier().To4())
	if opt := m.GetOneOption(dhcpv4.OptionTFTPServerName); len(opt) > 0 {
		a, err := netip.ParseAddr(strings.TrimRight(string(opt), "\x00"))
		if err != nil {
			return fmt.Errorf("dhcp: option 66 %q is not an address", opt)
		}
		server, ok = a, true
	}
	if !ok || !server.IsValid() || server.IsUnspecified() {
		return errors.New("dhcp: the OFFER names no TFTP server (option 66 or 54)")
	}
	out.Server = server
	if yi, ok := netip.AddrFromSlice(m.YourIPAddr.To4()); ok && !yi.IsUnspecified() {
		out.Offered = yi
		if yi != b.Addr {
			return fmt.Errorf("dhcp: the OFFER hands the Pi %s; its address is %s", yi, b.Addr)
		}
		b.say(fmt.Sprintf("DHCP: %s offered by %s, TFTP server %s", yi, m.ServerIdentifier(), server))
	} else {
		b.say(fmt.Sprintf("DHCP: proxy answer from %s, TFTP server %s", m.ServerIdentifier(), server))
	}
	return nil
}

// ConfigFile is a file config.txt makes the bootloader read; an optional
// one (auto_initramfs) may be missing.
type ConfigFile struct {
	Name     string
	Optional bool
}

// ConfigFiles are the files a config.txt makes the bootloader read after
// start4.elf and fixup4.dat: the device tree (device_tree=, default the
// Pi 4 B's), the kernel (kernel=, default kernel8.img), the initramfs
// (initramfs NAME, or with auto_initramfs=1 the default kernel's
// initramfs8 if there is one), and cmdline.txt (cmdline=). Only [all] and
// [pi4] sections count.
func ConfigFiles(config []byte) []ConfigFile {
	dtb, kernel, initramfs, cmdline := "bcm2711-rpi-4-b.dtb", "", "", "cmdline.txt"
	auto := false
	active := true
	sc := bufio.NewScanner(bytes.NewReader(config))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if strings.HasPrefix(line, "[") {
			s := strings.ToLower(strings.Trim(line, "[]"))
			active = s == "all" || s == "pi4"
			continue
		}
		if !active || line == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "initramfs "); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				initramfs = f[0]
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "device_tree":
			dtb = v
		case "kernel":
			kernel = v
		case "cmdline":
			cmdline = v
		case "auto_initramfs":
			auto = v == "1"
		}
	}
	out := []ConfigFile{{Name: dtb}}
	switch {
	case kernel == "":
		out = append(out, ConfigFile{Name: "kernel8.img"})
		if initramfs == "" && auto {
			out = append(out, ConfigFile{Name: "initramfs8", Optional: true})
		}
	default:
		out = append(out, ConfigFile{Name: kernel})
	}
	if initramfs != "" {
		out = append(out, ConfigFile{Name: initramfs})
	}
	return append(out, ConfigFile{Name: cmdline})
}
