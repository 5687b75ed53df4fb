package discover

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Options say what to sweep and how gently.
type Options struct {
	Range netip.Prefix // an IPv4 range from ParseRange
	Ports []uint16     // default DefaultPorts

	// Rate is the most connection attempts started per second (a token
	// bucket with a burst of Burst(Rate)); 0 means no limit.
	Rate int
	// Timeout is how long one attempt may wait for an answer before the
	// port counts as filtered (default DefaultTimeout).
	Timeout time.Duration
	// Window is the most attempts in flight at once (default
	// DefaultWindow; never more than the open-file limit allows).
	Window int

	// BannerTimeout bounds reading an SSH banner and the Engine API ping
	// (default DefaultBannerTimeout).
	BannerTimeout time.Duration
	// DockerPing asks GET /_ping of every open port 2375 (an HTTP request).
	DockerPing bool
	// Nodes names the addresses of inventory nodes (NodeNames).
	Nodes map[netip.Addr]string

	// Progress, when set, gets a snapshot every ProgressEvery (default
	// 500ms) and at the end, from the sweeping goroutine: keep it quick.
	Progress      func(Stats)
	ProgressEvery time.Duration
}

// Defaults.
const (
	DefaultTimeout       = time.Second
	DefaultWindow        = 1024
	DefaultBannerTimeout = 2 * time.Second
	DefaultRate          = 10000
)

// Endpoint is one open TCP port.
type Endpoint struct {
	Addr netip.Addr `json:"address"`
	Port uint16     `json:"port"`
	// Node is the inventory node with this address; empty for a stranger.
	Node string `json:"node,omitempty"`
	// Banner is the SSH identification line (port 22), printable ASCII.
	Banner string `json:"banner,omitempty"`
	// Docker is the Engine API's answer to /_ping (port 2375, when asked).
	Docker *DockerPing `json:"docker,omitempty"`
	// Problem says why the banner or ping is missing.
	Problem string `json:"problem,omitempty"`
}

// DockerPing is what GET /_ping answered.
type DockerPing struct {
	OK         bool   `json:"ok"`     // 200 with body "OK"
	Status     string `json:"status"` // the HTTP status line's code and text
	APIVersion string `json:"apiVersion,omitempty"`
	OSType     string `json:"osType,omitempty"`
}

// Stats count what the sweep did.
type Stats struct {
	Targets     uint64        `json:"targets"`     // addresses × ports
	Attempts    uint64        `json:"attempts"`    // connection attempts started
	Open        uint64        `json:"open"`        // connected
	Closed      uint64        `json:"closed"`      // refused (RST)
	Filtered    uint64        `json:"filtered"`    // no answer within the timeout
	Unreachable uint64        `json:"unreachable"` // host or network unreachable, and other errors
	Elapsed     time.Duration `json:"elapsed"`
}

// Done is the number of attempts with a result.
func (s Stats) Done() uint64 { return s.Open + s.Closed + s.Filtered + s.Unreachable }

// Burst is the token bucket's size for a rate: a fiftieth of a second's
// attempts, at least 1.
func Burst(rate int) int { return max(1, rate/50) }

// Sweep tries every port of every address in the range and returns the
// open endpoints, sorted by address and port. It stops when ctx ends,
// returning what it found so far with ctx's error.
func Sweep(ctx context.Context, o Options) ([]Endpoint, Stats, error) {
	if !o.Range.IsValid() || !o.Range.Addr().Is4() {
		return nil, Stats{}, errors.New("sweep: no IPv4 range")
	}
	if len(o.Ports) == 0 {
		o.Ports = DefaultPorts
	}
	if o.Rate < 0 {
		return nil, Stats{}, fmt.Errorf("sweep %s: rate %d: use 0 (no limit) or more", o.Range, o.Rate)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.BannerTimeout <= 0 {
		o.BannerTimeout = DefaultBannerTimeout
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 500 * time.Millisecond
	}
	probes := newProber(ctx, o)
	stats, err := sweep(ctx, o, probes)
	found := probes.wait()
	for i := range found {
		found[i].Node = o.Nodes[found[i].Addr]
	}
	slices.SortFunc(found, func(a, b Endpoint) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
	if err != nil {
		return found, stats, fmt.Errorf("sweep %s: %w", o.Range, err)
	}
	return found, stats, nil
}
