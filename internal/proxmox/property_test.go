package proxmox_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/proxmox"
)

func TestParseProperty(t *testing.T) {
	tests := []struct {
		in                string
		key, value, store string
		opts              map[string]string
		cloudInit, cdrom  bool
	}{
		{in: "local-lvm:vm-4101-disk-0,iothread=1,size=32G", value: "local-lvm:vm-4101-disk-0", store: "local-lvm", opts: map[string]string{"iothread": "1", "size": "32G"}},
		{in: "local-lvm:vm-4101-cloudinit,media=cdrom", value: "local-lvm:vm-4101-cloudinit", store: "local-lvm", opts: map[string]string{"media": "cdrom"}, cloudInit: true, cdrom: true},
		{in: "local:9000/vm-9000-cloudinit.qcow2,media=cdrom", value: "local:9000/vm-9000-cloudinit.qcow2", store: "local", opts: map[string]string{"media": "cdrom"}, cloudInit: true, cdrom: true},
		{in: "local-lvm:cloudinit", value: "local-lvm:cloudinit", store: "local-lvm", opts: map[string]string{}, cloudInit: true},
		{in: "virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,firewall=0", key: "virtio", value: "BC:24:11:AA:BB:CC", opts: map[string]string{"bridge": "vmbr0", "firewall": "0"}},
		{in: "none,media=cdrom", value: "none", opts: map[string]string{"media": "cdrom"}, cdrom: true},
		{in: "", opts: map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p := proxmox.ParseProperty(tt.in)
			if p.Key != tt.key || p.Value != tt.value || p.Storage() != tt.store || p.IsCloudInit() != tt.cloudInit || p.IsCDROM() != tt.cdrom {
				t.Errorf("got key %q value %q storage %q cloudinit %v cdrom %v", p.Key, p.Value, p.Storage(), p.IsCloudInit(), p.IsCDROM())
			}
			if fmt.Sprint(p.Opts) != fmt.Sprint(tt.opts) {
				t.Errorf("opts: got %v, want %v", p.Opts, tt.opts)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{"32G", 32 << 30, false}, {"3584M", 3584 << 20, false}, {"1T", 1 << 40, false}, {"512K", 512 << 10, false},
		{"2.5G", 5 << 29, false}, {"100", 100, false}, {"16g", 16 << 30, false},
		{"", 0, true}, {"G", 0, true}, {"-1G", 0, true}, {"12X", 0, true},
	}
	for _, tt := range tests {
		got, err := proxmox.ParseSize(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
	if got := proxmox.FormatSize(96 << 30); got != "96.0 GiB" {
		t.Errorf("FormatSize: got %q", got)
	}
}

func TestImageFilename(t *testing.T) {
	tests := []struct{ url, want, err string }{
		{proxmox.DefaultImageURL, "debian-12-genericcloud-amd64.qcow2", ""},
		{"http://127.0.0.1:8080/img/disk.raw", "disk.raw", ""},
		{"https://example.org/debian.img", "", "must end in .qcow2, .raw or .vmdk"},
		{"ftp://example.org/a.qcow2", "", "not an http(s) URL"},
	}
	for _, tt := range tests {
		got, err := proxmox.TemplateSpec{ImageURL: tt.url}.ImageFilename()
		if got != tt.want || (tt.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("ImageFilename(%s) = %q, %v; want %q, %q", tt.url, got, err, tt.want, tt.err)
		}
	}
}

func TestFetchSHA512(t *testing.T) {
	sum := strings.Repeat("ab", 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/images/latest/SHA512SUMS" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, "%s  debian-12-genericcloud-amd64.json\n%s  debian-12-genericcloud-amd64.qcow2\n", strings.Repeat("cd", 64), strings.ToUpper(sum))
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	got, err := proxmox.FetchSHA512(ctx, srv.Client(), srv.URL+"/images/latest/debian-12-genericcloud-amd64.qcow2")
	if err != nil || got != sum {
		t.Errorf("got %q, %v; want %q", got, err, sum)
	}
	if _, err := proxmox.FetchSHA512(ctx, srv.Client(), srv.URL+"/images/latest/other.qcow2"); err == nil || !strings.Contains(err.Error(), "does not list other.qcow2 (pass --sha512)") {
		t.Errorf("unlisted image: got %v", err)
	}
	if _, err := proxmox.FetchSHA512(ctx, srv.Client(), srv.URL+"/elsewhere/x.qcow2"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("no SHA512SUMS: got %v", err)
	}
}
