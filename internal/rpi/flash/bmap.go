package flash

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Bmap is a bmaptool block map (format 2.x): which blocks of an image hold
// data, with a sha256 per range.
type Bmap struct {
	Path              string // where it was read from, for messages
	ImageSize         int64
	BlockSize         int64
	BlocksCount       int64
	MappedBlocksCount int64
	Ranges            []Range
}

// Range is blocks First..Last (inclusive) of the image with the sha256 of
// their bytes (the last block cut at the image size).
type Range struct {
	First, Last int64
	SHA256      string // lower-case hex
	Line        int    // line in the bmap file, 0 when not read from one
}

// Offset and Length are the range's bytes in an image of size imageSize.
func (r Range) Offset(blockSize int64) int64 { return r.First * blockSize }

// Length is the range's byte count, the last block cut at imageSize.
func (r Range) Length(blockSize, imageSize int64) int64 {
	end := min((r.Last+1)*blockSize, imageSize)
	return end - r.First*blockSize
}

func (r Range) String() string {
	if r.First == r.Last {
		return fmt.Sprintf("block %d", r.First)
	}
	return fmt.Sprintf("blocks %d-%d", r.First, r.Last)
}

// MappedBytes is the number of image bytes the map lists.
func (b *Bmap) MappedBytes() int64 {
	var n int64
	for _, r := range b.Ranges {
		n += r.Length(b.BlockSize, b.ImageSize)
	}
	return n
}

// ReadBmap reads and checks a block map file.
func ReadBmap(path string) (*Bmap, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read block map: %w", err)
	}
	return ParseBmap(path, data)
}

// ParseBmap parses a bmap file's contents. Every error names the file and,
// where there is one, the line.
func ParseBmap(path string, data []byte) (*Bmap, error) {
	b := &Bmap{Path: path}
	fail := func(line int, format string, args ...any) error {
		if line > 0 {
			return fmt.Errorf("%s:%d: %s", path, line, fmt.Sprintf(format, args...))
		}
		return fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...))
	}
	dec := xml.NewDecoder(bytes.NewReader(data))
	var (
		stack        []string
		text         strings.Builder
		chksum       string
		fileChecksum string
		fileSumLine  int
		checksumType string
		version      string
		seen         = map[string]int{}
	)
	for {
		line, _ := dec.InputPos()
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fail(0, "not a block map: %v", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			stack = append(stack, t.Name.Local)
			text.Reset()
			chksum = ""
			if len(stack) == 1 {
				if t.Name.Local != "bmap" {
					return nil, fail(line, "not a block map: root element <%s>, want <bmap>", t.Name.Local)
				}
				for _, a := range t.Attr {
					if a.Name.Local == "version" {
						version = a.Value
					}
				}
			}
			if t.Name.Local == "Range" {
				for _, a := range t.Attr {
					if a.Name.Local == "chksum" {
						chksum = a.Value
					}
				}
			}
		case xml.CharData:
			text.Write(t)
		case xml.EndElement:
			endLine, _ := dec.InputPos()
			name := t.Name.Local
			path := strings.Join(stack, "/")
			stack = stack[:len(stack)-1]
			v := strings.TrimSpace(text.String())
			text.Reset()
			if path != "bmap/BlockMap/Range" && len(stack) == 1 {
				seen[name] = endLine
			}
			num := func(dst *int64) error {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n < 0 {
					return fail(endLine, "%s: %q is not a non-negative number", name, v)
				}
				*dst = n
				return nil
			}
			switch path {
			case "bmap/ImageSize":
				if err := num(&b.ImageSize); err != nil {
					return nil, err
				}
			case "bmap/BlockSize":
				if err := num(&b.BlockSize); err != nil {
					return nil, err
				}
			case "bmap/BlocksCount":
				if err := num(&b.BlocksCount); err != nil {
					return nil, err
				}
			case "bmap/MappedBlocksCount":
				if err := num(&b.MappedBlocksCount); err != nil {
					return nil, err
				}
			case "bmap/ChecksumType":
				checksumType = v
			case "bmap/BmapFileChecksum":
				fileChecksum, fileSumLine = strings.ToLower(v), endLine
			case "bmap/BlockMap/Range":
				r, err := parseRange(v, chksum)
				if err != nil {
					return nil, fail(endLine, "Range: %v", err)
				}
				r.Line = endLine
				b.Ranges = append(b.Ranges, r)
			}
		}
	}
	if _, ok := seen["ImageSize"]; !ok && version == "" {
		return nil, fail(0, "not a block map: no <bmap> element with a version")
	}
	major, _, _ := strings.Cut(version, ".")
	if major != "2" {
		return nil, fail(0, "block map version %q: only format 2.x (bmaptool 3.x and later) is supported", version)
	}
	for _, field := range []string{"ImageSize", "BlockSize", "BlocksCount", "MappedBlocksCount", "ChecksumType", "BmapFileChecksum", "BlockMap"} {
		if _, ok := seen[field]; !ok {
			return nil, fail(0, "no <%s>", field)
		}
	}
	if checksumType != "sha256" {
		return nil, fail(seen["ChecksumType"], "ChecksumType: %q, only sha256 is supported", checksumType)
	}
	// The file checksum is the sha256 of the file with its own value
	// replaced by zeros.
	if len(fileChecksum) != sha256.Size*2 {
		return nil, fail(fileSumLine, "BmapFileChecksum: %q is not a sha256", fileChecksum)
	}
	idx := bytes.Index(bytes.ToLower(data), []byte(fileChecksum))
	zeroed := bytes.Clone(data)
	copy(zeroed[idx:], strings.Repeat("0", len(fileChecksum)))
	if got := sha256.Sum256(zeroed); hex.EncodeToString(got[:]) != fileChecksum {
		return nil, fail(fileSumLine, "BmapFileChecksum: the file's sha256 is %x, the file says %s: the block map was changed or damaged", got, fileChecksum)
	}
	if b.BlockSize == 0 || b.BlockSize%512 != 0 {
		return nil, fail(seen["BlockSize"], "BlockSize: %d is not a multiple of 512", b.BlockSize)
	}
	if want := (b.ImageSize + b.BlockSize - 1) / b.BlockSize; b.BlocksCount != want {
		return nil, fail(seen["BlocksCount"], "BlocksCount: %d, but an image of %d bytes has %d blocks of %d", b.BlocksCount, b.ImageSize, want, b.BlockSize)
	}
	var mapped, next int64
	for _, r := range b.Ranges {
		if r.First < next {
			return nil, fail(r.Line, "Range: %s overlaps or precedes the range before it", r)
		}
		if r.Last >= b.BlocksCount {
			return nil, fail(r.Line, "Range: %s is past the image's last block %d", r, b.BlocksCount-1)
		}
		mapped += r.Last - r.First + 1
		next = r.Last + 1
	}
	if mapped != b.MappedBlocksCount {
		return nil, fail(seen["MappedBlocksCount"], "MappedBlocksCount: %d, but the ranges hold %d blocks", b.MappedBlocksCount, mapped)
	}
	return b, nil
}

func parseRange(v, chksum string) (Range, error) {
	var r Range
	a, z, isRange := strings.Cut(v, "-")
	var err error
	if r.First, err = strconv.ParseInt(strings.TrimSpace(a), 10, 64); err != nil || r.First < 0 {
		return r, fmt.Errorf("%q is not a block number or first-last", v)
	}
	r.Last = r.First
	if isRange {
		if r.Last, err = strconv.ParseInt(strings.TrimSpace(z), 10, 64); err != nil || r.Last < r.First {
			return r, fmt.Errorf("%q is not a block number or first-last", v)
		}
	}
	chksum = strings.ToLower(strings.TrimSpace(chksum))
	if _, err := hex.DecodeString(chksum); err != nil || len(chksum) != sha256.Size*2 {
		return r, fmt.Errorf("%s: chksum %q is not a sha256", r, chksum)
	}
	r.SHA256 = chksum
	return r, nil
}
