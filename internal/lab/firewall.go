package lab

import (
	"context"
	"fmt"
	"strings"
)

// A Linux bridge hands its frames to the host's iptables FORWARD chain
// when bridge-nf-call-iptables is on (it is once any dockerd loaded
// br_netfilter). A host running Docker itself has FORWARD policy DROP, so
// nodes could not reach each other. Up then inserts one rule accepting
// traffic between the bridge's ports, marked with the lab's prefix; Down
// deletes it. Nothing is changed on a host whose FORWARD policy accepts.

// forwardRule is the rule's match and target (after the chain name).
func (l *Lab) forwardRule() []string {
	return []string{"-i", l.bridge, "-o", l.bridge, "-m", "comment", "--comment", "provision-lab " + l.cfg.Prefix, "-j", "ACCEPT"}
}

// ensureForward inserts the rule when the FORWARD policy is not ACCEPT;
// it reports whether the rule is there because of this lab.
func (l *Lab) ensureForward(ctx context.Context) (bool, error) {
	out, err := run(ctx, l.tools.iptables, "-w", "-S", "FORWARD")
	if err != nil {
		return false, fmt.Errorf("read host firewall: %w", err)
	}
	if strings.Contains(out, "-P FORWARD ACCEPT") {
		return false, nil
	}
	if _, err := run(ctx, l.tools.iptables, append([]string{"-w", "-C", "FORWARD"}, l.forwardRule()...)...); err == nil {
		return true, nil
	}
	if _, err := run(ctx, l.tools.iptables, append([]string{"-w", "-I", "FORWARD"}, l.forwardRule()...)...); err != nil {
		return false, fmt.Errorf("let bridge %s forward past the host's FORWARD DROP policy: %w", l.bridge, err)
	}
	l.log.Debug("host FORWARD policy drops: inserted an ACCEPT rule for the lab bridge", "bridge", l.bridge)
	return true, nil
}

// removeForward deletes every copy of the lab's rule.
func (l *Lab) removeForward(ctx context.Context) error {
	for i := 0; i < 10; i++ {
		if _, err := run(ctx, l.tools.iptables, append([]string{"-w", "-C", "FORWARD"}, l.forwardRule()...)...); err != nil {
			return nil
		}
		if _, err := run(ctx, l.tools.iptables, append([]string{"-w", "-D", "FORWARD"}, l.forwardRule()...)...); err != nil {
			return fmt.Errorf("remove the lab's FORWARD rule: %w", err)
		}
	}
	return nil
}
