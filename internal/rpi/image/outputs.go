package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
)

// writeBmap writes the block map of img for `bmaptool copy`: format 2.0,
// 4 KiB blocks, the ranges that hold data (SEEK_DATA/SEEK_HOLE) with the
// SHA-256 of each, and the file's own checksum (computed with that field
// all zeros, as bmaptool checks it).
func writeBmap(ctx context.Context, img, out string) (mapped int64, err error) {
	f, err := os.Open(img)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	blocks := (size + blockSize - 1) / blockSize
	ranges, err := dataRanges(f, size)
	if err != nil {
		return 0, err
	}
	// Whole blocks, merged when adjacent.
	var br [][2]int64
	for _, r := range ranges {
		first, last := r[0]/blockSize, (r[1]-1)/blockSize
		if n := len(br); n > 0 && br[n-1][1]+1 >= first {
			br[n-1][1] = max(br[n-1][1], last)
			continue
		}
		br = append(br, [2]int64{first, last})
	}
	var body strings.Builder
	buf := make([]byte, 1<<20)
	for _, r := range br {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		h := sha256.New()
		start, end := r[0]*blockSize, min((r[1]+1)*blockSize, size)
		if _, err := io.CopyBuffer(h, io.NewSectionReader(f, start, end-start), buf); err != nil {
			return 0, fmt.Errorf("bmap %s: %w", img, err)
		}
		mapped += r[1] - r[0] + 1
		if r[0] == r[1] {
			fmt.Fprintf(&body, "        <Range chksum=\"%x\"> %d </Range>\n", h.Sum(nil), r[0])
		} else {
			fmt.Fprintf(&body, "        <Range chksum=\"%x\"> %d-%d </Range>\n", h.Sum(nil), r[0], r[1])
		}
	}
	zero := strings.Repeat("0", 64)
	var b bytes.Buffer
	fmt.Fprintf(&b, `<?xml version="1.0" ?>
<!-- Block map of %s, written by provision: bmaptool copy %s.bmap ... writes only
     the mapped blocks and checks each range's SHA-256. -->
<bmap version="2.0">
    <!-- Image size in bytes: %s -->
    <ImageSize> %d </ImageSize>

    <!-- Size of a block in bytes -->
    <BlockSize> %d </BlockSize>

    <!-- Count of blocks in the image file -->
    <BlocksCount> %d </BlocksCount>

    <!-- Count of mapped blocks: %s or %.1f%% -->
    <MappedBlocksCount> %d </MappedBlocksCount>

    <!-- Type of checksum used in this file -->
    <ChecksumType> sha256 </ChecksumType>

    <!-- The checksum of this bmap file. When it is calculated, the value of
         the checksum has be zero (all ASCII "0" symbols).  -->
    <BmapFileChecksum> %s </BmapFileChecksum>

    <!-- The block map: ranges of blocks with data and their checksums -->
    <BlockMap>
%s    </BlockMap>
</bmap>
`, baseName(img), baseName(img), HumanBytes(size), size, blockSize, blocks, HumanBytes(mapped*blockSize), float64(mapped)*100/float64(max(blocks, 1)), mapped, zero, body.String())
	sum := sha256.Sum256(b.Bytes())
	data := bytes.Replace(b.Bytes(), []byte("<BmapFileChecksum> "+zero), []byte("<BmapFileChecksum> "+hex.EncodeToString(sum[:])), 1)
	return mapped, writeFileAtomic(out, data, 0o644)
}

// sha256File hashes a file, reading only its data ranges (holes are zeros).
func sha256File(ctx context.Context, p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	ranges, err := dataRanges(f, st.Size())
	if err != nil {
		return "", err
	}
	h := sha256.New()
	buf := make([]byte, 1<<20)
	zeros := make([]byte, 1<<20)
	var off int64
	writeZeros := func(n int64) {
		for n > 0 {
			k := min(n, int64(len(zeros)))
			h.Write(zeros[:k])
			n -= k
		}
	}
	for _, r := range ranges {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		writeZeros(r[0] - off)
		if _, err := io.CopyBuffer(h, io.NewSectionReader(f, r[0], r[1]-r[0]), buf); err != nil {
			return "", err
		}
		off = r[1]
	}
	writeZeros(st.Size() - off)
	return hex.EncodeToString(h.Sum(nil)), nil
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// writeFileAtomic writes data to a temporary file next to p and renames it.
func writeFileAtomic(p string, data []byte, mode os.FileMode) error {
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
