package netboot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRealClients: tftp-hpa (plain RFC 1350, 512-byte blocks) and curl
// (blksize 512 and 1468, tsize) in the client namespace fetch start4.elf
// and the generated cmdline.txt and config.txt for a known serial from the
// server namespace: the image's files byte for byte, the generated ones as
// rendered for that Pi. An unknown serial and a path with ".." are refused.
func TestRealClients(t *testing.T) {
	tftpTool := need(t, "tftp", "tftp-hpa")
	curlTool := need(t, "curl", "curl")
	ns := newNetnsPair(t)
	s := startTFTP(t, ns.ServerIP.String()+":69", listenIn(ns.Server), Limits{})
	tb := makeTestImage(t)
	cmdline, _ := s.Files.Generated(serialR1, "cmdline.txt")
	config, _ := s.Files.Generated(serialR1, "config.txt")
	mustContain(t, "cmdline.txt", string(cmdline), "root=/dev/nbd0p2 nbdroot="+ns.ServerIP.String()+"/pi-r1-01",
		"ip=192.168.11.1::192.168.10.1:255.255.254.0:pi-r1-01:eth0:off", "ds=nocloud;s=file:///boot/firmware/;i=nb-lab-pi-r1-01", "cgroup_enable=memory")
	if strings.Contains(string(cmdline), "PARTUUID") || strings.Count(string(cmdline), "\n") != 1 {
		t.Errorf("cmdline.txt keeps the SD root or is not one line: %q", cmdline)
	}
	mustContain(t, "config.txt", string(config), string(fileOf(tb, "config.txt")), "pi-r1-01", "cmdline=cmdline.txt")

	want := map[string][]byte{"start4.elf": fileOf(tb, "start4.elf"), "cmdline.txt": cmdline, "config.txt": config, "fixup4.dat": fileOf(tb, "fixup4.dat")}
	ctx := context.Background()
	out := t.TempDir()
	server := ns.ServerIP.String()
	fetchers := []struct {
		name string
		get  func(remote, local string) ([]byte, error)
	}{
		{"tftp-hpa", func(remote, local string) ([]byte, error) {
			return run(ctx, ns.Client, tftpTool, "-m", "binary", server, "-c", "get", remote, local)
		}},
		{"curl blksize 512", func(remote, local string) ([]byte, error) {
			return run(ctx, ns.Client, curlTool, "-sS", "--path-as-is", "--tftp-blksize", "512", "-o", local, "tftp://"+server+"/"+remote)
		}},
		{"curl blksize 1468", func(remote, local string) ([]byte, error) {
			return run(ctx, ns.Client, curlTool, "-sS", "--path-as-is", "--tftp-blksize", "1468", "-o", local, "tftp://"+server+"/"+remote)
		}},
	}
	for _, f := range fetchers {
		t.Run(f.name, func(t *testing.T) {
			for name, data := range want {
				local := filepath.Join(out, strings.ReplaceAll(f.name, " ", "-")+"-"+name)
				if o, err := f.get(serialR1+"/"+name, local); err != nil {
					t.Fatalf("%s %s: %v\n%s", f.name, name, err, o)
				}
				got, err := os.ReadFile(local)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, data) {
					t.Errorf("%s fetched %s: %d bytes, want %d, identical %v", f.name, name, len(got), len(data), bytes.Equal(got, data))
				}
			}
			// Refused: an unknown serial, "..".
			for _, bad := range []string{"deadbeef/start4.elf", serialR1 + "/../" + serialR1 + "/start4.elf"} {
				local := filepath.Join(out, "refused")
				os.Remove(local)
				o, err := f.get(bad, local)
				got, _ := os.ReadFile(local)
				// tftp-hpa prints the server's error and exits 0; curl
				// exits 68 (not found) or 69 (permission problem).
				refused := strings.Contains(string(o), "Error code") || err != nil
				if len(got) > 0 || !refused {
					t.Errorf("%s fetched %s: %d bytes, %v, want a refusal\n%s", f.name, bad, len(got), err, o)
				}
			}
		})
	}
	waitFor(t, "pi-r1-01's served events", func() bool {
		r := s.Events.Snapshot().Pis["pi-r1-01"]
		return r != nil && r.Files >= 12 && r.IP == ns.ClientIP.String()
	})
	if r := s.Events.Snapshot().Unknown["deadbeef"]; r == nil || r.IP != ns.ClientIP.String() {
		t.Errorf("unknown serial deadbeef: no event with the client's address: %+v", r)
	}
	mustContain(t, "the server log", s.Log.String(), "dir=deadbeef", `\"..\" is refused`)
}

// TestSilentClient: a client that asks for start4.elf and then never
// acknowledges does not hold the server: another client's fetch succeeds
// meanwhile, and the silent client's transfer ends on its own after its
// re-sends, its goroutine and socket gone.
func TestSilentClient(t *testing.T) {
	curlTool := need(t, "curl", "curl")
	ns := newNetnsPair(t)
	s := startTFTP(t, ns.ServerIP.String()+":69", listenIn(ns.Server), Limits{Retries: 2})
	tb := makeTestImage(t)
	var silent net.PacketConn
	if err := in(ns.Client, func() (err error) {
		silent, err = net.ListenPacket("udp4", ns.ClientIP.String()+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	req := appendRequest(nil, Request{Filename: serialR1 + "/start4.elf", Mode: "octet", Options: []Option{{"blksize", "1468"}, {"timeout", "1"}}})
	if _, err := silent.WriteTo(req, &net.UDPAddr{IP: ns.ServerIP.AsSlice(), Port: 69}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := silent.ReadFrom(buf)
	if err != nil || n < 2 || buf[1] != opOACK {
		t.Fatalf("the silent client's first answer: %q %v; want an OACK", buf[:n], err)
	}
	waitFor(t, "the silent transfer to start", func() bool { return s.running() == 1 })

	// Meanwhile another client gets the whole file.
	local := filepath.Join(t.TempDir(), "start4.elf")
	if o, err := run(context.Background(), ns.Client, curlTool, "-sS", "--tftp-blksize", "1468", "-o", local, "tftp://"+ns.ServerIP.String()+"/"+serialR1+"/start4.elf"); err != nil {
		t.Fatalf("curl while a client is silent: %v\n%s", err, o)
	}
	if got, _ := os.ReadFile(local); !bytes.Equal(got, fileOf(tb, "start4.elf")) {
		t.Errorf("curl while a client is silent: %d bytes, not the image's start4.elf", len(got))
	}

	// The silent one is dropped: no transfer left running.
	waitFor(t, "the silent client to be dropped", func() bool { return s.running() == 0 })
	var dropped bool
	for _, st := range s.stats() {
		if errors.Is(st.Err, errClientGone) && st.Remote.Port() == uint16(silent.LocalAddr().(*net.UDPAddr).Port) {
			dropped = true
		}
	}
	if !dropped {
		t.Errorf("no transfer ended with %q: %v", errClientGone, s.stats())
	}
	mustContain(t, "the server log", s.Log.String(), "dropped a client that stopped answering")
	_ = fmt.Sprint
}
