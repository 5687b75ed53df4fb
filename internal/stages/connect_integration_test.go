package stages_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/labtest"
	"github.com/fhlab/provision/internal/stages"
)

// TestIntegrationDockerSocketFromTheLogin: with no socket recorded for a
// node (its VM was started by someone else, as pve-sim --lab does), the
// socket is the one its SSH login's DOCKER_HOST names, not the default.
func TestIntegrationDockerSocketFromTheLogin(t *testing.T) {
	f := labtest.New(t, t.TempDir(), testWriter{t})
	f.Swarm = "{defaultAddrPool: [10.128.0.0/12], defaultAddrPoolMaskLength: 20, managers: 1}"
	inv := f.Inventory(t, "sock.yaml", "    - {name: mgr-%d, count: 1, role: manager, ipStart: {{ADDR 11}}}", "    - {name: p1, count: 1, ipStart: {{ADDR 101}}}")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f.Up(t, ctx, inv.Nodes[:1])
	env := f.Env(t, inv, io.Discard, io.Discard)
	delete(env.State.Nodes, "mgr-1")
	conn := stages.NewConnector(stages.SSH{KeyPath: f.KeyPath, DockerSocket: "/nonexistent/docker.sock"})
	defer conn.Close()
	cl, err := conn.Connect(ctx, env, &inv.Nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	n, _ := f.Node("mgr-1")
	for range 2 { // the second answer comes from what the first asked
		if got := conn.DockerSocket(ctx, env, "mgr-1", cl); got != n.DockerSocket {
			t.Errorf("DockerSocket = %q, want the node's own %q", got, n.DockerSocket)
		}
	}
	env.State.Node("mgr-1").DockerSocket = "/recorded.sock"
	if got := conn.DockerSocket(ctx, env, "mgr-1", cl); got != "/recorded.sock" {
		t.Errorf("DockerSocket = %q, want the recorded one", got)
	}
}
