package nbdroot

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fhlab/provision/internal/rpi/smoke"
)

// Golden is the golden image every Pi's overlay is backed by.
type Golden struct {
	Path    string // absolute
	Size    int64
	ModTime time.Time
	// Root is where the ext4 root file system lies in the image: a bare
	// file system (Partition 0) or an MBR partition.
	Root smoke.RootFS
	// SHA256 is the image's checksum when a <Path>.sha256 file was checked.
	SHA256 string
}

// CheckGolden checks that path is a golden image a Pi can boot its root
// from: a regular file holding a whole ext4 file system, bare or in an MBR
// partition. When verify is set and <path>.sha256 exists (provision image
// build writes it), the image's checksum must match it.
func CheckGolden(ctx context.Context, path string, verify bool) (Golden, error) {
	if path == "" {
		return Golden{}, errors.New("golden image: no path given")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return Golden{}, fmt.Errorf("golden image %s: %w", path, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Golden{}, fmt.Errorf("golden image %s does not exist (build it with provision image build, or pass --image)", abs)
	case err != nil:
		return Golden{}, fmt.Errorf("golden image: %w", err)
	case !fi.Mode().IsRegular():
		return Golden{}, fmt.Errorf("golden image %s is not a regular file (%s)", abs, fi.Mode().Type())
	case fi.Size() == 0 || fi.Size()%512 != 0:
		return Golden{}, fmt.Errorf("golden image %s is %d bytes, not a whole number of 512-byte sectors: truncated or not a disk image", abs, fi.Size())
	}
	g := Golden{Path: abs, Size: fi.Size(), ModTime: fi.ModTime()}
	if g.Root, err = smoke.FindRootFS(abs); err != nil {
		return Golden{}, fmt.Errorf("golden image: %w", err)
	}
	if err := checkExt4Size(abs, g); err != nil {
		return Golden{}, err
	}
	if verify {
		if g.SHA256, err = verifySum(ctx, abs); err != nil {
			return Golden{}, err
		}
	}
	return g, nil
}

// checkExt4Size compares the size the ext4 superblock claims with the
// bytes the image holds: a copy cut short is found here, before a Pi
// reads past its end.
func checkExt4Size(path string, g Golden) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("golden image: %w", err)
	}
	defer f.Close()
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, g.Root.Offset+1024); err != nil {
		return fmt.Errorf("golden image %s: read the ext4 superblock: %w", path, err)
	}
	blocks := uint64(binary.LittleEndian.Uint32(sb[4:8]))
	if binary.LittleEndian.Uint32(sb[0x60:0x64])&0x80 != 0 { // INCOMPAT_64BIT
		blocks |= uint64(binary.LittleEndian.Uint32(sb[0x150:0x154])) << 32
	}
	logBlock := binary.LittleEndian.Uint32(sb[24:28])
	if logBlock > 6 {
		return fmt.Errorf("golden image %s: the ext4 superblock at byte %d is corrupt (block size 2^%d KiB)", path, g.Root.Offset+1024, logBlock)
	}
	need := int64(blocks) * (1024 << logBlock)
	if have := g.Size - g.Root.Offset; need > have || need == 0 {
		return fmt.Errorf("golden image %s: its ext4 file system needs %d bytes but the image holds %d after byte %d: truncated or corrupt", path, need, have, g.Root.Offset)
	}
	return nil
}

// verifySum checks path against path.sha256 when that file exists.
func verifySum(ctx context.Context, path string) (string, error) {
	want, err := os.ReadFile(path + ".sha256")
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	} else if err != nil {
		return "", fmt.Errorf("golden image: %w", err)
	}
	fields := strings.Fields(string(want))
	if len(fields) == 0 || len(fields[0]) != 64 {
		return "", fmt.Errorf("golden image: %s.sha256 does not start with a sha256 checksum", path)
	}
	got, err := SHA256(ctx, path)
	if err != nil {
		return "", err
	}
	if got != strings.ToLower(fields[0]) {
		return "", fmt.Errorf("golden image %s has sha256 %s, but %s.sha256 says %s: the image is corrupt or was changed after it was built", path, got, path, fields[0])
	}
	return got, nil
}

// SHA256 is the hex sha256 of the file at path.
func SHA256(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("sha256: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, ctxReader{ctx, f}); err != nil {
		return "", fmt.Errorf("sha256 %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
