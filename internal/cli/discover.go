package cli

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/discover"
)

func (a *app) discoverCommand() *cobra.Command {
	var (
		ports      string
		rate       int
		timeout    time.Duration
		window     int
		force      bool
		dockerPing bool
		output     string
		banner     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "discover CIDR",
		Short: "Sweep an address range for SSH and Docker endpoints",
		Long: fmt.Sprintf(`Sweep an IPv4 range for open TCP ports (default 22, 2375 and 2377: SSH,
the Docker Engine API without TLS, the swarm manager port) and say which
hosts are nodes of the inventory (-i) and which are strangers.

WARNING: discover sends a connection attempt to every address of the range
on every port. Only run it on a network that is yours to scan.

How it goes: one event loop of non-blocking connects, at most --window in
flight and --rate started per second (0: no limit), each given --timeout to
answer (no answer: "filtered", a firewall that drops or no host at all); a
refused port costs two system calls and no waiting. For each open port 22
the SSH identification line is read (up to --banner-timeout, then the
connection is reset); with --docker-ping an open port 2375 is asked GET
/_ping (an HTTP request). Ranges wider than a /%d are refused unless --force.

Output: a table of open endpoints on stdout (ADDRESS, PORT, NODE, WHAT), or
JSON with --output json; progress and a summary of closed, filtered and
unreachable ports on stderr. NODE is the inventory node with that address,
"stranger" for any other host, or "-" without an inventory.`, discover.MaxPrefixBits),
		Example: `  provision discover 192.168.10.0/23 -i lab.yaml
  provision discover 192.168.10.0/24 --port 22 --rate 500
  provision discover 192.168.10.0/24 --port 2375 --docker-ping -o json`,
		Args:        cobra.ExactArgs(1),
		Annotations: map[string]string{noLogFile: "yes"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return exitError{2, fmt.Errorf("--output %q: use table or json", output)}
			}
			prefix, err := discover.ParseRange(args[0], force)
			if err != nil {
				return exitError{2, err}
			}
			portList, err := discover.ParsePorts(ports)
			if err != nil {
				return exitError{2, fmt.Errorf("--port: %w", err)}
			}
			if rate < 0 {
				return exitError{2, fmt.Errorf("--rate %d: use 0 (no limit) or more attempts per second", rate)}
			}
			if timeout <= 0 {
				return exitError{2, fmt.Errorf("--timeout %s: use a positive duration like 500ms", timeout)}
			}
			if banner <= 0 {
				return exitError{2, fmt.Errorf("--banner-timeout %s: use a positive duration like 2s", banner)}
			}
			if window < 1 {
				return exitError{2, fmt.Errorf("--window %d: use 1 or more", window)}
			}
			var names map[netip.Addr]string
			if a.settings.Inventory != "" {
				inv, err := a.loadInventory()
				if err != nil {
					return err
				}
				names = discover.NodeNames(inv.Nodes)
				inRange := 0
				for addr := range names {
					if prefix.Contains(addr) {
						inRange++
					}
				}
				if inRange == 0 {
					a.log.Warn(fmt.Sprintf("no node of %s has an address in %s (the lab's network is %s): every host found is a stranger", inv.File, prefix, inv.Lab.Network.CIDR))
				}
			}
			opts := discover.Options{
				Range: prefix, Ports: portList, Rate: rate, Timeout: timeout, Window: window,
				DockerPing: dockerPing, Nodes: names, BannerTimeout: banner,
				Progress: func(s discover.Stats) {
					if s.Done() < s.Targets {
						a.status.Progress("%d of %d tried, %d open", s.Done(), s.Targets, s.Open)
					}
				},
				ProgressEvery: 2 * time.Second,
			}
			end := a.status.Start(fmt.Sprintf("discover %s, ports %s", prefix, ports))
			found, stats, err := discover.Sweep(cmd.Context(), opts)
			end(err)
			a.status.Progress("%d open, %d closed, %d filtered, %d unreachable of %d in %s",
				stats.Open, stats.Closed, stats.Filtered, stats.Unreachable, stats.Targets, stats.Elapsed.Round(time.Millisecond))
			if output == "json" {
				if werr := writeDiscoverJSON(a, prefix, portList, names != nil, found, stats); werr != nil && err == nil {
					err = werr
				}
			} else if werr := writeDiscoverTable(a, names != nil, found); werr != nil && err == nil {
				err = werr
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&ports, "port", "22,2375,2377", "TCP ports to try, comma-separated")
	f.IntVar(&rate, "rate", discover.DefaultRate, "most connection attempts started per second (0: no limit)")
	f.DurationVar(&timeout, "timeout", discover.DefaultTimeout, "how long one attempt waits for an answer before the port counts as filtered")
	f.DurationVar(&banner, "banner-timeout", discover.DefaultBannerTimeout, "how long to wait for an SSH banner or a /_ping answer")
	f.IntVar(&window, "window", discover.DefaultWindow, "most connection attempts in flight at once")
	f.BoolVar(&force, "force", false, fmt.Sprintf("sweep a range wider than a /%d", discover.MaxPrefixBits))
	f.BoolVar(&dockerPing, "docker-ping", false, "ask GET /_ping of every open port 2375 (an HTTP request to each)")
	f.StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

// nodeLabel is the NODE column: the node's name, "stranger", or "-" when
// there is no inventory to tell.
func nodeLabel(haveInventory bool, ep discover.Endpoint) string {
	switch {
	case ep.Node != "":
		return ep.Node
	case haveInventory:
		return "stranger"
	}
	return "-"
}

func describeEndpoint(ep discover.Endpoint) string {
	var parts []string
	if ep.Banner != "" {
		parts = append(parts, ep.Banner)
	}
	if d := ep.Docker; d != nil {
		if d.OK {
			s := "Docker Engine API"
			if d.APIVersion != "" {
				s += " " + d.APIVersion
			}
			if d.OSType != "" {
				s += " (" + d.OSType + ")"
			}
			parts = append(parts, s)
		} else {
			parts = append(parts, "/_ping answered "+d.Status)
		}
	}
	if ep.Problem != "" {
		parts = append(parts, ep.Problem)
	}
	if len(parts) == 0 {
		return "open"
	}
	return strings.Join(parts, "; ")
}

func writeDiscoverTable(a *app, haveInventory bool, found []discover.Endpoint) error {
	tw := tabwriter.NewWriter(a.status.Wrap(a.streams.Out), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tPORT\tNODE\tWHAT")
	for _, ep := range found {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", ep.Addr, ep.Port, nodeLabel(haveInventory, ep), describeEndpoint(ep))
	}
	return tw.Flush()
}

type discoverReport struct {
	Range     string              `json:"range"`
	Ports     []uint16            `json:"ports"`
	Endpoints []discoverEndpoint  `json:"endpoints"`
	Stats     discoverReportStats `json:"stats"`
}

type discoverEndpoint struct {
	discover.Endpoint
	// Stranger is set only with an inventory: true for a host that is no
	// node of it.
	Stranger *bool `json:"stranger,omitempty"`
}

type discoverReportStats struct {
	discover.Stats
	Elapsed string `json:"elapsed"`
}

func writeDiscoverJSON(a *app, prefix netip.Prefix, ports []uint16, haveInventory bool, found []discover.Endpoint, stats discover.Stats) error {
	r := discoverReport{Range: prefix.String(), Ports: ports, Endpoints: []discoverEndpoint{}, Stats: discoverReportStats{stats, stats.Elapsed.Round(time.Millisecond).String()}}
	for _, ep := range found {
		e := discoverEndpoint{Endpoint: ep}
		if haveInventory {
			s := ep.Node == ""
			e.Stranger = &s
		}
		r.Endpoints = append(r.Endpoints, e)
	}
	enc := json.NewEncoder(a.streams.Out)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
