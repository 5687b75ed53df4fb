package cli

import (
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// imageServer serves a cloud image and its SHA512SUMS on loopback and
// records every request; with forbid, any request fails the test (the
// run must not leave the simulator).
type imageServer struct {
	url  string
	mu   sync.Mutex
	reqs []string
}

func newImageServer(t *testing.T, forbid bool) *imageServer {
	t.Helper()
	// A qcow2 (v2) header of a 3 GiB disk: the simulator checks imports.
	image := make([]byte, 4096)
	copy(image, "QFI\xfb")
	binary.BigEndian.PutUint32(image[4:], 2)
	binary.BigEndian.PutUint32(image[20:], 16)
	binary.BigEndian.PutUint64(image[24:], 3<<30)
	sum := sha512.Sum512(image)
	s := &imageServer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.reqs = append(s.reqs, r.Method+" "+r.URL.Path)
		s.mu.Unlock()
		if forbid {
			t.Errorf("the run contacted %s %s; nothing but the Proxmox API may be contacted", r.Method, r.URL)
			http.Error(w, "forbidden by the test", http.StatusForbidden)
			return
		}
		switch r.URL.Path {
		case "/cloud/SHA512SUMS":
			w.Write([]byte(hex.EncodeToString(sum[:]) + "  debian-12-genericcloud-amd64.qcow2\n"))
		case "/cloud/debian-12-genericcloud-amd64.qcow2":
			w.Write(image)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL + "/cloud/debian-12-genericcloud-amd64.qcow2"
	return s
}

func (s *imageServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reqs...)
}

// Only a run that really downloads the image needs its checksum: a dry
// run and a run where every host has the template work offline.
func TestTemplateFetchesTheChecksumOnlyForADownload(t *testing.T) {
	cases := []struct {
		name      string
		templates bool // every host has the template already
		dryRun    bool
		want      string
		fetches   []string
	}{
		{"dry run", false, true, "dry run: 2 hosts would get the template", nil},
		{"every host has it", true, false, "nothing to do: every host has template debian-12-cloudinit", nil},
		{"every host has it, dry run", true, true, "nothing to do: every host has template debian-12-cloudinit", nil},
		{"download", false, false, "template debian-12-cloudinit made on 2 hosts", []string{
			"GET /cloud/SHA512SUMS",                                                                          // once, by provision
			"GET /cloud/debian-12-genericcloud-amd64.qcow2", "GET /cloud/debian-12-genericcloud-amd64.qcow2", // by each host
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, path, _ := pveCLI(t, "debian-12-cloudinit", c.templates)
			img := newImageServer(t, c.fetches == nil)
			args := []string{"template", "-i", path, "--vmid", "9100", "--image-url", img.url}
			if c.dryRun {
				args = append(args, "--dry-run")
			}
			code, out, errs := run(t, args...)
			if code != 0 {
				t.Fatalf("template exited %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
			}
			if !strings.Contains(out, c.want) {
				t.Errorf("stdout lacks %q:\n%s", c.want, out)
			}
			if got := img.requests(); strings.Join(got, "\n") != strings.Join(c.fetches, "\n") {
				t.Errorf("requests to the image server:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.fetches, "\n"))
			}
			if c.fetches == nil && strings.Contains(errs, "SHA512SUMS") {
				t.Errorf("stderr says the checksum is read:\n%s", errs)
			}
		})
	}
}
