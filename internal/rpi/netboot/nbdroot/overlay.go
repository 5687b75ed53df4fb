package nbdroot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/fhlab/provision/internal/state"
)

// meta is <Dir>/<node>.json: what an overlay was made from, and its port.
type meta struct {
	Node    string    `json:"node"`
	Serial  string    `json:"serial,omitempty"`
	Port    int       `json:"port"`
	Size    int64     `json:"size"` // the overlay's virtual size
	Created time.Time `json:"created"`
	// The golden image the overlay is backed by, as it was then.
	Golden        string `json:"golden"`
	GoldenSize    int64  `json:"goldenSize"`
	GoldenModTime int64  `json:"goldenModTimeNs"`
}

var nodeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

func checkName(node string) error {
	if !nodeName.MatchString(node) || strings.Contains(node, "..") {
		return fmt.Errorf("%q is not a node name an overlay can be named after", node)
	}
	return nil
}

func (x *Exports) overlayPath(node string) string { return filepath.Join(x.dir, node+".qcow2") }
func (x *Exports) metaPath(node string) string    { return filepath.Join(x.dir, node+".json") }
func (x *Exports) pidPath(node string) string     { return filepath.Join(x.dir, node+".pid") }

// readMetas reads every <node>.json in the directory.
func readMetas(dir string) (map[string]meta, error) {
	ms := map[string]meta{}
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("netboot roots: %w", err)
		}
		var m meta
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("netboot roots: %s: %w", p, err)
		}
		if want := strings.TrimSuffix(filepath.Base(p), ".json"); m.Node != want {
			return nil, fmt.Errorf("netboot roots: %s: names node %q, not %q", p, m.Node, want)
		}
		ms[m.Node] = m
	}
	return ms, nil
}

func writeMeta(path string, m meta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return state.WriteFileAtomic(path, append(b, '\n'), 0o644)
}

// goldenChanged says why m's overlay no longer fits the golden image g,
// or "" when it does.
func goldenChanged(m meta, g Golden) string {
	switch {
	case m.Golden != g.Path:
		return fmt.Sprintf("its overlay is backed by %s, not %s", m.Golden, g.Path)
	case m.GoldenSize != g.Size || m.GoldenModTime != g.ModTime.UnixNano():
		return fmt.Sprintf("the golden image %s changed after its overlay was made (%s)", g.Path, time.Unix(0, m.GoldenModTime).UTC().Format(time.RFC3339))
	}
	return ""
}

// createOverlay makes a fresh overlay at path backed by g, replacing any
// file there.
func createOverlay(ctx context.Context, qemuImg, path string, g Golden, size int64) error {
	tmp := path + ".new"
	os.Remove(tmp)
	args := []string{"create", "-q", "-f", "qcow2", "-F", "raw", "-b", g.Path, tmp}
	if size > 0 {
		args = append(args, strconv.FormatInt(size, 10))
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, qemuImg, args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("qemu-img create %s: %w: %s", path, err, strings.TrimSpace(stderr.String()))
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// ErrInUse is returned for an overlay a running export holds.
var ErrInUse = errors.New("its root is being served")

// inUse asks qemu whether another process holds the overlay's write lock
// (a running qemu-nbd, in this process or another: a systemd unit, a
// second provision).
func inUse(ctx context.Context, qemuImg, path string) (bool, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, qemuImg, "info", "--output=json", path)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if strings.Contains(stderr.String(), "lock") {
			return true, nil
		}
		return false, fmt.Errorf("qemu-img info %s: %w: %s", path, err, strings.TrimSpace(stderr.String()))
	}
	return false, nil
}

// readPID reads a qemu-nbd pid file; 0 when there is none.
func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return pid
}

// Backing is the golden image node's overlay in dir was made from, as
// recorded when it was made; "" when there is no record.
func Backing(dir, node string) (string, error) {
	if err := checkName(node); err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(dir, node+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	} else if err != nil {
		return "", err
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return "", fmt.Errorf("%s: %w", filepath.Join(dir, node+".json"), err)
	}
	return m.Golden, nil
}

// Remove deletes node's root in dir (its overlay, port record and pid
// file), for a Pi that leaves the lab; removed says whether there was one.
// It refuses while the root is being served (qemu's lock on the overlay).
// qemuImg is the qemu-img binary ("" : from PATH).
func Remove(ctx context.Context, dir, node, qemuImg string) (removed bool, err error) {
	if qemuImg == "" {
		qemuImg = "qemu-img"
	}
	overlay := filepath.Join(dir, node+".qcow2")
	busy, err := inUse(ctx, qemuImg, overlay)
	if err != nil {
		return false, fmt.Errorf("remove the root of %s: %w", node, err)
	}
	if busy {
		return false, fmt.Errorf("remove the root of %s: %w (%s is locked): stop it first (systemctl stop %s, or the netboot serve or roots that runs it)", node, ErrInUse, overlay, UnitName(node))
	}
	for _, p := range []string{overlay, filepath.Join(dir, node+".json"), filepath.Join(dir, node+".pid")} {
		switch err := os.Remove(p); {
		case err == nil:
			removed = true
		case !errors.Is(err, fs.ErrNotExist):
			return removed, fmt.Errorf("remove the root of %s: %w", node, err)
		}
	}
	return removed, nil
}
