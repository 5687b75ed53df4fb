package state_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/state"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s, err := state.Load(dir, "fh-lab")
	if err != nil {
		t.Fatal(err)
	}
	s.Node("mgr-1").IP = "192.168.10.11"
	s.Node("mgr-1").SwarmNodeID = "abc"
	if err := s.Save(dir, time.Unix(1700000000, 0)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, state.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("state dir holds %d entries, want only the state file (no temporary files left)", len(entries))
	}
	got, err := state.Load(dir, "fh-lab")
	if err != nil {
		t.Fatal(err)
	}
	if got.Nodes["mgr-1"].SwarmNodeID != "abc" || got.SchemaVersion != state.SchemaVersion {
		t.Errorf("round trip lost facts: %+v", got.Nodes["mgr-1"])
	}
}

func TestLoadRefuses(t *testing.T) {
	tests := []struct {
		name, content, want string
	}{
		{"other lab", `{"schemaVersion":1,"lab":"other"}`, `belongs to lab "other"`},
		{"newer schema", `{"schemaVersion":99,"lab":"fh-lab"}`, "newer than this provision"},
		{"no version", `{"lab":"fh-lab"}`, "no schemaVersion"},
		{"garbage", `not json`, "not a provision state file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, state.FileName), []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := state.Load(dir, "fh-lab")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestWriteFileAtomicReplaces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "f")
	for _, content := range []string{"one", "two"} {
		if err := state.WriteFileAtomic(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(path)
		if string(b) != content {
			t.Fatalf("read %q, want %q", b, content)
		}
	}
}
