package netboot

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// dhcpTest is a DHCP server in the server namespace and a client socket
// on port 68 in the client namespace.
type dhcpTest struct {
	ns     *netnsPair
	client net.PacketConn
	log    *logBuffer
	events *Recorder
}

func startDHCP(t *testing.T, mode DHCPMode) *dhcpTest {
	t.Helper()
	return startDHCPIn(t, newNetnsPair(t), mode)
}

// startDHCPIn serves DHCP in ns's server namespace.
func startDHCPIn(t *testing.T, ns *netnsPair, mode DHCPMode) *dhcpTest {
	t.Helper()
	inv := testLab(t)
	boards, err := NewBoards(inv, BySerial)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := NewRecorder(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	var conn net.PacketConn
	if err := in(ns.Server, func() (err error) {
		conn, err = ListenDHCP(ctx, ns.ServerIf, 67)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &DHCPServer{Mode: mode, ServerIP: ns.ServerIP, Boards: boards, Inv: inv, Events: rec,
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, conn) }()
	d := &dhcpTest{ns: ns, log: logs, events: rec}
	if err := in(ns.Client, func() (err error) {
		d.client, err = ListenDHCP(ctx, ns.ClientIf, 68)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		d.client.Close()
		if err := <-done; err != nil {
			t.Errorf("DHCP Serve: %v", err)
		}
		if t.Failed() {
			t.Logf("DHCP server log:\n%s", logs.String())
		}
	})
	return d
}

// piDiscover is what the Pi 4 bootloader sends (option 60 PXEClient with
// its architecture string, option 93 = 0, option 97 a GUID).
func piDiscover(t *testing.T, mac string, class string) *dhcpv4.DHCPv4 {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	m, err := piDiscovery(hw, class, append([]byte{0}, []byte("RPi4\x00\x31\x11\xc0\x01\x00\x00\x01\x01\xfd\xfe\x9f")...))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

const piClass = pxeClass

func (d *dhcpTest) send(t *testing.T, b []byte) {
	t.Helper()
	if _, err := d.client.WriteTo(b, &net.UDPAddr{IP: net.IPv4bcast, Port: 67}); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// next is the next DHCP answer the client receives.
func (d *dhcpTest) next(t *testing.T) *dhcpv4.DHCPv4 {
	t.Helper()
	buf := make([]byte, 4096)
	d.client.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, _, err := d.client.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no DHCP answer: %v", err)
	}
	m, err := dhcpv4.FromBytes(buf[:n])
	if err != nil {
		t.Fatalf("answer: %v", err)
	}
	return m
}

func checkBootOptions(t *testing.T, m *dhcpv4.DHCPv4, d *dhcpTest) {
	t.Helper()
	want43 := append([]byte{6, 1, 3, 10, 4, 0, 'P', 'X', 'E', 9, 20, 0, 0, 17}, append([]byte("Raspberry Pi Boot"), 0xff)...)
	if got := m.GetOneOption(dhcpv4.OptionVendorSpecificInformation); !bytes.Equal(got, want43) {
		t.Errorf("option 43 = % x, want % x", got, want43)
	}
	if got := string(m.GetOneOption(dhcpv4.OptionTFTPServerName)); got != d.ns.ServerIP.String() {
		t.Errorf("option 66 = %q, want %s", got, d.ns.ServerIP)
	}
	if !m.ServerIPAddr.Equal(d.ns.ServerIP.AsSlice()) || !m.ServerIdentifier().Equal(d.ns.ServerIP.AsSlice()) {
		t.Errorf("siaddr %s, option 54 %s; want %s", m.ServerIPAddr, m.ServerIdentifier(), d.ns.ServerIP)
	}
	if m.ClassIdentifier() != "PXEClient" {
		t.Errorf("option 60 = %q, want PXEClient", m.ClassIdentifier())
	}
}

// TestProxyDHCP: the Pi bootloader's DISCOVER is answered with option 43
// and the TFTP address and no address of its own; a non-Pi PXE client, a
// Pi without PXE, an SD-booted Pi and a malformed packet get nothing, and
// the server answers the next Pi (answers come in order, so the only
// answer read is the Pi's).
func TestProxyDHCP(t *testing.T) {
	d := startDHCP(t, DHCPProxy)
	ignored := [][]byte{
		piDiscover(t, "02:00:00:00:00:01", piClass).ToBytes(),           // not a Pi MAC
		piDiscover(t, "dc:a6:32:99:99:99", "MSFT 5.0").ToBytes(),        // a Pi, not its bootloader
		piDiscover(t, macSD, piClass).ToBytes(),                         // pi-m1-01 boots from SD
		{0x01, 0x01, 0x06, 0x00, 0xde, 0xad},                            // malformed: truncated
		append(piDiscover(t, macR1, piClass).ToBytes()[:240], 53, 9, 1), // malformed: an option past the end
	}
	for _, b := range ignored {
		d.send(t, b)
	}
	pi := piDiscover(t, macR1, piClass)
	d.send(t, pi.ToBytes())
	offer := d.next(t)
	if offer.TransactionID != pi.TransactionID || offer.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("first answer: %s, want the OFFER to pi-r1-01's DISCOVER", offer.Summary())
	}
	if !offer.YourIPAddr.IsUnspecified() {
		t.Errorf("proxy DHCP offered address %s", offer.YourIPAddr)
	}
	checkBootOptions(t, offer, d)
	if got := offer.GetOneOption(dhcpv4.OptionClientMachineIdentifier); !bytes.Equal(got, pi.GetOneOption(dhcpv4.OptionClientMachineIdentifier)) {
		t.Errorf("option 97 not echoed: % x", got)
	}
	// A Pi of no rack (a Pi OUI) is answered too: its serial shows up at
	// the TFTP server as unknown, which is how a new Pi is found.
	stranger := piDiscover(t, "2c:cf:67:00:00:07", piClass)
	d.send(t, stranger.ToBytes())
	if m := d.next(t); m.TransactionID != stranger.TransactionID {
		t.Errorf("answer %s, want one to the stranger Pi", m.Summary())
	}
	mustContain(t, "the DHCP log", d.log.String(), "ignored a malformed packet", "not a Raspberry Pi MAC", "boots from sd", "not a PXE client")
	if r := d.events.Snapshot().Pis["pi-r1-01"]; r == nil || r.MAC != macR1 || r.LastStep != "DHCP answered" {
		t.Errorf("pi-r1-01's DHCP event: %+v", r)
	}
	if strings.Contains(d.log.String(), "02:00:00:00:00:01\" type=") {
		t.Errorf("the non-Pi client was answered")
	}
}

// TestFullDHCP: on an isolated boot network the Pi gets its inventory
// address as a lease with the boot options; a REQUEST for it is ACKed, one
// for another address NAKed.
func TestFullDHCP(t *testing.T) {
	d := startDHCP(t, DHCPFull)
	pi := piDiscover(t, macR1, piClass)
	d.send(t, pi.ToBytes())
	offer := d.next(t)
	if offer.MessageType() != dhcpv4.MessageTypeOffer || !offer.YourIPAddr.Equal(net.IPv4(192, 168, 11, 1)) {
		t.Fatalf("offer %s: want 192.168.11.1", offer.Summary())
	}
	checkBootOptions(t, offer, d)
	if net.IP(offer.SubnetMask()).String() != "255.255.254.0" || len(offer.Router()) != 1 || !offer.Router()[0].Equal(net.IPv4(192, 168, 10, 1)) {
		t.Errorf("offer: mask %v, router %v", offer.SubnetMask(), offer.Router())
	}
	req, err := dhcpv4.NewRequestFromOffer(offer, dhcpv4.WithOption(dhcpv4.OptClassIdentifier(piClass)))
	if err != nil {
		t.Fatal(err)
	}
	d.send(t, req.ToBytes())
	if ack := d.next(t); ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.Equal(net.IPv4(192, 168, 11, 1)) {
		t.Errorf("answer to the REQUEST: %s", ack.Summary())
	}
	req.UpdateOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 168, 11, 77)))
	d.send(t, req.ToBytes())
	if nak := d.next(t); nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("answer to a REQUEST for another address: %s", nak.Summary())
	}
	// A Pi of no rack gets no address here.
	d.send(t, piDiscover(t, "2c:cf:67:00:00:07", piClass).ToBytes())
	d.send(t, pi.ToBytes())
	if m := d.next(t); m.TransactionID != pi.TransactionID {
		t.Errorf("answer %s: want only pi-r1-01's", m.Summary())
	}
	if r := d.events.Snapshot().Pis["pi-r1-01"]; r == nil || r.IP != "192.168.11.1" {
		t.Errorf("pi-r1-01's DHCP event: %+v", r)
	}
}
