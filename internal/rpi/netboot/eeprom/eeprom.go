// Package eeprom writes a Raspberry Pi 4 bootloader configuration for
// network boot: the file rpi-eeprom-config applies to the EEPROM.
//
// BOOT_ORDER is read right to left, one mode per hex digit: 1 SD card,
// 2 network, 3 RPIBOOT, 4 USB mass storage, 5 BCM USB mass storage,
// 6 NVMe (CM4), 7 HTTP, e stop, f restart from the first mode. 0xf21 tries
// the SD card, then the network, then starts again (raspi-config's
// "Network Boot"); 0xf2 boots from the network only. TFTP_PREFIX says
// which directory the bootloader asks the TFTP server for: 0 its serial
// number ("9ffefdef/start4.elf"), 2 its MAC address
// ("dc-a6-32-01-36-c2/start4.elf"); provision netboot serve answers both.
// TFTP_IP names the TFTP server and overrides what DHCP says.
// (raspberrypi/documentation, raspberry-pi/eeprom-bootloader.adoc.)
package eeprom

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Prefix is how the bootloader names its TFTP directory.
type Prefix int

const (
	BySerial Prefix = 0 // TFTP_PREFIX=0
	ByMAC    Prefix = 2 // TFTP_PREFIX=2
)

// ParsePrefix reads "serial" or "mac".
func ParsePrefix(s string) (Prefix, error) {
	switch strings.ToLower(s) {
	case "serial":
		return BySerial, nil
	case "mac":
		return ByMAC, nil
	}
	return 0, fmt.Errorf("TFTP prefix %q: use serial (the Pi's serial number, TFTP_PREFIX=0) or mac (its MAC address, TFTP_PREFIX=2)", s)
}

func (p Prefix) String() string {
	if p == ByMAC {
		return "mac"
	}
	return "serial"
}

// BootOrders are the named boot orders.
var BootOrders = map[string]uint32{
	"sd-network":     0xf21,  // SD card, then network, repeat
	"network":        0xf2,   // network only, repeat
	"sd-usb-network": 0xf241, // SD card, USB, network, repeat
	"network-sd":     0xf12,  // network first, then the SD card
}

// ParseBootOrder reads a named boot order or a hex BOOT_ORDER (0xf21),
// which must try the network (2) and use only known modes.
func ParseBootOrder(s string) (uint32, error) {
	if v, ok := BootOrders[s]; ok {
		return v, nil
	}
	h, ok := strings.CutPrefix(strings.ToLower(s), "0x")
	if !ok {
		return 0, fmt.Errorf("boot order %q: give a name (network, sd-network, sd-usb-network, network-sd) or hex digits such as 0xf21", s)
	}
	v, err := strconv.ParseUint(h, 16, 32)
	if err != nil || h == "" {
		return 0, fmt.Errorf("boot order %q: not hex digits (0xf21 is SD card, then network, then again)", s)
	}
	network := false
	for i, c := range h {
		switch c {
		case '1', '3', '4', '5', '6', '7', 'e':
		case '2':
			network = true
		case 'f':
			if i != 0 {
				return 0, fmt.Errorf("boot order %s: f (restart) only makes sense as the last mode, the leftmost digit", s)
			}
		default:
			return 0, fmt.Errorf("boot order %s: %c is not a Pi 4 boot mode (1 SD, 2 network, 3 RPIBOOT, 4 USB, 5 BCM USB, 6 NVMe, 7 HTTP, e stop, f restart)", s, c)
		}
	}
	if !network {
		return 0, fmt.Errorf("boot order %s never tries the network (2): the Pi would not netboot", s)
	}
	return uint32(v), nil
}

// Config is a network-boot bootloader configuration.
type Config struct {
	BootOrder uint32
	Prefix    Prefix
	// TFTPIP, when valid, is the TFTP server the bootloader uses instead
	// of the one DHCP names.
	TFTPIP netip.Addr
}

// Render is the configuration file. It starts from the Pi 4 bootloader's
// own default lines (rpi-eeprom-config --apply replaces the whole
// configuration, so they are kept) and adds the network boot settings.
func Render(c Config) ([]byte, error) {
	if c.BootOrder == 0 {
		return nil, fmt.Errorf("no boot order")
	}
	if c.Prefix != BySerial && c.Prefix != ByMAC {
		return nil, fmt.Errorf("TFTP prefix %d: use serial (0) or mac (2)", int(c.Prefix))
	}
	if c.TFTPIP.IsValid() && !c.TFTPIP.Is4() {
		return nil, fmt.Errorf("TFTP_IP %s: the Pi 4 bootloader netboots over IPv4 only", c.TFTPIP)
	}
	var b strings.Builder
	b.WriteString("[all]\n")
	b.WriteString("# The Pi 4 bootloader's defaults, kept: rpi-eeprom-config --apply replaces the whole file.\n")
	b.WriteString("BOOT_UART=0\nWAKE_ON_GPIO=1\nPOWER_OFF_ON_HALT=0\n\n")
	b.WriteString("# Written by provision netboot eeprom.\n")
	fmt.Fprintf(&b, "# Boot modes, right to left: %s.\n", describe(c.BootOrder))
	fmt.Fprintf(&b, "BOOT_ORDER=0x%x\n", c.BootOrder)
	if c.Prefix == ByMAC {
		b.WriteString("# Ask the TFTP server for <MAC address>/start4.elf (dc-a6-32-01-36-c2/).\n")
	} else {
		b.WriteString("# Ask the TFTP server for <serial number>/start4.elf (9ffefdef/).\n")
	}
	fmt.Fprintf(&b, "TFTP_PREFIX=%d\n", int(c.Prefix))
	if c.TFTPIP.IsValid() {
		b.WriteString("# The TFTP server, whatever DHCP says.\n")
		fmt.Fprintf(&b, "TFTP_IP=%s\n", c.TFTPIP)
	}
	return []byte(b.String()), nil
}

var modes = map[rune]string{
	'1': "SD card", '2': "network", '3': "RPIBOOT", '4': "USB", '5': "BCM USB",
	'6': "NVMe", '7': "HTTP", 'e': "stop", 'f': "restart",
}

func describe(order uint32) string {
	h := strconv.FormatUint(uint64(order), 16)
	var parts []string
	for i := len(h) - 1; i >= 0; i-- {
		parts = append(parts, modes[rune(h[i])])
	}
	return strings.Join(parts, ", ")
}
