package render

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/fhlab/provision/internal/inventory"
)

// snapshot is every file and directory under dir: path → mode and content.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		v := info.Mode().String()
		if info.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + string(data)
		}
		out[p] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameSnapshot(t *testing.T, before, after map[string]string) {
	t.Helper()
	for p, v := range after {
		if w, ok := before[p]; !ok {
			t.Errorf("left behind: %s", p)
		} else if w != v {
			t.Errorf("changed: %s", p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("removed: %s", p)
		}
	}
}

// TestWriteAllWritesAllOrNothing makes one node's write fail, into an empty
// directory and over an earlier render with hand-edited files: the run
// fails naming the node, and the directory is as it was.
func TestWriteAllWritesAllOrNothing(t *testing.T) {
	inv := example(t)
	r := renderer(t)
	ctx := context.Background()

	t.Run("fresh directory", func(t *testing.T) {
		dir := t.TempDir()
		// A file where a node's directory belongs; nodes before and after
		// it in the inventory would be written by a run that goes on.
		if err := os.WriteFile(filepath.Join(dir, "pi-r2-05"), []byte("not a directory"), 0o644); err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, dir)
		sum, err := WriteAll(ctx, r, inv, dir, 4)
		if err == nil || !strings.HasPrefix(err.Error(), "write pi-r2-05") {
			t.Fatalf("err = %v, want it to name pi-r2-05", err)
		}
		if sum != (Summary{}) {
			t.Errorf("summary %+v of a failed run", sum)
		}
		sameSnapshot(t, before, snapshot(t, dir))
	})

	t.Run("over an earlier render", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := WriteAll(ctx, r, inv, dir, 4); err != nil {
			t.Fatal(err)
		}
		// Edits a new run would undo, and a directory where one node's
		// user-data belongs.
		for _, f := range []string{"mgr-1/" + NetworkConfig, "wrk-03/" + UserData, "pi-r4-30/" + MetaData} {
			if err := os.WriteFile(filepath.Join(dir, f), []byte("edited\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.RemoveAll(filepath.Join(dir, "pi-r1-01")); err != nil {
			t.Fatal(err)
		}
		bad := filepath.Join(dir, "pi-r2-05", UserData)
		if err := os.Remove(bad); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(bad, 0o755); err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, dir)
		_, err := WriteAll(ctx, r, inv, dir, 4)
		if err == nil || !strings.HasPrefix(err.Error(), "write pi-r2-05/user-data") {
			t.Fatalf("err = %v, want it to name pi-r2-05/user-data", err)
		}
		sameSnapshot(t, before, snapshot(t, dir))
	})
}

// TestWriteAllUndoesRenames fails the last step, renaming the new files
// into place, half-way: the files already renamed are put back.
func TestWriteAllUndoesRenames(t *testing.T) {
	inv := example(t)
	r := renderer(t)
	dir := t.TempDir()
	if _, err := WriteAll(context.Background(), r, inv, dir, 4); err != nil {
		t.Fatal(err)
	}
	for _, n := range inv.Nodes {
		if err := os.WriteFile(filepath.Join(dir, n.Name, MetaData), []byte("edited\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(filepath.Join(dir, "wrk-05")); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	calls := 0
	failAt := len(inv.Nodes) / 2
	w := writer{rename: func(oldpath, newpath string) error {
		calls++
		if calls == failAt {
			return errors.New("disk on fire")
		}
		return os.Rename(oldpath, newpath)
	}}
	_, err := w.writeAll(context.Background(), r, inv, dir, 4)
	if err == nil || !strings.Contains(err.Error(), "disk on fire (nothing written)") {
		t.Fatalf("err = %v", err)
	}
	if calls < failAt+failAt-1 {
		t.Errorf("%d renames: the %d renamed files were not all put back", calls, failAt-1)
	}
	sameSnapshot(t, before, snapshot(t, dir))
}

// TestHostileValuesCannotInject: the inventory refuses line breaks and
// other control characters in every value; should one reach the renderer
// anyway, the values it quotes stay values. user-data keeps its keys and
// runcmd, and each hostile value reads back exactly.
func TestHostileValuesCannotInject(t *testing.T) {
	inv, err := inventory.Load(exampleInventory)
	if err != nil {
		t.Fatal(err)
	}
	const evil = "\"\nruncmd: [[reboot]]\n# '\u2028x: {y: 1}\\"
	inv.Lab.Network.Domain = "lab.example" + evil
	inv.Lab.SSH.User = "provision" + evil
	inv.Lab.SSH.AuthorizedKeys = append(inv.Lab.SSH.AuthorizedKeys, "ssh-ed25519 AAAA"+evil)
	inv.Lab.Network.NTP = []string{"ntp" + evil}
	n := &inv.Nodes[0]
	plain, err := renderer(t).Node(example(t), findNode(t, example(t), n.Name))
	if err != nil {
		t.Fatal(err)
	}
	files, err := renderer(t).Node(inv, n)
	if err != nil {
		t.Fatal(err)
	}
	var got, want userData
	var gotKeys, wantKeys map[string]any
	for _, u := range []struct {
		data []byte
		v    any
	}{{files.UserData, &got}, {plain.UserData, &want}, {files.UserData, &gotKeys}, {plain.UserData, &wantKeys}} {
		if err := yaml.Unmarshal(u.data, u.v); err != nil {
			t.Fatalf("user-data is not YAML: %v", err)
		}
	}
	if len(gotKeys) != len(wantKeys) {
		t.Errorf("user-data has %d top-level keys, want %d", len(gotKeys), len(wantKeys))
	}
	if len(got.Runcmd) != len(want.Runcmd) {
		t.Errorf("runcmd has %d commands, want %d", len(got.Runcmd), len(want.Runcmd))
	}
	if got.FQDN != n.Name+"."+inv.Lab.Network.Domain {
		t.Errorf("fqdn %q", got.FQDN)
	}
	if len(got.Users) == 0 || got.Users[0].Name != inv.Lab.SSH.User || got.Users[0].Keys[len(got.Users[0].Keys)-1] != "ssh-ed25519 AAAA"+evil {
		t.Errorf("users %+v", got.Users)
	}
	if len(got.NTP.Servers) != 1 || got.NTP.Servers[0] != "ntp"+evil {
		t.Errorf("ntp servers %q", got.NTP.Servers)
	}
}
