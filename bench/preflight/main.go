// Command preflight benchmarks `provision preflight` on a 5-host, 60-VM
// inventory against the Proxmox API simulator over real HTTPS on loopback.
//
// It prints provision's time and API calls beside an anchor measured in the
// same run: the same GET requests made the way a shell loop does it today,
// one `curl` process after another (a new TLS connection each). The anchor
// only fetches; it does not even evaluate the answers. Goal (issue 4):
// preflight under 2 s.
//
//	go run ./bench/preflight            # or: make bench
package main

import (
	"context"
	"encoding/pem"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/preflight"
	"github.com/fhlab/provision/internal/proxmox"
	"github.com/fhlab/provision/internal/proxmox/pvetest"
	"github.com/fhlab/provision/internal/pvesim"
)

const (
	hosts    = 5
	managers = 3
	workers  = 57 // 60 VMs
	// others are unrelated VMs already in the cluster, each with a static
	// address: the IP check has to read their configs.
	others  = 40
	tokenID = "provision@pve!bench"
)

func main() {
	runs := flag.Int("runs", 5, "preflight runs (the median is reported)")
	concurrency := flag.Int("concurrency", 32, "provision's --concurrency")
	anchor := flag.Bool("anchor", true, "also run the curl loop anchor")
	latency := flag.Duration("latency", 0, "add this much time to every API answer (a real pveproxy takes ~10-50 ms per call)")
	flag.Parse()
	if err := run(*runs, *concurrency, *anchor, *latency); err != nil {
		fmt.Fprintln(os.Stderr, "bench/preflight:", err)
		os.Exit(1)
	}
}

func inventoryYAML() string {
	var b strings.Builder
	b.WriteString(`apiVersion: provision/v1
kind: Lab
metadata: {name: bench}
network: {cidr: 10.20.0.0/16, gateway: 10.20.0.1, dns: [10.20.0.1]}
ssh: {user: provision, privateKeyFile: id_bench, createKey: true}
swarm: {defaultAddrPool: [10.128.0.0/12], defaultAddrPoolMaskLength: 20, managers: 3}
proxmox:
  apiURL: https://127.0.0.1:8006/api2/json
  nodes:
`)
	for i := 1; i <= hosts; i++ {
		fmt.Fprintf(&b, "    - {name: pve%d}\n", i)
	}
	fmt.Fprintf(&b, `  template: debian-12-cloudinit
  vmidStart: 4101
  vms:
    - {name: mgr-%%d, count: %d, role: manager, cores: 2, memory: 4096, disk: 32G, ipStart: 10.20.1.11}
    - {name: wrk-%%02d, count: %d, role: worker, cores: 4, memory: 8192, disk: 64G, ipStart: 10.20.1.21}
`, managers, workers)
	return b.String()
}

// secret is made per run; it is never printed.
func secret() string {
	return fmt.Sprintf("%08x-bench-%d", time.Now().UnixNano()&0xffffffff, os.Getpid())
}

func run(runs, concurrency int, withAnchor bool, latency time.Duration) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "provision-bench-preflight-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	invPath := filepath.Join(dir, "lab.yaml")
	if err := os.WriteFile(invPath, []byte(inventoryYAML()), 0o644); err != nil {
		return err
	}
	inv, err := inventory.Load(invPath)
	if err != nil {
		return err
	}
	vms := 0
	for _, n := range inv.Nodes {
		if n.Kind == inventory.KindVM {
			vms++
		}
	}

	sim, err := pvesim.New(pvesim.Options{Cluster: "bench"})
	if err != nil {
		return err
	}
	defer sim.Close()
	sec := secret()
	if err := pvetest.Cluster(sim, inv, tokenID, sec, pvetest.Seed{Templates: true}); err != nil {
		return fmt.Errorf("seed the simulator: %w", err)
	}
	for i := 0; i < others; i++ {
		node := fmt.Sprintf("pve%d", i%hosts+1)
		err := sim.AddVM(pvesim.VM{Node: node, VMID: 200 + i, Name: fmt.Sprintf("other-%02d", i), Running: true, Config: map[string]string{
			"memory": "2048", "cores": "2", "scsi0": fmt.Sprintf("local-lvm:vm-%d-disk-0,size=20G", 200+i),
			"ide2":      fmt.Sprintf("local-lvm:vm-%d-cloudinit,media=cdrom", 200+i),
			"ipconfig0": fmt.Sprintf("ip=10.20.9.%d/16,gw=10.20.0.1", i+10),
		}})
		if err != nil {
			return fmt.Errorf("add VM: %w", err)
		}
	}

	// Record every request (method and URI, for the anchor), then serve.
	var mu sync.Mutex
	var seen []string
	recording := false
	h := sim.Handler()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if recording {
			seen = append(seen, r.Method+" "+r.URL.RequestURI())
		}
		mu.Unlock()
		if latency > 0 {
			time.Sleep(latency)
		}
		h.ServeHTTP(w, r)
	}))
	srv.EnableHTTP2 = false
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		return err
	}
	base := srv.URL + "/api2/json"

	fmt.Printf("preflight of %d hosts, %d VMs (%d other VMs in the cluster), simulator over HTTPS on %s, %s added per answer\n", hosts, vms, others, strings.TrimPrefix(srv.URL, "https://"), latency)
	var times []time.Duration
	var calls int64
	for i := 0; i < runs; i++ {
		c, err := proxmox.New(proxmox.Config{BaseURL: base, TokenID: tokenID, TokenSecret: sec, CAFile: ca})
		if err != nil {
			return err
		}
		if i == 0 {
			mu.Lock()
			recording = true
			mu.Unlock()
		}
		start := time.Now()
		rep, err := preflight.Run(ctx, preflight.Options{Client: c, Inventory: inv, Concurrency: concurrency})
		d := time.Since(start)
		c.Close()
		if err != nil {
			return err
		}
		if rep.Failed() > 0 {
			rep.WriteTable(os.Stdout)
			return fmt.Errorf("preflight failed %d checks on the seeded lab", rep.Failed())
		}
		times = append(times, d)
		calls = rep.Calls
		if i == 0 {
			mu.Lock()
			recording = false
			mu.Unlock()
			fmt.Printf("  %d results, %d API calls (%d GET)\n", len(rep.Results), rep.Calls, c.Calls().Get)
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	med := times[len(times)/2]
	fmt.Printf("provision preflight: %.3f s (median of %d; min %.3f s, max %.3f s), %d API calls\n",
		med.Seconds(), runs, times[0].Seconds(), times[len(times)-1].Seconds(), calls)

	goal := "MET"
	if med >= 2*time.Second {
		goal = "NOT MET"
	}
	if !withAnchor {
		fmt.Printf("goal under 2 s: %s\n", goal)
		return nil
	}
	if _, err := exec.LookPath("curl"); err != nil {
		return fmt.Errorf("the anchor needs curl (apt-get install curl), or pass -anchor=false")
	}
	// The token goes to curl in a 0600 header file, never on a command line.
	hdr := filepath.Join(dir, "auth.header")
	if err := os.WriteFile(hdr, []byte("Authorization: PVEAPIToken="+tokenID+"="+sec+"\n"), 0o600); err != nil {
		return err
	}
	mu.Lock()
	reqs := append([]string(nil), seen...)
	mu.Unlock()
	start := time.Now()
	for _, r := range reqs {
		method, uri, _ := strings.Cut(r, " ")
		cmd := exec.CommandContext(ctx, "curl", "-sS", "-f", "-o", "/dev/null", "--cacert", ca, "-H", "@"+hdr, "-X", method, srv.URL+uri)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("anchor: curl %s %s: %v: %s", method, uri, err, out)
		}
	}
	ad := time.Since(start)
	fmt.Printf("anchor (the same %d GETs, one curl after another): %.3f s\n", len(reqs), ad.Seconds())
	fmt.Printf("ratio: provision is %.1fx faster; goal under 2 s: %s\n", ad.Seconds()/med.Seconds(), goal)
	return nil
}
