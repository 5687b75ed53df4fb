package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/stages"
	"github.com/fhlab/provision/internal/ui"
)

const statusLong = `One line per node of the inventory, and one per swarm node the
inventory does not list:

  KIND          vm or pi
  ROLE, IP      as the inventory says
  BOOT          vm, sd (golden image on a card) or netboot
  STAGE         the last stage the state file records: vm created
                (terraform), reachable (address and SSH host key known),
                swarm (joined); - for none
  SWARM         ready, down, ... as the managers see it; absent when the
                swarm does not know the node; unknown when no manager answered
  AVAILABILITY  active, pause or drain
  MANAGER       leader, reachable or unreachable
  LABELS        the swarm's labels
  DRIFT         what differs from the inventory: role, labels that are
                missing or have another value (labels set by hand besides
                the inventory's are not drift), a swarm node not in the
                inventory, a node recorded as joined that the swarm lost

The swarm is read through the inventory's managers over SSH, the first
that answers; nothing is changed. --watch prints it again every
--interval (on a terminal in place) until Ctrl-C. --output json prints
{"nodes": [...]} with the same fields.`

func (a *app) statusCommand() *cobra.Command {
	var watch bool
	var interval time.Duration
	var output string
	cmd := &cobra.Command{
		Use:     "status -i FILE [--watch] [--output json]",
		Short:   "One table of every node: stage reached, swarm state, labels, drift",
		Long:    statusLong,
		Example: "  provision status -i lab.yaml\n  provision status -i lab.yaml --watch --interval 2s\n  provision status -i lab.yaml --output json | jq '.nodes[] | select(.drift != [])'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return exitError{2, fmt.Errorf("--output %q: use table or json", output)}
			}
			if interval <= 0 {
				return exitError{2, fmt.Errorf("--interval %s: must be positive", interval)}
			}
			env, d, err := a.session("")
			if err != nil {
				return err
			}
			defer d.SSH.Close()
			ctx := cmd.Context()
			tty := ui.IsSmartTerminal(a.streams.Out)
			once := func() error {
				ss, err := stages.Status(ctx, env, d.SSH)
				if ss == nil {
					return err
				}
				if err != nil {
					a.log.Warn("swarm: " + err.Error())
				}
				if watch && tty {
					fmt.Fprint(env.Out, "\x1b[H\x1b[2J")
				}
				if output == "json" {
					return stages.WriteStatusJSON(env.Out, ss)
				}
				return stages.WriteStatusTable(env.Out, ss)
			}
			if !watch {
				return once()
			}
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				if err := once(); err != nil {
					if errors.Is(err, context.Canceled) {
						return nil
					}
					return err
				}
				if !tty {
					fmt.Fprintln(env.Out)
				}
				select {
				case <-ctx.Done():
					return nil
				case <-t.C:
				}
			}
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&watch, "watch", "w", false, "print it again every --interval until Ctrl-C")
	f.DurationVar(&interval, "interval", 5*time.Second, "how often --watch refreshes")
	f.StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}
