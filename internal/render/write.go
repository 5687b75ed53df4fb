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
	"sort"
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
// workers < 1). It writes all nodes or none: every node is rendered first,
// then each changed file is written to a temporary file beside it, and only
// when all of them are written are they renamed into place. A failure or a
// cancelled ctx at any point leaves dir as it was (files and directories
// made by this run are removed, files it replaced are put back). A file is
// only replaced when its content or mode differs, so a second run reports
// every node unchanged.
func WriteAll(ctx context.Context, r *Renderer, inv *inventory.Inventory, dir string, workers int) (Summary, error) {
	return writer{rename: os.Rename}.writeAll(ctx, r, inv, dir, workers)
}

// writer holds the one file operation tests replace to make the last step
// fail.
type writer struct {
	rename func(oldpath, newpath string) error
}

// staged is one file written to tmp, waiting to be renamed to path; backup
// is a hard link to the file it replaces ("" when there is none).
type staged struct {
	node, name     string
	tmp, path, bak string
}

// transaction is what one WriteAll run has made so far, to undo it.
type transaction struct {
	mu    sync.Mutex
	dirs  []string // node directories created by this run
	files []staged
}

func (w writer) writeAll(parent context.Context, r *Renderer, inv *inventory.Inventory, dir string, workers int) (sum Summary, err error) {
	if workers < 1 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = max(1, min(workers, len(inv.Nodes)))
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)

	// 1. Render every node in memory.
	rendered := make([]Files, len(inv.Nodes))
	if err := forEachNode(ctx, cancel, workers, len(inv.Nodes), func(i int) error {
		n := &inv.Nodes[i]
		if !validDirName(n.Name) {
			return fmt.Errorf("render %s: not usable as a directory name", n.Name)
		}
		f, err := r.Node(inv, n)
		rendered[i] = f
		return err
	}); err != nil {
		return Summary{}, err
	}

	// 2. Write each changed file beside its place.
	createdDir := false
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		createdDir = true
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Summary{}, fmt.Errorf("create output directory: %w", err)
	}
	tx := &transaction{}
	defer func() {
		if err != nil {
			tx.abort()
			if createdDir {
				os.Remove(dir) // only if empty: nothing else is ours
			}
			sum = Summary{}
		}
	}()
	if err := forEachNode(ctx, cancel, workers, len(inv.Nodes), func(i int) error {
		return tx.stage(&inv.Nodes[i], rendered[i], dir)
	}); err != nil {
		return Summary{}, err
	}

	// 3. Rename them all into place; on a failure put back what was renamed.
	sort.Slice(tx.files, func(i, j int) bool { return tx.files[i].path < tx.files[j].path })
	for k, f := range tx.files {
		if err := w.rename(f.tmp, f.path); err != nil {
			tx.undoRenames(k, w.rename)
			return Summary{}, fmt.Errorf("write %s/%s: %w (nothing written)", f.node, f.name, err)
		}
	}
	written := map[string]bool{}
	for _, f := range tx.files {
		written[f.node] = true
		if f.bak != "" {
			os.Remove(f.bak)
		}
	}
	return Summary{Written: len(written), Unchanged: len(inv.Nodes) - len(written), Files: len(tx.files)}, nil
}

// forEachNode runs fn for 0..n-1 on workers goroutines. It returns the
// first error fn returns (and cancels ctx with it), or ctx's cause when ctx
// ends first.
func forEachNode(ctx context.Context, cancel context.CancelCauseFunc, workers, n int, fn func(i int) error) error {
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	jobs := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				if ctx.Err() != nil {
					continue // drain
				}
				if err := fn(i); err != nil {
					once.Do(func() { firstErr = err })
					cancel(err)
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if ctx.Err() != nil {
		return fmt.Errorf("render seeds: stopped, nothing written: %w", context.Cause(ctx))
	}
	return nil
}

// stage writes the files of node n that differ from what is in dir to
// temporary files beside them, and links the files they will replace to a
// backup name.
func (tx *transaction) stage(n *inventory.Node, files Files, dir string) error {
	nodeDir := filepath.Join(dir, n.Name)
	fresh := false
	switch fi, err := os.Stat(nodeDir); {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Mkdir(nodeDir, 0o755); err != nil {
			return fmt.Errorf("write %s: %w", n.Name, err)
		}
		fresh = true
		tx.mu.Lock()
		tx.dirs = append(tx.dirs, nodeDir)
		tx.mu.Unlock()
	case err != nil:
		return fmt.Errorf("write %s: %w", n.Name, err)
	case !fi.IsDir():
		return fmt.Errorf("write %s: %s is not a directory", n.Name, nodeDir)
	}
	for _, f := range [...]struct {
		name string
		data []byte
	}{{UserData, files.UserData}, {MetaData, files.MetaData}, {NetworkConfig, files.NetworkConfig}} {
		path := filepath.Join(nodeDir, f.name)
		st := staged{node: n.Name, name: f.name, path: path}
		if !fresh {
			fi, err := os.Lstat(path)
			switch {
			case errors.Is(err, fs.ErrNotExist):
			case err != nil:
				return fmt.Errorf("write %s/%s: %w", n.Name, f.name, err)
			case !fi.Mode().IsRegular():
				return fmt.Errorf("write %s/%s: %s is not a regular file; move it away", n.Name, f.name, path)
			default:
				same, err := sameFile(path, f.data, FileMode)
				if err != nil {
					return fmt.Errorf("write %s/%s: %w", n.Name, f.name, err)
				}
				if same {
					continue
				}
				if st.bak, err = linkTemp(path, ".bak"); err != nil {
					return fmt.Errorf("write %s/%s: keep the old file: %w", n.Name, f.name, err)
				}
			}
		}
		tmp, err := writeTemp(path, f.data, FileMode)
		st.tmp = tmp
		if st.tmp != "" || st.bak != "" {
			tx.mu.Lock()
			tx.files = append(tx.files, st)
			tx.mu.Unlock()
		}
		if err != nil {
			return fmt.Errorf("write %s/%s: %w", n.Name, f.name, err)
		}
	}
	return nil
}

// abort removes what stage made: temporary files, backup links and the
// directories created by this run (all renames undone or never done).
func (tx *transaction) abort() {
	for _, f := range tx.files {
		if f.tmp != "" {
			os.Remove(f.tmp)
		}
		if f.bak != "" {
			os.Remove(f.bak)
		}
	}
	for _, d := range tx.dirs {
		os.Remove(d)
	}
}

// undoRenames puts back the first k files renamed into place: the backup
// over a replaced file, or the new file removed. What cannot be undone
// stays as it is; abort then cleans up the rest.
func (tx *transaction) undoRenames(k int, rename func(string, string) error) {
	for i := k - 1; i >= 0; i-- {
		f := &tx.files[i]
		if f.bak != "" {
			if rename(f.bak, f.path) == nil {
				f.bak = ""
			}
		} else {
			os.Remove(f.path)
		}
		f.tmp = "" // renamed: no temporary file left
	}
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

// tempName is a hidden name beside path that does not exist yet, made by
// create (which must fail with fs.ErrExist when the name is taken).
func tempName(path, suffix string, create func(name string) error) (string, error) {
	dir, base := filepath.Split(path)
	var err error
	for range 100 {
		name := filepath.Join(dir, "."+base+"."+strconv.FormatUint(rand.Uint64(), 36)+suffix)
		if err = create(name); !errors.Is(err, fs.ErrExist) {
			if err != nil {
				return "", err
			}
			return name, nil
		}
	}
	return "", err
}

// linkTemp makes a hard link to path under a new hidden name beside it: the
// old file, kept to be put back if the run fails.
func linkTemp(path, suffix string) (string, error) {
	return tempName(path, suffix, func(name string) error { return os.Link(path, name) })
}

// writeTemp writes data with mode perm to a new temporary file beside path
// and returns its name; the caller renames it over path, so readers see the
// old or the new file, never a part. On failure the temporary file is
// removed. There is no fsync: seeds are rendered again from the inventory at
// will, and syncing thousands of files would cost far more than rendering
// them.
func writeTemp(path string, data []byte, perm fs.FileMode) (_ string, err error) {
	var tmp *os.File
	name, err := tempName(path, ".tmp", func(name string) (err error) {
		tmp, err = os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		return err
	})
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(name)
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return "", err
	}
	// The umask may have taken bits off perm; chmod only then (one system
	// call less per file, which shows at thousands of files).
	if m := umask(); m < 0 || fs.FileMode(m)&perm != 0 {
		if err = tmp.Chmod(perm); err != nil {
			return "", err
		}
	}
	if err = tmp.Close(); err != nil {
		return "", err
	}
	return name, nil
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
