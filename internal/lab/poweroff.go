package lab

import (
	"context"
	"fmt"
)

// PowerOff stops the named nodes' systems as pulling the power would:
// dockerd, sshd and every process of the node end (SIGTERM, then SIGKILL
// after StopTimeout), while the node keeps its namespace, address and disk
// (the docker data root, swarm state included). Up starts it again, as
// the next power-on. A node that is off already, or was never up, is no
// error.
func (l *Lab) PowerOff(ctx context.Context, names ...string) error {
	unlock, err := l.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	m, err := loadManifest(l.manifestPath())
	if err != nil {
		return fmt.Errorf("power off: %w", err)
	}
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
		l.stopNode(ctx, n, cgs)
	}
	// What did not stop in time is killed, as a power cut would.
	if err := l.kill(ctx, nodes, false); err != nil {
		return fmt.Errorf("power off: %w", err)
	}
	return nil
}
