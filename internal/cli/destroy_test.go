package cli

import (
	"strings"
	"testing"
)

// TestDestroyUnknownNode: a --node the inventory does not list is refused
// before any node is contacted, naming the node and the inventory.
func TestDestroyUnknownNode(t *testing.T) {
	code, _, errOut := run(t, "destroy", "-i", "../../inventory/example.yaml", "--node", "no-such-node", "--yes")
	if code == 0 || !strings.Contains(errOut, "--node no-such-node: not a node of the inventory ../../inventory/example.yaml") {
		t.Errorf("exit %d, stderr:\n%s", code, errOut)
	}
}

// TestStatusBadOutput: --output takes table or json only.
func TestStatusBadOutput(t *testing.T) {
	code, _, errOut := run(t, "status", "-i", "../../inventory/example.yaml", "--output", "xml")
	if code != 2 || !strings.Contains(errOut, `--output "xml": use table or json`) {
		t.Errorf("exit %d, stderr:\n%s", code, errOut)
	}
}

// TestDestroyStatusHelp: the help teaches the order, the quorum rule and
// the columns.
func TestDestroyStatusHelp(t *testing.T) {
	for args, wants := range map[string][]string{
		"destroy --help": {"--node", "--force", "quorum", "drain", "leave", "--yes", "-target"},
		"status --help":  {"--watch", "--output", "DRIFT", "absent", "netboot"},
	} {
		code, out, _ := run(t, strings.Fields(args)...)
		for _, w := range wants {
			if code != 0 || !strings.Contains(out, w) {
				t.Errorf("provision %s: exit %d, lacks %q", args, code, w)
			}
		}
	}
}
