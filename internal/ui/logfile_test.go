package ui

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLogFileKeepsRecordsFromBeforeOpenAndIs0600(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	l := &LogFile{}
	log := slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
	log.Debug("before open")
	if l.Path() != "" {
		t.Errorf("Path before Open = %q", l.Path())
	}
	if err := l.Open(dir, "===== run 1"); err != nil {
		t.Fatal(err)
	}
	log.Debug("after open")
	l.Close()
	log.Debug("after close")
	data, err := os.ReadFile(filepath.Join(dir, LogFileName))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 3 || lines[0] != "===== run 1" || !strings.Contains(lines[1], "before open") || !strings.Contains(lines[2], "after open") {
		t.Errorf("log file:\n%s", data)
	}
	if !filepath.IsAbs(l.Path()) || l.Path() != filepath.Join(dir, LogFileName) {
		t.Errorf("Path = %q", l.Path())
	}
	fi, _ := os.Stat(l.Path())
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	// A file left with another mode is made 0600 again; runs append.
	os.Chmod(l.Path(), 0o644)
	l2 := &LogFile{}
	if err := l2.Open(dir, "===== run 2"); err != nil {
		t.Fatal(err)
	}
	l2.Close()
	fi, _ = os.Stat(l.Path())
	data, _ = os.ReadFile(l.Path())
	if fi.Mode().Perm() != 0o600 || !strings.Contains(string(data), "===== run 1") || !strings.Contains(string(data), "===== run 2") {
		t.Errorf("second run: mode %v, file:\n%s", fi.Mode().Perm(), data)
	}
}

func TestLogFileRotatesKeepingThree(t *testing.T) {
	dir := t.TempDir()
	l := &LogFile{MaxSize: 100}
	if err := l.Open(dir, "marker"); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// The marker and record 00 fill the first file, then two records of
	// 49 bytes fit in each.
	for i := range 13 {
		fmt.Fprintf(l, "record %02d %s\n", i, strings.Repeat("x", 38))
	}
	path := filepath.Join(dir, LogFileName)
	tests := []struct {
		file string
		want []string
	}{
		{path, []string{"record 11", "record 12"}},
		{path + ".1", []string{"record 09", "record 10"}},
		{path + ".2", []string{"record 07", "record 08"}},
		{path + ".3", []string{"record 05", "record 06"}},
	}
	for _, tt := range tests {
		data, err := os.ReadFile(tt.file)
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(tt.file), err)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(string(data), w) {
				t.Errorf("%s lacks %q:\n%s", filepath.Base(tt.file), w, data)
			}
		}
		if fi, _ := os.Stat(tt.file); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", filepath.Base(tt.file), fi.Mode().Perm())
		}
	}
	if _, err := os.Stat(path + ".4"); err == nil {
		t.Errorf("provision.log.4 exists: only three old files are kept")
	}
	if err := l.Err(); err != nil {
		t.Error(err)
	}
	// A full file is rotated when the next run opens it.
	l.Close()
	os.WriteFile(path, []byte(strings.Repeat("y", 200)), 0o600)
	l2 := &LogFile{MaxSize: 100}
	if err := l2.Open(dir, "next run"); err != nil {
		t.Fatal(err)
	}
	l2.Close()
	if data, _ := os.ReadFile(path); string(data) != "next run\n" {
		t.Errorf("full file not rotated at open: %q", data)
	}
}

func TestLogFileRedacts(t *testing.T) {
	dir := t.TempDir()
	l := &LogFile{Redact: func(s string) string { return strings.ReplaceAll(s, "s3cret", "[redacted]") }}
	log := slog.New(slog.NewTextHandler(l, nil))
	log.Info("before open", "token", "user@pve!t=s3cret")
	if err := l.Open(dir, "run s3cret"); err != nil {
		t.Fatal(err)
	}
	log.Info("after", "secret", "s3cret")
	l.Close()
	data, _ := os.ReadFile(filepath.Join(dir, LogFileName))
	if strings.Contains(string(data), "s3cret") || strings.Count(string(data), "[redacted]") != 3 {
		t.Errorf("log file:\n%s", data)
	}
}

func TestLogFilePathIsAbsolute(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	l := &LogFile{}
	if err := l.Open(filepath.Join(".provision", "lab"), "marker"); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if want := filepath.Join(dir, ".provision", "lab", LogFileName); l.Path() != want {
		t.Errorf("Path = %q, want %q", l.Path(), want)
	}
}
