package flash

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// CheckStamps is a directory of small files, one per image, each saying
// that the image, as it was (device, inode, size, mtime, ctime), matched
// its block map (the map's sha256). Flashing 36 cards in batches of four
// reads the image against its map once instead of nine times.
type CheckStamps struct{ Dir string }

type stampKey struct {
	Image   string `json:"image"`
	Dev     uint64 `json:"dev"`
	Ino     uint64 `json:"ino"`
	Size    int64  `json:"size"`
	Mtime   int64  `json:"mtimeNs"`
	Ctime   int64  `json:"ctimeNs"`
	BmapSHA string `json:"bmapSha256"`
}

type stamp struct {
	stampKey
	Checked time.Time `json:"checked"`
}

// key is what identifies the image and its map (the map file's bytes) now.
func (s CheckStamps) key(f *os.File, bmap []byte) (stampKey, error) {
	if s.Dir == "" {
		return stampKey{}, nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return stampKey{}, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	abs, err := filepath.Abs(f.Name())
	if err != nil {
		return stampKey{}, err
	}
	sum := sha256.Sum256(bmap)
	return stampKey{Image: abs, Dev: st.Dev, Ino: st.Ino, Size: st.Size, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(), BmapSHA: hex.EncodeToString(sum[:])}, nil
}

func (s CheckStamps) path(k stampKey) string {
	h := sha256.Sum256([]byte(k.Image))
	return filepath.Join(s.Dir, hex.EncodeToString(h[:8])+".json")
}

// checked says whether the image and map of k were checked, and when. A
// stamp that is missing, unreadable or for another state of the image is
// no stamp.
func (s CheckStamps) checked(k stampKey) (time.Time, bool) {
	if s.Dir == "" {
		return time.Time{}, false
	}
	data, err := os.ReadFile(s.path(k))
	if err != nil {
		return time.Time{}, false
	}
	var st stamp
	if json.Unmarshal(data, &st) != nil || st.stampKey != k {
		return time.Time{}, false
	}
	return st.Checked, true
}

// record stamps k as checked now (written to a temporary file and renamed,
// so a stamp is whole or absent).
func (s CheckStamps) record(k stampKey) error {
	if s.Dir == "" {
		return nil
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return fmt.Errorf("stamp the check: %w", err)
	}
	data, err := json.MarshalIndent(stamp{k, time.Now().UTC().Truncate(time.Second)}, "", "  ")
	if err != nil {
		return err
	}
	p := s.path(k)
	tmp, err := os.CreateTemp(s.Dir, ".stamp-")
	if err != nil {
		return fmt.Errorf("stamp the check: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("stamp the check: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("stamp the check: %w", err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("stamp the check: %w", err)
	}
	return nil
}
