package flash

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/rpi/flash/flashtest"
)

// testdata/small.bmap was written by `bmaptool create` (bmap-tools 3.6) for
// a 20 MiB file with data in blocks 10-12 and 1000.
func TestParseBmapFromBmaptool(t *testing.T) {
	m, err := ReadBmap("testdata/small.bmap")
	if err != nil {
		t.Fatal(err)
	}
	if m.ImageSize != 20<<20 || m.BlockSize != 4096 || m.BlocksCount != 5120 || m.MappedBlocksCount != 4 || len(m.Ranges) != 2 {
		t.Fatalf("parsed %+v", m)
	}
	if r := m.Ranges[0]; r.First != 10 || r.Last != 12 || r.SHA256 != "dda7beb7f048d3c95a084b6dc89bffeaf5271906f835e335e7687ba1995a3558" || r.Line != 48 {
		t.Fatalf("range 0: %d-%d %s line %d", r.First, r.Last, r.SHA256, r.Line)
	}
	if r := m.Ranges[1]; r.First != 1000 || r.Last != 1000 {
		t.Fatalf("range 1: %+v", r)
	}
	if m.MappedBytes() != 4*4096 {
		t.Fatalf("mapped bytes %d", m.MappedBytes())
	}
}

// reseal recomputes the file checksum after an edit, so the edit itself is
// what the parser sees.
func reseal(data string) string {
	const sumTag = "<BmapFileChecksum> "
	i := strings.Index(data, sumTag) + len(sumTag)
	zeroed := data[:i] + strings.Repeat("0", 64) + data[i+64:]
	sum := sha256.Sum256([]byte(zeroed))
	return data[:i] + hex.EncodeToString(sum[:]) + data[i+64:]
}

func TestParseBmapRejects(t *testing.T) {
	orig, err := os.ReadFile("testdata/small.bmap")
	if err != nil {
		t.Fatal(err)
	}
	s := string(orig)
	for _, tc := range []struct {
		name, data, want string
	}{
		{"file checksum mismatch", strings.Replace(s, "10-12", "10-13", 1), "small.bmap:42: BmapFileChecksum: the file's sha256 is"},
		{"not xml", "hello", "not a block map"},
		{"other root", "<?xml version=\"1.0\"?><map/>", "want <bmap>"},
		{"version 1", reseal(strings.Replace(s, `version="2.0"`, `version="1.4"`, 1)), `block map version "1.4"`},
		{"sha1", reseal(strings.Replace(s, "<ChecksumType> sha256", "<ChecksumType> sha1  ", 1)), `ChecksumType: "sha1"`},
		{"bad range", reseal(strings.Replace(s, "> 1000 <", "> 10x0 <", 1)), `small.bmap:49: Range: "10x0"`},
		{"range past the end", reseal(strings.Replace(s, "> 1000 <", "> 9000 <", 1)), "past the image's last block 5119"},
		{"overlap", reseal(strings.Replace(s, "> 1000 <", "> 11 <", 1)), "block 11 overlaps"},
		{"mapped count", reseal(strings.Replace(s, "<MappedBlocksCount> 4 ", "<MappedBlocksCount> 5 ", 1)), "MappedBlocksCount: 5, but the ranges hold 4"},
		{"blocks count", reseal(strings.Replace(s, "<BlocksCount> 5120", "<BlocksCount> 5121", 1)), "BlocksCount: 5121, but an image of 20971520 bytes has 5120"},
		{"no image size", reseal(strings.Replace(s, "ImageSize", "ImageSiz", 2)), "no <ImageSize>"},
		{"bad range checksum", reseal(strings.Replace(s, `chksum="dda7`, `chksum="zzz7`, 1)), "is not a sha256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseBmap("small.bmap", []byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestMapHolesAgreesWithBmaptool(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, dir)
	want, err := ReadBmap(img + ".bmap")
	if err != nil {
		t.Fatal(err)
	}
	im, err := OpenImage(context.Background(), img, "", true)
	if err != nil {
		t.Fatal(err)
	}
	got := im.Map
	if len(got.Ranges) != len(want.Ranges) || got.MappedBlocksCount != want.MappedBlocksCount {
		t.Fatalf("holes give %d ranges / %d blocks, bmaptool %d / %d", len(got.Ranges), got.MappedBlocksCount, len(want.Ranges), want.MappedBlocksCount)
	}
	for i := range got.Ranges {
		g, w := got.Ranges[i], want.Ranges[i]
		if g.First != w.First || g.Last != w.Last || g.SHA256 != w.SHA256 {
			t.Fatalf("range %d: holes %s %s, bmaptool %s %s", i, g, g.SHA256, w, w.SHA256)
		}
	}
}

func TestOpenImageBadInput(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, dir)

	t.Run("no bmap", func(t *testing.T) {
		bare := filepath.Join(t.TempDir(), "bare.img")
		os.WriteFile(bare, []byte("x"), 0o644)
		_, err := OpenImage(context.Background(), bare, "", false)
		if !errors.Is(err, ErrNoBmap) || !strings.Contains(err.Error(), "--no-bmap") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("image changed after its bmap", func(t *testing.T) {
		m, _ := ReadBmap(img + ".bmap")
		r := m.Ranges[len(m.Ranges)-1]
		f, _ := os.OpenFile(img, os.O_WRONLY, 0)
		f.WriteAt([]byte("changed"), r.Offset(m.BlockSize)+1)
		f.Close()
		_, err := OpenImage(context.Background(), img, "", false)
		if err == nil || !strings.Contains(err.Error(), "does not match its block map") || !strings.Contains(err.Error(), r.String()) || !strings.Contains(err.Error(), "nothing was written") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("bmap of another size", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "other.img")
		os.WriteFile(other, make([]byte, 8192), 0o644)
		_, err := OpenImage(context.Background(), other, img+".bmap", false)
		if err == nil || !strings.Contains(err.Error(), "is for another image") {
			t.Fatalf("got %v", err)
		}
	})
}

// TestCheckStamps: with a stamp directory, an image checked once is not
// read against its map again while it is unchanged; a change to the image
// (even one that keeps its size and mtime) or to its map is checked again.
func TestCheckStamps(t *testing.T) {
	ctx := context.Background()
	img := makeImage(t, t.TempDir())
	o := OpenOptions{Checked: t.TempDir()}
	im, err := Open(ctx, img, o)
	if err != nil || !im.CheckedAt.IsZero() {
		t.Fatalf("first open: checked at %v, %v", im, err)
	}
	im, err = Open(ctx, img, o)
	if err != nil || im.CheckedAt.IsZero() {
		t.Fatalf("second open was checked again: %v", err)
	}
	if im, err := Open(ctx, img, OpenOptions{}); err != nil || !im.CheckedAt.IsZero() {
		t.Fatalf("without stamps: checked at %v, %v", im.CheckedAt, err)
	}

	// A change with the size and mtime put back: the ctime still differs.
	st, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ReadBmap(img + ".bmap")
	if err != nil {
		t.Fatal(err)
	}
	r := m.Ranges[len(m.Ranges)-1]
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("changed"), r.Offset(m.BlockSize)+1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(img, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, img, o); err == nil || !strings.Contains(err.Error(), "does not match its block map") {
		t.Fatalf("a changed image passed on its stamp: %v", err)
	}

	// A new map for the changed image: checked, then stamped again.
	flashtest.Run(t, "bmaptool", "create", "-o", img+".bmap", img) // MakeImage required bmaptool
	if im, err := Open(ctx, img, o); err != nil || !im.CheckedAt.IsZero() {
		t.Fatalf("new map: checked at %v, %v", im, err)
	}
	if im, err := Open(ctx, img, o); err != nil || im.CheckedAt.IsZero() {
		t.Fatalf("new map, second open: %v", err)
	}
}
