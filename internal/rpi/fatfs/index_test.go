package fatfs

import (
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
)

// TestIndex locates every file of a go-diskfs-written FAT32 file system and
// reads each back byte-identical to what go-diskfs reads.
func TestIndex(t *testing.T) {
	f, _ := newFAT32(t)
	ix, err := Index(f, 0)
	if err != nil {
		t.Fatalf("Index: %v", err)
	}
	fsys, err := fat32.Read(file.New(f, true), testSize, 0, 512)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"config.txt", "overlays/a.dtbo", "seed/extra/notes.txt"}
	if len(ix) != len(want) {
		t.Errorf("Index found %d files, want %d: %v", len(ix), len(want), keys(ix))
	}
	for _, p := range want {
		got, ok := ix[p]
		if !ok {
			t.Fatalf("Index: no %s among %v", p, keys(ix))
		}
		data, err := ReadFile(fsys, p)
		if err != nil {
			t.Fatal(err)
		}
		buf, err := io.ReadAll(io.NewSectionReader(got, 0, got.Size))
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		if !bytes.Equal(buf, data) {
			t.Errorf("%s: %d bytes read through the index differ from go-diskfs's %d", p, len(buf), len(data))
		}
		// A read across the end returns what is there and io.EOF.
		b := make([]byte, 10)
		n, err := got.ReadAt(b, got.Size-4)
		if n != 4 || err != io.EOF {
			t.Errorf("%s: ReadAt across the end: %d, %v; want 4, EOF", p, n, err)
		}
	}
}

// TestIndexCorrupt: a cluster chain that loops is an error naming the file.
func TestIndexCorrupt(t *testing.T) {
	f, _ := newFAT32(t)
	ix, err := Index(f, 0)
	if err != nil {
		t.Fatal(err)
	}
	g, err := readGeometry(f, 0)
	if err != nil {
		t.Fatal(err)
	}
	notes := ix["seed/extra/notes.txt"]
	c := uint32((notes.Extents[0].Off-g.clusterOffset(2))/g.clusterBytes()) + 2
	var self [4]byte
	binary.LittleEndian.PutUint32(self[:], c) // the cluster points at itself
	if _, err := f.WriteAt(self[:], g.fatOffset()+int64(c)*4); err != nil {
		t.Fatal(err)
	}
	_, err = Index(f, 0)
	if err == nil || !strings.Contains(err.Error(), "notes.txt") || !strings.Contains(err.Error(), "loops") {
		t.Fatalf("Index of a looping chain: %v; want an error naming notes.txt", err)
	}
}

func keys(m map[string]*IndexedFile) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
