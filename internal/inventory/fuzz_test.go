package inventory_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
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

// fuzzFS serves the rack CSVs from memory and, for paths under the fuzz
// directory (where the special files are) or /dev, the real file system
// through inventory.OSFS, so the fuzzer reaches devices and FIFOs. Other
// paths do not exist: the fuzzer reads nothing else of the machine.
type fuzzFS struct {
	files mapFS
	dir   string
}

func (f fuzzFS) real(name string) bool {
	return strings.HasPrefix(name, f.dir+"/") || strings.HasPrefix(name, "/dev/")
}

func (f fuzzFS) ReadFile(name string) ([]byte, error) {
	if _, ok := f.files[filepath.ToSlash(name)]; ok || !f.real(name) {
		return f.files.ReadFile(name)
	}
	return inventory.OSFS{}.ReadFile(name)
}

func (f fuzzFS) Check(name string, limit int64) error {
	if _, ok := f.files[filepath.ToSlash(name)]; ok || !f.real(name) {
		_, err := f.files.ReadFile(name)
		return err
	}
	return inventory.OSFS{}.Check(name, limit)
}

// specialFiles makes, in dir/racks, files that are not regular files of a
// sane size, and returns the paths an inventory may name them by: relative
// to dir, and absolute devices.
func specialFiles(t testing.TB, dir string) []string {
	t.Helper()
	racks := filepath.Join(dir, "racks")
	if err := os.MkdirAll(filepath.Join(racks, "dir.csv"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(racks, "fifo.csv"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", filepath.Join(racks, "zero.csv")); err != nil {
		t.Fatal(err)
	}
	// Sparse: 5 MiB that take no disk.
	big, err := os.Create(filepath.Join(racks, "big.csv"))
	if err == nil {
		err = big.Truncate(5 << 20)
		big.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return []string{"/dev/zero", "racks/fifo.csv", "racks/dir.csv", "racks/zero.csv", "racks/big.csv", "/dev/urandom", "/dev/null", "/dev/stdin"}
}

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

var (
	fuzzPathField = regexp.MustCompile(`(nodes|caFile|privateKeyFile): *[^,}\n]+|authorizedKeyFiles: *\[[^\]\n]*\]`)
	fuzzNumber    = regexp.MustCompile(`(: *)[0-9]+\b`)
	fuzzMAC       = regexp.MustCompile(`[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}`)
	hostileMACs   = []string{"ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00", "01:00:5e:00:00:fb", "33:33:00:00:00:01", "dc:a6:32:01:01:01"}
)

// mutate rewrites the inputs by mode, so that the fuzzer reaches the
// classes of input a byte-level mutator rarely makes: mode&3 picks what to
// rewrite and mode>>2 what with.
//
//	0: nothing
//	1: every file path field names one of the special files
//	2: every whole number in the inventory becomes an explicit 0
//	3: every MAC in the CSV becomes a MAC no NIC has
func mutate(mode uint8, data, csv []byte, special []string) ([]byte, []byte) {
	pick := int(mode >> 2)
	switch mode & 3 {
	case 1:
		p := special[pick%len(special)]
		data = fuzzPathField.ReplaceAllFunc(data, func(m []byte) []byte {
			field, _, _ := strings.Cut(string(m), ":")
			if field == "authorizedKeyFiles" {
				return []byte(field + ": [" + p + "]")
			}
			return []byte(field + ": " + p)
		})
	case 2:
		data = fuzzNumber.ReplaceAll(data, []byte("${1}0"))
	case 3:
		csv = fuzzMAC.ReplaceAllLiteral(csv, []byte(hostileMACs[pick%len(hostileMACs)]))
	}
	return data, csv
}

// FuzzParse feeds Parse an inventory, a rack CSV and a mutation mode. Every
// rack CSV the inventory names reads as the fuzzed CSV, or, when that is
// empty, as the real rack file of that name, so both the YAML decoder and
// the CSV reader are fuzzed; paths in the fuzz directory and /dev reach the
// real file system, where a FIFO, a directory, a link to /dev/zero and an
// oversized file wait (see mutate for the modes).
func FuzzParse(f *testing.F) {
	racks := rackFiles(f)
	dir := f.TempDir()
	special := specialFiles(f, dir)
	seeds, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	seeds = append(seeds, "testdata/many-problems.yaml", "testdata/many-decode-problems.yaml",
		"../../inventory/example.yaml", "../../inventory/local.yaml", "../../inventory/byo.yaml")
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, []byte(nil), uint8(0))
		name := filepath.Base(s)
		if csv, ok := racks[name[:len(name)-len(filepath.Ext(name))]+".csv"]; ok {
			f.Add(data, csv, uint8(0))
			f.Add(data, csv, uint8(3))
			f.Add(data, csv, uint8(3|1<<2))
		}
	}
	// Special files by every field that names a file, explicit zeros.
	example, err := os.ReadFile("../../inventory/example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for i := range special {
		f.Add(example, []byte(nil), uint8(1|i<<2))
	}
	f.Add(example, []byte(nil), uint8(2))
	f.Add([]byte("apiVersion: provision/v1\nkind: Lab\n"), racks["r1.csv"], uint8(0))
	small, err := os.ReadFile("testdata/invalid/netboot-no-csv.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range special {
		f.Add([]byte(strings.Replace(string(small), "ipStart: 192.168.10.101}", "ipStart: 192.168.10.101, nodes: "+p+"}", 1)), []byte(nil), uint8(0))
		f.Add([]byte(strings.Replace(string(small), "ssh:\n", "ssh:\n  authorizedKeyFiles: ["+p+"]\n  privateKeyFile: "+p+"\n", 1)), []byte(nil), uint8(0))
		f.Add([]byte(strings.Replace(string(small), "  template:", "  caFile: "+p+"\n  template:", 1)), []byte(nil), uint8(0))
	}
	for _, z := range []string{"count: 3, role", "memory: 0, count: 2", "vmidStart: 0, count: 2", "cores: 0, count: 2"} {
		f.Add([]byte(strings.Replace(string(small), "count: 3, role", z, 1)), []byte(nil), uint8(0))
	}
	f.Add([]byte(strings.Replace(string(small), "swarm:\n", "swarm:\n  defaultAddrPoolMaskLength: 0\nhostTuning: {keepalive: {probes: 0, time: 0}, zram: {percent: 0}}\n", 1)), []byte(nil), uint8(0))
	// Existing hosts: explicit zeros, a host on a VM's address and name.
	for _, h := range []string{"{name: gpu-1, address: 192.168.10.40, sshPort: 0}", "{name: wrk-1, address: 192.168.10.11}", "{name: gpu-1, address: 192.168.10.40, arch: arm64, sshUser: root, labels: {gpu: a100}}"} {
		f.Add([]byte(string(small)+"hosts:\n  - "+h+"\n"), []byte(nil), uint8(0))
		f.Add([]byte(string(small)+"hosts:\n  - "+h+"\n"), []byte(nil), uint8(2))
	}
	for _, mac := range hostileMACs {
		f.Add(small, []byte("\uFEFFslot,serial,mac\n1,1a2b0101,"+mac+"\n2,,dc:a6:32:01:01:02\n"), uint8(0))
	}

	f.Fuzz(func(t *testing.T, data, csv []byte, mode uint8) {
		data, csv = mutate(mode, data, csv, special)
		fsys := fuzzFS{files: mapFS{}, dir: dir}
		for name, content := range racks {
			if len(csv) > 0 {
				content = csv
			}
			fsys.files[dir+"/racks/"+name] = content
		}
		inv, err := inventory.Parse(dir+"/lab.yaml", data, fsys)
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
			// What reaches the terminal has no control characters from
			// the input (escape sequences, carriage returns).
			for _, line := range strings.Split(err.Error(), "\n") {
				if i := strings.IndexFunc(line, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f || r >= 0x80 && r < 0xa0 }); i >= 0 {
					t.Fatalf("control character %U in the message %q", []rune(line[i:])[0], line)
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
			if n.MAC != "" && (strings.HasPrefix(n.MAC, "ff:ff") || n.MAC == "00:00:00:00:00:00") {
				t.Fatalf("node %s has the MAC %s no NIC has", n.Name, n.MAC)
			}
		}
	})
}
