package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The emulated nodes share this machine's kernel, and the kernel keeps one
// neighbour (ARP) table count for all network namespaces. Every node's
// overlay networks hold an entry per peer, so a lab of 159 nodes needs tens
// of thousands of entries; past gc_thresh3 (1024 by default) the kernel logs
// "neighbor table overflow!" and nodes stop answering: the field reports'
// failure, on one machine. Up raises the thresholds (never lowers them) and
// keeps the old values; Down of the last lab puts them back.

// neighLimits are the thresholds Up makes sure of (Swarm3k's node
// preparation used 30000/32000/32768 for 2,000 nodes).
var neighLimits = []struct {
	name string
	min  int
}{
	{"gc_thresh1", 8192},
	{"gc_thresh2", 32768},
	{"gc_thresh3", 65536},
}

const neighDir = "/proc/sys/net/ipv4/neigh/default"

// neighSavedFile holds the values found before the first lab raised them.
func neighSavedFile(baseDir string) string { return filepath.Join(baseDir, "neigh-defaults.json") }

func readSysctl(name string) (int, error) {
	b, err := os.ReadFile(filepath.Join(neighDir, name))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func writeSysctl(name string, v int) error {
	return os.WriteFile(filepath.Join(neighDir, name), []byte(strconv.Itoa(v)), 0o644)
}

// raiseNeighbourLimits raises the host's neighbour table thresholds.
func (l *Lab) raiseNeighbourLimits() error {
	saved := neighSavedFile(filepath.Dir(l.cfg.StateDir))
	orig := map[string]int{}
	raise := false
	for _, s := range neighLimits {
		v, err := readSysctl(s.name)
		if err != nil {
			return fmt.Errorf("read neighbour table limit: %w", err)
		}
		orig[s.name] = v
		raise = raise || v < s.min
	}
	if !raise {
		return nil
	}
	if _, err := os.Stat(saved); errors.Is(err, fs.ErrNotExist) {
		data, _ := json.Marshal(orig)
		if err := os.WriteFile(saved, data, 0o600); err != nil {
			return fmt.Errorf("keep neighbour table limits: %w", err)
		}
	}
	// thresh3 first, so thresh1 ≤ thresh2 ≤ thresh3 holds at every step.
	for i := len(neighLimits) - 1; i >= 0; i-- {
		s := neighLimits[i]
		if orig[s.name] < s.min {
			if err := writeSysctl(s.name, s.min); err != nil {
				return fmt.Errorf("raise neighbour table %s to %d: %w", s.name, s.min, err)
			}
		}
	}
	l.log.Debug("raised the host's neighbour table limits for the emulated nodes", "gc_thresh3", neighLimits[2].min)
	return nil
}

// restoreNeighbourLimits puts back the values found before the first lab.
func restoreNeighbourLimits(baseDir string) error {
	saved := neighSavedFile(baseDir)
	data, err := os.ReadFile(saved)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var orig map[string]int
	if err := json.Unmarshal(data, &orig); err != nil {
		return fmt.Errorf("restore neighbour table limits: %w", err)
	}
	for _, s := range neighLimits { // thresh1 first: lowering keeps the order
		if v, ok := orig[s.name]; ok {
			if err := writeSysctl(s.name, v); err != nil {
				return fmt.Errorf("restore neighbour table %s: %w", s.name, err)
			}
		}
	}
	return os.Remove(saved)
}
