package render

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/fhlab/provision/internal/inventory"
)

// FileMode is the mode of the seed files: they hold public keys only.
const FileMode fs.FileMode = 0o644

// Summary counts what WriteAll did, per node.
type Summary struct {
	Written   int // nodes with at least one file created or changed
	Unchanged int // nodes whose three files were already up to date
	Files     int // files created or changed (also those of a node that then failed)
}

// WriteAll renders every node of inv into dir/<node>/{user-data,meta-data,
// network-config}, with at most workers nodes at a time (GOMAXPROCS when
// workers < 1). A file is replaced atomically (temporary file in the same
// directory, then rename) and only when its content or mode differs, so a
// second run reports every node unchanged. It stops at the first error or
// when ctx is done, and returns what was done until then.
func WriteAll(parent context.Context, r *Renderer, inv *inventory.Inventory, dir string, workers int) (Summary, error) {
	if workers < 1 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, len(inv.Nodes))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Summary{}, fmt.Errorf("create output directory: %w", err)
	}
	ctx, cancel := context.WithCancel(parent)
	defer cancel()

	var (
		mu       sync.Mutex
		sum      Summary
		firstErr error
		wg       sync.WaitGroup
	)
	jobs := make(chan *inventory.Node)
	for range workers {
		wg.Go(func() {
			for n := range jobs {
				if ctx.Err() != nil {
					continue // drain
				}
				written, err := writeNode(r, inv, n, dir)
				mu.Lock()
				sum.Files += written
				switch {
				case err != nil:
					if firstErr == nil {
						firstErr = err
					}
					cancel()
				case written > 0:
					sum.Written++
				default:
					sum.Unchanged++
				}
				mu.Unlock()
			}
		})
	}
feed:
	for i := range inv.Nodes {
		select {
		case jobs <- &inv.Nodes[i]:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()

	if firstErr != nil {
		return sum, firstErr
	}
	if done := sum.Written + sum.Unchanged; done < len(inv.Nodes) {
		return sum, fmt.Errorf("render seeds: stopped after %d of %d nodes: %w", done, len(inv.Nodes), context.Cause(parent))
	}
	return sum, nil
}

// writeNode renders one node and writes its changed files; it returns how
// many files it wrote.
func writeNode(r *Renderer, inv *inventory.Inventory, n *inventory.Node, dir string) (int, error) {
	if !validDirName(n.Name) {
		return 0, fmt.Errorf("render %s: not usable as a directory name", n.Name)
	}
	files, err := r.Node(inv, n)
	if err != nil {
		return 0, err
	}
	nodeDir := filepath.Join(dir, n.Name)
	// A directory made just now holds no files to compare with.
	fresh := true
	if err := os.Mkdir(nodeDir, 0o755); errors.Is(err, fs.ErrExist) {
		fresh = false
	} else if err != nil {
		return 0, fmt.Errorf("write %s: %w", n.Name, err)
	}
	written := 0
	for _, f := range [...]struct {
		name string
		data []byte
	}{{UserData, files.UserData}, {MetaData, files.MetaData}, {NetworkConfig, files.NetworkConfig}} {
		path := filepath.Join(nodeDir, f.name)
		if !fresh {
			same, err := sameFile(path, f.data, FileMode)
			if err != nil {
				return written, fmt.Errorf("write %s/%s: %w", n.Name, f.name, err)
			}
			if same {
				continue
			}
		}
		if err := writeAtomic(path, f.data, FileMode); err != nil {
			return written, fmt.Errorf("write %s/%s: %w", n.Name, f.name, err)
		}
		written++
	}
	return written, nil
}

func validDirName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, `/\`) && filepath.IsLocal(name)
}

// sameFile reports whether path is a regular file with mode perm that holds
// exactly data.
func sameFile(path string, data []byte, perm fs.FileMode) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false, err
	}
	if !st.Mode().IsRegular() || st.Mode().Perm() != perm || st.Size() != int64(len(data)) {
		return false, nil
	}
	// Same size: compare the bytes. Seeds are a few KiB.
	got := make([]byte, len(data))
	if _, err := io.ReadFull(f, got); err != nil {
		return false, nil // shrunk meanwhile: rewrite it
	}
	return bytes.Equal(got, data), nil
}

// writeAtomic writes data to a new temporary file next to path and renames
// it over path, so readers see the old or the new file, never a part. The
// temporary file is removed on failure. There is no fsync: seeds are
// rendered again from the inventory at will, and syncing thousands of files
// would cost far more than rendering them.
func writeAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	dir, base := filepath.Split(path)
	var tmp *os.File
	for range 100 {
		name := filepath.Join(dir, "."+base+"."+strconv.FormatUint(rand.Uint64(), 36)+".tmp")
		tmp, err = os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	// The umask may have taken bits off perm; chmod only then (one system
	// call less per file, which shows at thousands of files).
	if m := umask(); m < 0 || fs.FileMode(m)&perm != 0 {
		if err = tmp.Chmod(perm); err != nil {
			return err
		}
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// umask is the process's umask as Linux reports it in /proc/self/status, or
// -1 when unknown. It is read once: changing the umask in a running program
// is unusual, and if it happens the files get a mode sameFile rejects, so the
// next run rewrites them.
var umask = sync.OnceValue(func() int {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			if err != nil {
				return -1
			}
			return int(m)
		}
	}
	return -1
})
