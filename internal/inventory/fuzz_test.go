package inventory_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/fhlab/provision/internal/inventory"
)

// mapFS is an in-memory inventory.FS: file name → contents.
type mapFS map[string][]byte

func (m mapFS) ReadFile(name string) ([]byte, error) {
	data, ok := m[filepath.ToSlash(name)]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return data, nil
}

// fuzzDir is where the fuzzed inventory pretends to live; rack CSVs named
// racks/x.csv are read from fuzzDir/racks/x.csv.
const fuzzDir = "lab"

// rackFiles returns every rack CSV the seeds refer to, keyed by base name.
func rackFiles(t testing.TB) map[string][]byte {
	t.Helper()
	racks := map[string][]byte{}
	for _, pattern := range []string{"../../inventory/racks/*.csv", "testdata/invalid/racks/*.csv"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			racks[filepath.Base(f)] = data
		}
	}
	return racks
}

// FuzzParse feeds Parse an inventory and a rack CSV. Every rack CSV the
// inventory names reads as the fuzzed CSV, or, when that is empty, as the
// real rack file of that name, so both the YAML decoder and the CSV reader
// are fuzzed.
func FuzzParse(f *testing.F) {
	racks := rackFiles(f)
	seeds, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	seeds = append(seeds, "testdata/many-problems.yaml", "testdata/many-decode-problems.yaml",
		"../../inventory/example.yaml", "../../inventory/local.yaml")
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, []byte(nil))
		name := filepath.Base(s)
		if csv, ok := racks[name[:len(name)-len(filepath.Ext(name))]+".csv"]; ok {
			f.Add(data, csv)
		}
	}
	f.Add([]byte("apiVersion: provision/v1\nkind: Lab\n"), racks["r1.csv"])

	f.Fuzz(func(t *testing.T, data, csv []byte) {
		fsys := mapFS{}
		for name, content := range racks {
			if len(csv) > 0 {
				content = csv
			}
			fsys[fuzzDir+"/racks/"+name] = content
		}
		inv, err := inventory.Parse(fuzzDir+"/lab.yaml", data, fsys)
		if err != nil {
			var probs inventory.Problems
			if !errors.As(err, &probs) {
				t.Fatalf("error is %T, not Problems: %v", err, err)
			}
			if len(probs) == 0 {
				t.Fatal("empty Problems returned as an error")
			}
			for _, p := range probs {
				if p.File == "" || p.Msg == "" {
					t.Fatalf("problem without a file or message: %#v", p)
				}
			}
			return
		}
		if len(inv.Nodes) == 0 {
			t.Fatal("a valid inventory without nodes")
		}
		names, ips := map[string]bool{}, map[string]bool{}
		for _, n := range inv.Nodes {
			if names[n.Name] || ips[n.IP] {
				t.Fatalf("node %s (%s) is not unique in a valid inventory", n.Name, n.IP)
			}
			names[n.Name], ips[n.IP] = true, true
		}
	})
}
