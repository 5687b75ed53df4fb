package fatfs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"

	"github.com/fhlab/provision/internal/testtool"
)

const testSize = 256 << 20

// newFAT32 writes a FAT32 file system filling a temp file with go-diskfs,
// with files in the root and in new top-level and nested directories.
func newFAT32(t *testing.T) (*os.File, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "boot.fat")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(testSize); err != nil {
		t.Fatal(err)
	}
	fsys, err := fat32.Create(file.New(f, false), testSize, 0, 512, "BOOT", true)
	if err != nil {
		t.Fatalf("create FAT32: %v", err)
	}
	// In a fixed order: the order decides where each file's clusters go,
	// and TestSetTimes compares two file systems byte for byte.
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"/config.txt", []byte("arm_64bit=1\n")},
		{"/overlays/a.dtbo", bytes.Repeat([]byte{1}, 5000)},
		{"/seed/extra/notes.txt", bytes.Repeat([]byte("x"), 9000)},
	} {
		name, data := f.name, f.data
		if err := WriteFile(fsys, name, data); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
	}
	got, err := ReadFile(fsys, "seed/extra/notes.txt")
	if err != nil || len(got) != 9000 {
		t.Fatalf("read notes.txt back: %d bytes, %v", len(got), err)
	}
	if !Exists(fsys, "/overlays/a.dtbo") || Exists(fsys, "/overlays/b.dtbo") {
		t.Fatal("Exists: wrong answer for /overlays/a.dtbo or /overlays/b.dtbo")
	}
	return f, p
}

func fsck(t *testing.T, p string) error {
	t.Helper()
	out, err := exec.Command("fsck.fat", "-n", p).CombinedOutput()
	if err != nil {
		t.Logf("fsck.fat -n %s:\n%s", p, out)
	}
	return err
}

// TestRepair shows go-diskfs's output fails fsck.fat -n, and passes once
// repaired.
func TestRepair(t *testing.T) {
	testtool.Need(t, "fsck.fat", "dosfstools")
	tests := []struct {
		name    string
		repair  bool
		wantErr bool
	}{
		{"as go-diskfs wrote it", false, true},
		{"repaired", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, p := newFAT32(t)
			if !IsFAT32(f, 0) {
				t.Fatal("IsFAT32: false for a FAT32 file system")
			}
			if tt.repair {
				if err := Repair(f, 0); err != nil {
					t.Fatalf("Repair: %v", err)
				}
			}
			if err := fsck(t, p); (err != nil) != tt.wantErr {
				t.Fatalf("fsck.fat -n: %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

// TestSetTimes makes two file systems written at different times the same
// bytes.
func TestSetTimes(t *testing.T) {
	at := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	var images [][]byte
	for i := range 2 {
		f, p := newFAT32(t)
		if err := SetTimes(f, 0, at); err != nil {
			t.Fatalf("SetTimes: %v", err)
		}
		if err := Repair(f, 0); err != nil {
			t.Fatalf("Repair: %v", err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		images = append(images, data)
		if i == 0 {
			time.Sleep(2100 * time.Millisecond) // FAT times have 2 s steps
		}
	}
	if !bytes.Equal(images[0], images[1]) {
		t.Fatal("two file systems with the same files and SetTimes differ")
	}
}

func TestNotFAT32(t *testing.T) {
	p := filepath.Join(t.TempDir(), "zero")
	if err := os.WriteFile(p, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsFAT32(f, 0) {
		t.Fatal("IsFAT32: true for zeros")
	}
	if err := Repair(f, 0); err == nil {
		t.Fatal("Repair: no error for zeros")
	}
	if err := SetTimes(f, 0, time.Unix(0, 0)); err == nil {
		t.Fatal("SetTimes: no error for zeros")
	}
}
