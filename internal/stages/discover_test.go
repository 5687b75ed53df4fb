package stages

import (
	"strings"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/rpi/netboot"
)

// TestLastBootStep: a netbooted Pi that does not answer is reported with
// the last step the netboot server recorded for it, or as never seen; other
// nodes get nothing added.
func TestLastBootStep(t *testing.T) {
	dir := t.TempDir()
	rec, err := netboot.NewRecorder(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 30, 22, 41, 7, 0, time.Local)
	rec.Record(netboot.Event{Time: at, Kind: netboot.EventFile, Node: "pi-r1-01", Serial: "9ffefd01", File: "start4.elf"})
	if err := rec.Flush(); err != nil {
		t.Fatal(err)
	}
	load := func() (*netboot.Boots, error) { return netboot.LoadBoots(dir) }
	for _, c := range []struct {
		node inventory.Node
		want string
	}{
		{inventory.Node{Name: "pi-r1-01", Kind: inventory.KindPi, Boot: inventory.BootNetboot, Serial: "9ffefd01"}, "; its last netboot step: served start4.elf at 22:41:07"},
		{inventory.Node{Name: "pi-r1-02", Kind: inventory.KindPi, Boot: inventory.BootNetboot, Serial: "9ffefd02"}, "; the netboot server never saw it (no DHCP request or TFTP read for serial 9ffefd02)"},
		{inventory.Node{Name: "pi-r3-01", Kind: inventory.KindPi, Boot: inventory.BootSD}, ""},
		{inventory.Node{Name: "wrk-01", Kind: inventory.KindVM}, ""},
	} {
		got := lastBootStep(load, &c.node)
		if !strings.HasPrefix(got, c.want) || (c.want == "" && got != "") {
			t.Errorf("%s: %q, want %q", c.node.Name, got, c.want)
		}
	}
}
