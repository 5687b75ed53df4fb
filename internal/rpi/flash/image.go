package flash

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Image is a raw image and the map of what to write from it.
type Image struct {
	Path string
	Size int64
	Map  *Bmap
	// FromBmap is false when the map was made here from the image's holes
	// (--no-bmap); its checksums were then computed from the image.
	FromBmap bool
	// CheckedAt is set when the image was not read against its map this
	// time: it is unchanged since that check (OpenOptions.Checked).
	CheckedAt time.Time
}

// ErrNoBmap is returned by OpenImage when an image has no block map.
var ErrNoBmap = errors.New("no block map")

// BmapPath is where an image's block map is looked for: IMG.bmap, then IMG
// with its extension replaced (disk.img -> disk.bmap).
func BmapPath(img string) (string, error) {
	cands := []string{img + ".bmap"}
	if i := strings.LastIndexByte(img, '.'); i > strings.LastIndexByte(img, '/') {
		cands = append(cands, img[:i]+".bmap")
	}
	for _, c := range cands {
		if _, err := os.Stat(c); err == nil {
			return c, nil
		}
	}
	return "", fmt.Errorf("image %s: %w (looked for %s); make one with `bmaptool create`, or pass --no-bmap to find the data by the image's holes", img, ErrNoBmap, strings.Join(cands, ", "))
}

// OpenImage reads img's block map (bmapPath, or found by BmapPath when
// empty) and checks it against the image: size, and the sha256 of every
// mapped range. Nothing is written anywhere. With noBmap the map is made
// from the image's holes (SEEK_DATA/SEEK_HOLE) and hashed here instead.
func OpenImage(ctx context.Context, img, bmapPath string, noBmap bool) (*Image, error) {
	return Open(ctx, img, OpenOptions{Bmap: bmapPath, NoBmap: noBmap})
}

// OpenOptions say how Open finds and checks an image's block map.
type OpenOptions struct {
	Bmap   string // the block map (default: found by BmapPath)
	NoBmap bool   // make the map from the image's holes instead
	// Checked is a directory of stamps of images already checked against
	// their block maps (CheckStamps); "" checks every time.
	Checked string
}

// Open is OpenImage with options: with o.Checked, an image that has not
// changed since it was last checked against the same block map (same
// device, inode, size, mtime and ctime; same map bytes) is not read again,
// and one that passes the check is stamped. The read-back from each card
// still compares every range with the map, so an image damaged without
// its ctime changing would fail there, leaving the card unusable.
func Open(ctx context.Context, img string, o OpenOptions) (*Image, error) {
	bmapPath, noBmap := o.Bmap, o.NoBmap
	f, err := os.Open(img)
	if err != nil {
		return nil, fmt.Errorf("open image: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", img, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("image %s: not a regular file", img)
	}
	im := &Image{Path: img, Size: st.Size()}
	if noBmap {
		m, err := MapHoles(ctx, f, 4096)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", img, err)
		}
		im.Map = m
		return im, nil
	}
	if bmapPath == "" {
		if bmapPath, err = BmapPath(img); err != nil {
			return nil, err
		}
	}
	bm, err := os.ReadFile(bmapPath)
	if err != nil {
		return nil, fmt.Errorf("read block map: %w", err)
	}
	m, err := ParseBmap(bmapPath, bm)
	if err != nil {
		return nil, err
	}
	if m.ImageSize != st.Size() {
		return nil, fmt.Errorf("%s: ImageSize is %d bytes but image %s has %d: the block map is for another image", bmapPath, m.ImageSize, img, st.Size())
	}
	im.Map, im.FromBmap = m, true
	stamps := CheckStamps{Dir: o.Checked}
	key, err := stamps.key(f, bm)
	if err != nil {
		return nil, err
	}
	if at, ok := stamps.checked(key); ok {
		im.CheckedAt = at
		return im, nil
	}
	if err := im.check(ctx, f); err != nil {
		return nil, err
	}
	if err := stamps.record(key); err != nil {
		return nil, fmt.Errorf("image %s: %w", img, err)
	}
	return im, nil
}

// check hashes every mapped range of the image and compares it with the
// map, so an image that does not match its map is refused before any card
// is touched.
func (im *Image) check(ctx context.Context, f *os.File) error {
	m := im.Map
	_, err := hashRanges(ctx, m, im.Path, func(ch chunk, b []byte) error {
		if _, err := f.ReadAt(b, ch.off); err != nil {
			return fmt.Errorf("image %s: read at byte %d: %w", im.Path, ch.off, err)
		}
		return nil
	}, nil)
	var ve *VerifyError
	if errors.As(err, &ve) {
		r := ve.Range
		return fmt.Errorf("image %s does not match its block map %s:%d: %s (bytes %d-%d) sha256 is %s, the map says %s; nothing was written",
			im.Path, m.Path, r.Line, r, ve.Offset, ve.Offset+ve.Length-1, ve.Got, r.SHA256)
	}
	return err
}

func hashRange(r io.ReaderAt, off, n int64, buf []byte) (string, error) {
	h := sha256.New()
	for n > 0 {
		c := min(int64(len(buf)), n)
		if _, err := r.ReadAt(buf[:c], off); err != nil {
			return "", err
		}
		h.Write(buf[:c])
		off += c
		n -= c
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// MapHoles builds a block map of f from its data and holes (SEEK_DATA,
// SEEK_HOLE), blocks of blockSize, hashing each range.
func MapHoles(ctx context.Context, f *os.File, blockSize int64) (*Bmap, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	m := &Bmap{Path: f.Name() + " (holes)", ImageSize: size, BlockSize: blockSize, BlocksCount: (size + blockSize - 1) / blockSize}
	fd := int(f.Fd())
	buf := make([]byte, chunkSize)
	var off int64
	for off < size {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("SEEK_DATA at %d: %w", off, err)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("SEEK_HOLE at %d: %w", data, err)
		}
		first := data / blockSize
		last := (hole+blockSize-1)/blockSize - 1
		if n := len(m.Ranges); n > 0 && m.Ranges[n-1].Last >= first {
			m.Ranges[n-1].Last = last // a block shared by two extents
		} else {
			m.Ranges = append(m.Ranges, Range{First: first, Last: last})
		}
		off = hole
	}
	for i := range m.Ranges {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r := &m.Ranges[i]
		if r.Last >= m.BlocksCount {
			r.Last = m.BlocksCount - 1
		}
		sum, err := hashRange(f, r.Offset(blockSize), r.Length(blockSize, size), buf)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", r, err)
		}
		r.SHA256 = sum
		m.MappedBlocksCount += r.Last - r.First + 1
	}
	return m, nil
}
