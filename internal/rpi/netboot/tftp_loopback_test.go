package netboot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
)

// TestFetchOptions fetches boot files over loopback with provision's own
// client in every option combination the server negotiates, byte-identical
// to the image's.
func TestFetchOptions(t *testing.T) {
	s := startTFTP(t, "127.0.0.1:0", nil, Limits{MaxBlockSize: 8192, MaxWindow: 16})
	tb := makeTestImage(t)
	tests := []struct {
		name string
		file string
		o    FetchOptions
	}{
		{"plain 512", "start4.elf", FetchOptions{}},
		{"blksize 8, windowsize 16: block numbers roll over twice", "kernel8.img", FetchOptions{Blksize: 8, Window: 16}},
		{"blksize 1468 tsize (the Pi)", "start4.elf", FetchOptions{Blksize: 1468, TSize: true}},
		{"blksize 1468, size a multiple: empty last block", "kernel8.img", FetchOptions{Blksize: 1468}},
		{"blksize past the limit is lowered", "bcm2711-rpi-4-b.dtb", FetchOptions{Blksize: 65464}},
		{"windowsize 8", "start4.elf", FetchOptions{Blksize: 1468, Window: 8, TSize: true}},
		{"windowsize past the limit", "fixup4.dat", FetchOptions{Blksize: 512, Window: 1000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			var got bytes.Buffer
			n, err := Fetch(context.Background(), conn, s.Addr, serialR1+"/"+tt.file, tt.o, &got)
			if err != nil {
				t.Fatalf("fetch: %v", err)
			}
			if want := fileOf(tb, tt.file); !bytes.Equal(got.Bytes(), want) || n != int64(len(want)) {
				t.Fatalf("%s: got %d bytes, want %d, identical %v", tt.file, n, len(want), bytes.Equal(got.Bytes(), want))
			}
		})
	}
}

// TestRefusals: a write, netascii, a bad path, a serial no Pi has, an
// SD-booted Pi, a file outside any directory: each an ERROR, server on.
func TestRefusals(t *testing.T) {
	s := startTFTP(t, "127.0.0.1:0", nil, Limits{})
	tests := []struct {
		name    string
		req     Request
		code    uint16
		msgPart string
	}{
		{"write", Request{Write: true, Filename: serialR1 + "/x", Mode: "octet"}, errAccess, "write requests are refused"},
		{"netascii", Request{Filename: serialR1 + "/config.txt", Mode: "netascii"}, errUndefined, "octet"},
		{"dotdot", Request{Filename: serialR1 + "/../" + serialR1 + "/start4.elf", Mode: "octet"}, errAccess, `".." is refused`},
		{"absolute", Request{Filename: "/" + serialR1 + "/start4.elf", Mode: "octet"}, errAccess, "absolute"},
		{"unknown serial", Request{Filename: "deadbeef/start4.elf", Mode: "octet"}, errNotFound, "unknown serial deadbeef"},
		{"sd-booted Pi", Request{Filename: serialSD + "/start4.elf", Mode: "octet"}, errNotFound, "boots from sd"},
		{"no directory", Request{Filename: "start4.elf", Mode: "octet"}, errNotFound, "serial/FILE"},
		{"not on the partition", Request{Filename: serialR1 + "/kernel_2712.img", Mode: "octet"}, errNotFound, "file not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.WriteTo(appendRequest(nil, tt.req), net.UDPAddrFromAddrPort(s.Addr)); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 600)
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				t.Fatal(err)
			}
			code, msg := parseError(buf[:n])
			if n < 4 || buf[1] != opERROR || code != tt.code || !bytes.Contains([]byte(msg), []byte(tt.msgPart)) {
				t.Fatalf("answer %q: code %d %q; want ERROR %d with %q", buf[:n], code, msg, tt.code, tt.msgPart)
			}
		})
	}
	// The server still serves.
	conn, _ := net.ListenPacket("udp4", "127.0.0.1:0")
	defer conn.Close()
	var got bytes.Buffer
	if _, err := Fetch(context.Background(), conn, s.Addr, serialR1+"/cmdline.txt", FetchOptions{}, &got); err != nil {
		t.Fatalf("fetch after the refusals: %v", err)
	}
	waitFor(t, "the served event", func() bool {
		r := s.Events.Snapshot().Pis["pi-r1-01"]
		return r != nil && r.Files > 0
	})
	snap := s.Events.Snapshot()
	if r := snap.Unknown["deadbeef"]; r == nil || r.IP != "127.0.0.1" {
		t.Errorf("no unknown-serial event for deadbeef: %+v", snap.Unknown)
	}
	if r := snap.Pis["pi-r1-01"]; r == nil || r.LastStep != "served cmdline.txt" || r.IP != "127.0.0.1" || r.MAC != macR1 {
		t.Errorf("pi-r1-01's record: %+v", r)
	}
	var ce *ClientAbort
	_, err := Fetch(context.Background(), conn, s.Addr, "cafef00d/start4.elf", FetchOptions{}, &got)
	if !errors.As(err, &ce) {
		t.Errorf("fetch of an unknown serial: %v", err)
	}
	_ = fmt.Sprint
}
