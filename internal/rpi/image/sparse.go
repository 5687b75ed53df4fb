package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

const blockSize = 4096

var zeroBlock = make([]byte, blockSize)

// dataRanges are the [start, end) byte ranges of f that hold data, from
// SEEK_DATA/SEEK_HOLE (a file system without them reports one range).
func dataRanges(f *os.File, size int64) ([][2]int64, error) {
	var out [][2]int64
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole until the end
		}
		if err != nil {
			return [][2]int64{{0, size}}, nil
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("seek hole in %s: %w", f.Name(), err)
		}
		end = min(end, size)
		out = append(out, [2]int64{start, end})
		off = end
	}
	return out, nil
}

// sparseWriter writes at increasing offsets of a new (all-hole) file,
// skipping blocks of zeros, so that the result stays sparse.
type sparseWriter struct {
	f   *os.File
	off int64
}

func (w *sparseWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		// Up to the next block boundary.
		k := min(len(p), blockSize-int(w.off%blockSize))
		chunk := p[:k]
		if !bytes.Equal(chunk, zeroBlock[:k]) {
			if _, err := w.f.WriteAt(chunk, w.off); err != nil {
				return n, err
			}
		}
		w.off += int64(k)
		n += k
		p = p[k:]
	}
	return n, nil
}

// copySparse copies size bytes of src into dst at dstOff, reading only
// src's data ranges and writing only non-zero blocks. dst must be zero
// (holes) in that range.
func copySparse(ctx context.Context, dst *os.File, dstOff int64, src *os.File, size int64) error {
	ranges, err := dataRanges(src, size)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for _, r := range ranges {
		w := &sparseWriter{f: dst, off: dstOff + r[0]}
		sr := io.NewSectionReader(src, r[0], r[1]-r[0])
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			n, err := sr.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return fmt.Errorf("copy %s: %w", src.Name(), werr)
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("copy %s: %w", src.Name(), err)
			}
		}
	}
	return nil
}
