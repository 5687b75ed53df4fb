// Package preflight checks a Proxmox cluster against the inventory before
// anything changes: the API and its version, the token, every host online,
// the template and its hardware on every target host, snippets storage, room
// for the disks, free VMIDs and IPs, the token's privileges, clock skew.
//
// Checks run concurrently (bounded) and read only: preflight never changes
// the cluster. Every failure says how to fix it.
package preflight

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/par"
	"github.com/fhlab/provision/internal/proxmox"
)

// Check names, in the order reports list them.
const (
	CheckAPI        = "api"
	CheckToken      = "token"
	CheckPrivileges = "privileges"
	CheckHost       = "host"
	CheckClock      = "clock"
	CheckTemplate   = "template"
	CheckSnippets   = "snippets"
	CheckStorage    = "storage"
	CheckVMIDs      = "vmids"
	CheckIPs        = "ips"
)

var checkOrder = []string{CheckAPI, CheckToken, CheckPrivileges, CheckHost, CheckClock, CheckTemplate, CheckSnippets, CheckStorage, CheckVMIDs, CheckIPs}

// Result is one check on one target.
type Result struct {
	Check   string `json:"check"`
	Target  string `json:"target"`
	OK      bool   `json:"ok"`
	Warning bool   `json:"warning,omitempty"` // OK, but worth a look
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

// Options are what a preflight run needs.
type Options struct {
	Client    *proxmox.Client
	Inventory *inventory.Inventory
	// Concurrency bounds the API requests in flight (default 16).
	Concurrency int
	// Now is this machine's clock (default time.Now).
	Now func() time.Time
	// SkewWarn and SkewFail are clock-skew thresholds (default 2 s, 30 s).
	SkewWarn, SkewFail time.Duration
	Log                *slog.Logger
}

// Report is a preflight run's outcome.
type Report struct {
	Results  []Result      `json:"results"`
	Calls    int64         `json:"apiCalls"`
	Duration time.Duration `json:"-"`
}

// Failed counts the failed results.
func (r Report) Failed() int {
	n := 0
	for _, x := range r.Results {
		if !x.OK {
			n++
		}
	}
	return n
}

// Warnings counts the results that passed with a warning.
func (r Report) Warnings() int {
	n := 0
	for _, x := range r.Results {
		if x.OK && x.Warning {
			n++
		}
	}
	return n
}

// Find returns the results of one check (and target, unless "").
func (r Report) Find(check, target string) []Result {
	var out []Result
	for _, x := range r.Results {
		if x.Check == check && (target == "" || x.Target == target) {
			out = append(out, x)
		}
	}
	return out
}

// run is one preflight run's working state.
type run struct {
	opts  Options
	c     *proxmox.Client
	inv   *inventory.Inventory
	p     *inventory.Proxmox
	hw    proxmox.Hardware
	file  string // the inventory file, for fixes
	now   func() time.Time
	order map[string]int // node name → position, for sorting

	mu      sync.Mutex
	results []Result
}

func (r *run) add(res Result) {
	r.mu.Lock()
	r.results = append(r.results, res)
	r.mu.Unlock()
}

func (r *run) pass(check, target, format string, args ...any) {
	r.add(Result{Check: check, Target: target, OK: true, Message: fmt.Sprintf(format, args...)})
}

func (r *run) warn(check, target, msg, fix string) {
	r.add(Result{Check: check, Target: target, OK: true, Warning: true, Message: msg, Fix: fix})
}

func (r *run) fail(check, target, msg, fix string) {
	r.add(Result{Check: check, Target: target, Message: msg, Fix: fix})
}

// Run checks the cluster against the inventory. The error is only for a run
// that could not be made (no Proxmox section, ctx cancelled); failed checks
// are results.
func Run(ctx context.Context, opts Options) (Report, error) {
	start := time.Now()
	inv := opts.Inventory
	if inv == nil || inv.Lab.Proxmox == nil {
		return Report{}, fmt.Errorf("preflight: the inventory has no proxmox section")
	}
	if opts.Client == nil {
		return Report{}, fmt.Errorf("preflight: no Proxmox client")
	}
	if opts.Concurrency < 1 {
		opts.Concurrency = 16
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SkewWarn <= 0 {
		opts.SkewWarn = 2 * time.Second
	}
	if opts.SkewFail <= 0 {
		opts.SkewFail = 30 * time.Second
	}
	before := opts.Client.Calls().Total
	r := &run{
		opts: opts, c: opts.Client, inv: inv, p: inv.Lab.Proxmox,
		hw: proxmox.LabHardware(inv.Lab.Proxmox), file: inv.File, now: opts.Now,
		order: map[string]int{},
	}
	if r.file == "" {
		r.file = "FILE"
	}
	for i, n := range r.p.Nodes {
		r.order[n.Name] = i + 1
	}
	err := r.all(ctx)
	rep := Report{Results: r.sorted(), Calls: opts.Client.Calls().Total - before, Duration: time.Since(start)}
	if err != nil {
		return rep, err
	}
	return rep, ctx.Err()
}

func (r *run) sorted() []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.results)
	sort.SliceStable(out, func(i, j int) bool {
		ci, cj := slices.Index(checkOrder, out[i].Check), slices.Index(checkOrder, out[j].Check)
		if ci != cj {
			return ci < cj
		}
		ti, tj := r.order[out[i].Target], r.order[out[j].Target]
		if ti != tj {
			return ti < tj
		}
		return out[i].Target < out[j].Target
	})
	return out
}

// each runs fn for every item concurrently, bounded by the run's limit.
func each[T any](ctx context.Context, r *run, items []T, fn func(ctx context.Context, item T)) {
	par.Each(ctx, r.opts.Concurrency, len(items), func(ctx context.Context, i int) error {
		fn(ctx, items[i])
		return nil
	})
}

// WriteTable writes the results as a table: ✓ passed, ! passed with a
// warning, ✗ failed, each failure followed by its fix; then a summary.
func (rep Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, x := range rep.Results {
		mark := "✓"
		switch {
		case !x.OK:
			mark = "✗"
		case x.Warning:
			mark = "!"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", mark, x.Check, x.Target, firstLine(x.Message))
		for _, l := range restLines(x.Message) {
			fmt.Fprintf(tw, "\t\t\t  %s\n", l)
		}
		if x.Fix != "" && (!x.OK || x.Warning) {
			for i, l := range strings.Split(x.Fix, "\n") {
				label := "fix:"
				if i > 0 {
					label = "    "
				}
				fmt.Fprintf(tw, "\t\t\t  %s %s\n", label, l)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, rep.Summary())
	return err
}

// Summary is the one-line outcome.
func (rep Report) Summary() string {
	failed, warned := rep.Failed(), rep.Warnings()
	passed := len(rep.Results) - failed
	s := fmt.Sprintf("preflight: %d passed", passed)
	if warned > 0 {
		s += fmt.Sprintf(" (%d with a warning)", warned)
	}
	s += fmt.Sprintf(", %d failed; %d API calls in %.2f s", failed, rep.Calls, rep.Duration.Seconds())
	return s
}

// WriteJSON writes the report as JSON.
func (rep Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		OK       bool     `json:"ok"`
		Failed   int      `json:"failed"`
		Warnings int      `json:"warnings"`
		Calls    int64    `json:"apiCalls"`
		Seconds  float64  `json:"seconds"`
		Results  []Result `json:"results"`
	}{rep.Failed() == 0, rep.Failed(), rep.Warnings(), rep.Calls, rep.Duration.Seconds(), rep.Results})
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func restLines(s string) []string {
	_, rest, ok := strings.Cut(s, "\n")
	if !ok {
		return nil
	}
	return strings.Split(rest, "\n")
}
