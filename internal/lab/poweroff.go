package lab

import (
	"context"
	"fmt"
	"time"
)

// powerOffTimeout bounds a node's graceful stop in PowerOff.
const powerOffTimeout = 30 * time.Second

// PowerOff stops the named nodes' systems as a power cut would: dockerd,
// sshd and every process of the node end, while the node keeps its
// namespace, address and disk (the docker data root, swarm state
// included). The daemons get SIGTERM and up to powerOffTimeout to go
// before SIGKILL: a dockerd killed in its shutdown leaves a containerd
// state that the next dockerd can fail to start on, which a real machine's
// reboot does not. Up starts it again, as
// the next power-on. A node that is off already, or was never up, is no
// error.
func (l *Lab) PowerOff(ctx context.Context, names ...string) error {
	if l.toolErr != nil {
		return l.toolErr
	}
	m, unlock, err := l.lockedManifest(ctx, "power off")
	if err != nil {
		return err
	}
	defer unlock()
	if m == nil {
		return nil
	}
	var nodes []Node
	for _, name := range names {
		if n, ok := m.node(name); ok {
			nodes = append(nodes, n)
		}
	}
	cgs, _ := labCgroups(l.cfg.Prefix)
	for _, n := range nodes {
		l.stopNode(ctx, n, cgs, powerOffTimeout)
	}
	// What did not stop in time is killed, as a power cut would.
	if err := l.kill(ctx, nodes, false); err != nil {
		return fmt.Errorf("power off: %w", err)
	}
	return nil
}
