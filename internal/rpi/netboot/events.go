package netboot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/fhlab/provision/internal/state"
)

// EventKind is what happened in a boot.
type EventKind string

// The boot events.
const (
	EventDHCP    EventKind = "dhcp"    // the bootloader's DHCP request was answered
	EventFile    EventKind = "file"    // a boot file was served to the end
	EventUnknown EventKind = "unknown" // a Pi asked for a directory no node has
	EventRefused EventKind = "refused" // an SD-booted Pi, a bad path, a file not there
)

// Event is one thing seen of a Pi's boot.
type Event struct {
	Time   time.Time `json:"time"`
	Kind   EventKind `json:"kind"`
	Node   string    `json:"node,omitempty"`
	Serial string    `json:"serial,omitempty"` // or the MAC directory, as asked
	MAC    string    `json:"mac,omitempty"`
	IP     string    `json:"ip,omitempty"`
	File   string    `json:"file,omitempty"`
	Bytes  int64     `json:"bytes,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

// Step is the event in words: "DHCP answered", "served start4.elf".
func (e Event) Step() string {
	switch e.Kind {
	case EventDHCP:
		return "DHCP answered"
	case EventFile:
		return "served " + e.File
	case EventUnknown:
		return "unknown directory " + e.Serial + "/ refused"
	default:
		if e.File != "" {
			return "refused " + e.File + ": " + e.Detail
		}
		return "refused: " + e.Detail
	}
}

// BootRecord is what is known of one Pi's boots.
type BootRecord struct {
	Node     string    `json:"node,omitempty"`
	Serial   string    `json:"serial,omitempty"`
	MAC      string    `json:"mac,omitempty"`
	IP       string    `json:"ip,omitempty"`
	LastStep string    `json:"lastStep"`
	LastAt   time.Time `json:"lastAt"`
	DHCPAt   time.Time `json:"dhcpAt,omitzero"`
	FileAt   time.Time `json:"fileAt,omitzero"`
	Files    int       `json:"filesServed"`
}

// Boots is the boot events file of a state directory.
type Boots struct {
	SchemaVersion int                    `json:"schemaVersion"`
	UpdatedAt     time.Time              `json:"updatedAt"`
	Pis           map[string]*BootRecord `json:"pis"`     // by node name
	Unknown       map[string]*BootRecord `json:"unknown"` // by directory or MAC
	Recent        []Event                `json:"recent"`  // the last maxRecent events
}

// BootsFile is the boot events file's name in the state directory.
const BootsFile = "netboot-boots.json"

const maxRecent = 500

// LoadBoots reads the boot events of a state directory; none yet is an
// empty record.
func LoadBoots(stateDir string) (*Boots, error) {
	b := &Boots{SchemaVersion: 1, Pis: map[string]*BootRecord{}, Unknown: map[string]*BootRecord{}}
	p := filepath.Join(stateDir, BootsFile)
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read boot events: %w", err)
	}
	if err := json.Unmarshal(data, b); err != nil {
		return nil, fmt.Errorf("read boot events %s: %w", p, err)
	}
	if b.SchemaVersion != 1 {
		return nil, fmt.Errorf("read boot events %s: schema version %d, this provision reads 1", p, b.SchemaVersion)
	}
	if b.Pis == nil {
		b.Pis = map[string]*BootRecord{}
	}
	if b.Unknown == nil {
		b.Unknown = map[string]*BootRecord{}
	}
	return b, nil
}

// IPOf returns the address a Pi was last seen at (by node name, serial or
// MAC).
func (b *Boots) IPOf(key string) (string, bool) {
	for _, m := range []map[string]*BootRecord{b.Pis, b.Unknown} {
		for name, r := range m {
			if r.IP != "" && (name == key || r.Serial == key || r.MAC == key) {
				return r.IP, true
			}
		}
	}
	return "", false
}

// Names lists the nodes with records, sorted.
func (b *Boots) Names() []string {
	out := make([]string, 0, len(b.Pis))
	for n := range b.Pis {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (b *Boots) add(e Event) {
	m, key := b.Pis, e.Node
	if key == "" {
		m, key = b.Unknown, e.Serial
		if key == "" {
			key = e.MAC
		}
	}
	if key == "" {
		return
	}
	r := m[key]
	if r == nil {
		r = &BootRecord{Node: e.Node}
		m[key] = r
	}
	for _, kv := range [][2]*string{{&r.Serial, &e.Serial}, {&r.MAC, &e.MAC}, {&r.IP, &e.IP}} {
		if *kv[1] != "" {
			*kv[0] = *kv[1]
		}
	}
	r.LastStep, r.LastAt = e.Step(), e.Time
	switch e.Kind {
	case EventDHCP:
		r.DHCPAt, r.Files = e.Time, 0
	case EventFile:
		r.FileAt = e.Time
		r.Files++
	}
	b.Recent = append(b.Recent, e)
	if len(b.Recent) > maxRecent {
		b.Recent = append(b.Recent[:0], b.Recent[len(b.Recent)-maxRecent:]...)
	}
}

// Recorder keeps boot events in the state directory (BootsFile, replaced
// atomically, at most every Interval and when Run ends) and passes each to
// OnEvent.
type Recorder struct {
	Dir      string
	Interval time.Duration
	OnEvent  func(Event)
	Now      func() time.Time

	mu    sync.Mutex
	boots *Boots
	dirty bool
	kick  chan struct{}
}

// NewRecorder starts from the events already in dir.
func NewRecorder(dir string, onEvent func(Event)) (*Recorder, error) {
	b, err := LoadBoots(dir)
	if err != nil {
		return nil, err
	}
	return &Recorder{Dir: dir, Interval: time.Second, OnEvent: onEvent, Now: time.Now, boots: b, kick: make(chan struct{}, 1)}, nil
}

// Record adds an event (Time set when zero).
func (r *Recorder) Record(e Event) {
	if e.Time.IsZero() {
		e.Time = r.Now().UTC()
	}
	r.mu.Lock()
	r.boots.add(e)
	r.dirty = true
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
	if r.OnEvent != nil {
		r.OnEvent(e)
	}
}

// Snapshot is a copy of the records (for tests and status).
func (r *Recorder) Snapshot() Boots {
	r.mu.Lock()
	defer r.mu.Unlock()
	data, _ := json.Marshal(r.boots)
	var b Boots
	json.Unmarshal(data, &b)
	return b
}

// Flush writes the file now if anything changed.
func (r *Recorder) Flush() error {
	r.mu.Lock()
	if !r.dirty {
		r.mu.Unlock()
		return nil
	}
	r.boots.UpdatedAt = r.Now().UTC()
	data, err := json.MarshalIndent(r.boots, "", "  ")
	r.dirty = false
	r.mu.Unlock()
	if err != nil {
		return err
	}
	// No secrets in it: readable by all, like the seeds.
	return state.WriteFileAtomic(filepath.Join(r.Dir, BootsFile), append(data, '\n'), 0o644)
}

// Run writes changes at most every Interval until ctx ends, then once more.
func (r *Recorder) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return r.Flush()
		case <-r.kick:
		}
		if err := r.Flush(); err != nil {
			return fmt.Errorf("boot events: %w", err)
		}
		select {
		case <-ctx.Done():
			return r.Flush()
		case <-time.After(r.Interval):
		}
	}
}
