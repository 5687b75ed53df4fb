package hosts

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// Apply writes a file that differs with its bytes and mode (through the
// shell command a host runs), and a plan without items runs nothing.
func TestApplyWritesFiles(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "etc", "x.conf")
	w := Want{Packages: []string{"docker.io"}, Files: []File{{Path: p, Mode: 0o640, Content: []byte("a = 'b'\n\x00binary\n")}}}
	f := &Facts{Root: true, Files: map[string]string{}, Services: map[string]ServiceState{}}
	plan := &Plan{Host: "h", Items: []Item{{Kind: "file", Name: p, Detail: "create"}}, facts: f, want: w, node: node}
	res, err := Apply(context.Background(), localRunner{}, plan)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil || string(got) != string(w.Files[0].Content) {
		t.Fatalf("file %q, %v", got, err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", st.Mode().Perm())
	}
	if len(res.Changed) != 1 {
		t.Errorf("changed %v", res.Changed)
	}
	if _, err := os.Stat(p + ".provision-tmp"); err == nil {
		t.Error("the temporary file is left")
	}
	res, err = Apply(context.Background(), failRunner{t}, &Plan{Host: "h", facts: f, want: w})
	if err != nil || len(res.Changed) != 0 {
		t.Errorf("an empty plan: %v %v", res.Changed, err)
	}
}

type failRunner struct{ t *testing.T }

func (r failRunner) Run(_ context.Context, cmd string) ([]byte, []byte, error) {
	r.t.Errorf("ran %q for a plan without changes", cmd)
	return nil, nil, nil
}
