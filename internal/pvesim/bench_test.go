package pvesim

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkNew measures New, which parses the embedded API schema.
func BenchmarkNew(b *testing.B) {
	for b.Loop() {
		s, err := New(Options{})
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

// BenchmarkRequest measures one checked GET /cluster/resources?type=vm
// through the handler (no network), with 60 VMs.
func BenchmarkRequest(b *testing.B) {
	s, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	s.AddNode("pve1", true)
	s.AddToken("root@pam!b", "s", false, nil)
	for i := range 60 {
		if err := s.AddVM(VM{Node: "pve1", VMID: 4000 + i, Name: "vm", Config: map[string]string{"memory": "1024", "cores": "1"}}); err != nil {
			b.Fatal(err)
		}
	}
	h := s.Handler()
	for b.Loop() {
		req := httptest.NewRequest("GET", "http://127.0.0.1/api2/json/cluster/resources?type=vm", nil)
		req.Header.Set("Authorization", "PVEAPIToken=root@pam!b=s")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}
