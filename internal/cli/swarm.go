package cli

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/stages"
)

func (a *app) swarmCommand() *cobra.Command {
	var force, loginAll bool
	var selfJoinWait time.Duration
	cmd := &cobra.Command{
		Use:   "swarm -i FILE",
		Short: "Join every node of the inventory into one Docker Swarm",
		Long: `Connect to every node over SSH (host keys trusted on first use into
<state-dir>/known_hosts; a changed key is refused) and talk to its Docker
Engine API through that connection. Each node moves on as soon as its own
connection is up; a node that does not answer yet keeps retrying (2 minutes)
while the others are formed. Then:

  1. read each engine's swarm state as it answers (the managers are
     connected first; workers wait for them 2 s at most);
  2. pick the swarm once every manager has answered or failed, or once more
     than half of the managers are in one: an existing one wins; nodes in
     another swarm are reported and left alone unless --force;
  3. init on the first manager if no manager is in a swarm, with an
     explicit advertise address and the inventory's address pool and mask
     length;
  4. join managers one at a time (quorum-safe), workers as they answer, at
     most --concurrency at once; right after its own join (at once for a
     node already in the swarm) each node gets its labels (merged with
     labels set by hand), its manager role and, if swarm.drainManagers,
     drain, in one update, while the others are still joining;
  5. remove stale Down entries of re-created nodes; wait until every node
     is Ready; print the table;
  6. racks with join: self join by themselves at first boot: wait for their
     Pis (--self-join-wait) while serving the join endpoint on
     pis.joinServer (HTTPS, lab CA in <state-dir>/join), where each Pi
     trades the single-use ticket in its seed for the join; label each as
     it appears. When all are in the swarm, no endpoint is started.

A re-run on a formed swarm makes no change at all and says so (and counts
its changing Engine API calls: "none"). It logs in only to the managers and
to the nodes that may need a change: a worker the managers list Ready under
the node ID the state recorded, with its name, address, role and labels as
the inventory says, whose gossip port (TCP 7946, open only while its dockerd
runs in a swarm) answers, is checked without a login, and the summary says
how many were (--login-all logs in to every node). Nodes added
to the inventory are the only ones joined. Join tokens are never printed or
logged. The summary says how many nodes were reached and names each node
that failed with the cause; the others are still formed, and the exit
status is non-zero.`,
		Example: "  provision swarm -i inventory/local.yaml\n  provision swarm -i lab.yaml --concurrency 64",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env, d, err := a.session("")
			if err != nil {
				return err
			}
			defer d.SSH.Close()
			s := stages.Swarm{SSH: d.SSH, Force: force, SelfJoinWait: selfJoinWait, Counter: d.Engines, LoginAll: loginAll}
			err = pipeline.Pipeline{Stages: []pipeline.Stage{s}}.Run(cmd.Context(), env)
			writeCalls(env.Out, env.Calls)
			return err
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "make nodes that are in another swarm leave it and join this one")
	cmd.Flags().BoolVar(&loginAll, "login-all", false, "log in to every node over SSH, also to the workers a re-run can check from the managers' node list and their gossip port")
	cmd.Flags().DurationVar(&selfJoinWait, "self-join-wait", 10*time.Minute, "how long to wait for Pis of join: self racks that are not in the swarm yet")
	return cmd
}
