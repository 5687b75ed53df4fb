package stages_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/internal/rpi/image/imagetest"
	"github.com/fhlab/provision/internal/rpi/netboot"
	"github.com/fhlab/provision/internal/stages"
	"github.com/fhlab/provision/internal/state"
	"github.com/fhlab/provision/internal/testtool"
	"github.com/fhlab/provision/templates"
)

const piBootLab = `apiVersion: provision/v1
kind: Lab
metadata: {name: piboot}
network: {cidr: 192.168.10.0/23, gateway: 192.168.10.1, dns: [192.168.10.1]}
ssh:
  user: provision
  authorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq3mIzxp6Yw6z1s8m0b1f0ZC8qW2l2Hn0JXQZ3x7a9P admin@lab"]
swarm: {defaultAddrPool: [10.128.0.0/12], defaultAddrPoolMaskLength: 16, managers: 1}
pis:
  image: %IMAGE%
  racks:
    - {name: m1, count: 1, boot: sd, ipStart: 192.168.10.200, role: manager}
    - {name: r1, count: 2, boot: netboot, ipStart: 192.168.11.1, nodes: r1.csv}
`

// fetchStage is a stage after pi-boot: it fetches a netbooted Pi's
// cmdline.txt over TFTP while the run lasts.
type fetchStage struct {
	addr netip.AddrPort
	got  *bytes.Buffer
}

func (fetchStage) Name() string  { return "fetch" }
func (fetchStage) Title() string { return "fetch a Pi's cmdline.txt" }
func (fetchStage) Plan(context.Context, *pipeline.Env) (pipeline.Plan, error) {
	return pipeline.Plan{}, nil
}
func (f fetchStage) Run(ctx context.Context, _ *pipeline.Env) error {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = netboot.Fetch(ctx, conn, f.addr, "9ffefd01/cmdline.txt", netboot.FetchOptions{}, f.got)
	return err
}

// TestPiBootServesForTheRun: apply's pi-image and pi-boot stages on a lab
// with an SD rack and a netbooted rack (a synthetic Raspberry Pi OS base
// image): pi-boot names the SD rack's flash command, serves the netbooted
// Pis while the later stages run (a Pi's cmdline.txt is fetched over TFTP,
// pointing at its NBD root), and everything stops with the run: the TFTP
// port and the root export's port are free again.
func TestPiBootServesForTheRun(t *testing.T) {
	testtool.NeedAll(t, append(imagetest.Tools, "debugfs", "qemu-nbd:qemu-utils", "qemu-img:qemu-utils")...)
	dir := t.TempDir()
	def, err := imagetest.TrixieDefinition(dir, "trixie")
	if err != nil {
		t.Fatal(err)
	}
	if err := imagetest.WriteTree(dir, map[string]string{
		"lab.yaml": strings.ReplaceAll(piBootLab, "%IMAGE%", def),
		"r1.csv":   "slot,serial,mac\n1,9ffefd01,dc:a6:32:01:00:01\n2,9ffefd02,dc:a6:32:01:00:02\n",
	}); err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.Load(filepath.Join(dir, "lab.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := render.New(templates.FS)
	if err != nil {
		t.Fatal(err)
	}
	tftpAddr := freeUDP(t)
	nbdPort := freeTCP(t)

	var status lockedBuffer
	env := &pipeline.Env{
		Inventory: inv, State: state.New("piboot"), StateDir: filepath.Join(dir, "state"), Concurrency: 4,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Out: io.Discard,
		Status: pipeline.NewStatus(&status, time.Now), Now: time.Now,
	}
	var got bytes.Buffer
	p := pipeline.Pipeline{Stages: []pipeline.Stage{
		stages.PiImage{Renderer: r},
		stages.PiBoot{Renderer: r, Listen: tftpAddr.String(), DHCP: netboot.DHCPOff, NBDPort: nbdPort,
			UnitActive: func(context.Context, string) bool { return false }},
		fetchStage{addr: tftpAddr, got: &got},
	}}
	if err := p.Run(context.Background(), env); err != nil {
		t.Fatalf("run: %v\n%s", err, status.String())
	}
	for _, want := range []string{
		"provision flash -i " + inv.File + " --rack m1 --watch",
		"netboot: 2 Pis (TFTP directories by serial)",
		"netboot stopped with the run",
	} {
		if !strings.Contains(status.String(), want) {
			t.Errorf("no %q in the progress lines:\n%s", want, status.String())
		}
	}
	if want := fmt.Sprintf("nbdroot=127.0.0.1:%d/pi-r1-01", nbdPort); !strings.Contains(got.String(), want) {
		t.Errorf("cmdline.txt fetched during the run lacks %q: %q", want, got.String())
	}
	// Stopped with the run: both ports are free.
	u, err := net.ListenPacket("udp4", tftpAddr.String())
	if err != nil {
		t.Errorf("TFTP port still held after the run: %v", err)
	} else {
		u.Close()
	}
	l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", nbdPort))
	if err != nil {
		t.Errorf("the root export's port is still held after the run: %v", err)
	} else {
		l.Close()
	}

	// A plan starts nothing and says what the run will serve.
	pl, err := (stages.PiBoot{Listen: tftpAddr.String(), UnitActive: func(context.Context, string) bool { return true }}).Plan(context.Background(), env)
	if err != nil || len(pl.Notes) != 2 || !strings.Contains(pl.Notes[1], "served by provision-netboot.service") {
		t.Errorf("plan with the unit active: %v %q", err, pl.Notes)
	}
}

func freeUDP(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

func freeTCP(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
