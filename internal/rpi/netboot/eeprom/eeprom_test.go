package eeprom

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.conf from Render")

func TestRenderGolden(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"sd-network-serial", Config{BootOrder: 0xf21, Prefix: BySerial}},
		{"network-mac-tftp-ip", Config{BootOrder: 0xf2, Prefix: ByMAC, TFTPIP: netip.MustParseAddr("192.168.10.5")}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Render(c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", c.name+".conf")
			if *update {
				os.MkdirAll("testdata", 0o755)
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if string(got) != string(want) {
				t.Errorf("Render differs from %s (go test -update rewrites it):\n%s", path, got)
			}
		})
	}
}

func TestParseBootOrder(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint32
		err  string
	}{
		{"sd-network", 0xf21, ""},
		{"network", 0xf2, ""},
		{"0xF241", 0xf241, ""},
		{"0xf41", 0, "never tries the network"},
		{"0x2f1", 0, "only makes sense as the last mode"},
		{"0xf29", 0, "9 is not a Pi 4 boot mode"},
		{"f21", 0, "give a name"},
		{"0x", 0, "not hex digits"},
		{"0xzz", 0, "not hex digits"},
	} {
		got, err := ParseBootOrder(c.in)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("ParseBootOrder(%q) err = %v, want %q", c.in, err, c.err)
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("ParseBootOrder(%q) = %#x, %v; want %#x", c.in, got, err, c.want)
		}
	}
}

func TestRenderRefuses(t *testing.T) {
	if _, err := Render(Config{BootOrder: 0xf21, TFTPIP: netip.MustParseAddr("fd00::1")}); err == nil || !strings.Contains(err.Error(), "IPv4 only") {
		t.Errorf("IPv6 TFTP_IP: %v", err)
	}
	if _, err := ParsePrefix("hostname"); err == nil {
		t.Error("prefix hostname accepted")
	}
}
