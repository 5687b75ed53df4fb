package lab

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestIntegrationScale measures Up, memory and Down for labs of the sizes
// in PROVISION_LAB_SCALE (e.g. "15,60"); it does not run otherwise
// (scripts/lab-measure.sh runs it). The anchor, measured in the same run,
// is a lab of one node: the ratios say how Up and Down scale on this
// machine, whatever its speed or load.
//
//	PROVISION_LAB_SCALE=15,60 go test ./internal/lab -run TestIntegrationScale -v
func TestIntegrationScale(t *testing.T) {
	sizes := os.Getenv("PROVISION_LAB_SCALE")
	if sizes == "" {
		t.Skip("set PROVISION_LAB_SCALE=15,60 to measure lab up/down at scale")
	}
	var anchor scaleResult
	t.Run("1", func(t *testing.T) { anchor = measureScale(t, 1) })
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 250 {
			t.Fatalf("PROVISION_LAB_SCALE: %q is not a node count (1-250)", s)
		}
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			r := measureScale(t, n)
			if anchor.up > 0 && anchor.down > 0 {
				t.Logf("%d nodes vs the 1-node anchor: up %.1fx (%.2fx per node), down %.1fx",
					n, r.up.Seconds()/anchor.up.Seconds(), r.up.Seconds()/anchor.up.Seconds()/float64(n), r.down.Seconds()/anchor.down.Seconds())
			}
		})
	}
}

type scaleResult struct{ up, down time.Duration }

func measureScale(t *testing.T, n int) scaleResult {
	tl := newTestLab(t, n)
	if c, err := strconv.Atoi(os.Getenv("PROVISION_LAB_CONCURRENCY")); err == nil {
		tl.cfg.Concurrency = c
	}
	ctx := context.Background()
	availBefore := memAvailable()
	start := time.Now()
	nodes, err := tl.Up(ctx, tl.specs)
	if err != nil {
		t.Fatal(err)
	}
	up := time.Since(start)
	time.Sleep(3 * time.Second) // let the daemons settle
	rss, pss, procs := labMemory(t, tl.Lab, nodes)
	availAfter := memAvailable()
	st, err := tl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if !s.Up() {
			t.Errorf("node not up: %+v", s)
		}
	}
	start = time.Now()
	if err := tl.Down(ctx); err != nil {
		t.Fatal(err)
	}
	down := time.Since(start)
	t.Logf("lab of %d nodes (concurrency %d): up %s, down %s; %d processes, RSS sum %d MiB (%.1f MiB/node), PSS sum %d MiB (%.1f MiB/node), MemAvailable fell %d MiB (%.1f MiB/node)",
		n, tl.cfg.Concurrency, up.Round(time.Millisecond), down.Round(time.Millisecond), procs,
		rss/1024, float64(rss)/1024/float64(n), pss/1024, float64(pss)/1024/float64(n),
		(availBefore-availAfter)/1024, float64(availBefore-availAfter)/1024/float64(n))
	return scaleResult{up, down}
}
