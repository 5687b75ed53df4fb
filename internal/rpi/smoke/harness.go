package smoke

import (
	"fmt"
	"strings"

	"github.com/fhlab/provision/internal/inventory"
)

// PickPi is the node named name or, when name is empty, the inventory's
// first Pi that boots as prefer (inventory.BootSD, BootNetboot; "" for
// any), else its first Pi.
func PickPi(inv *inventory.Inventory, name, prefer string) (*inventory.Node, error) {
	var first *inventory.Node
	for i := range inv.Nodes {
		n := &inv.Nodes[i]
		switch {
		case name != "":
			if n.Name == name {
				return n, nil
			}
		case n.Kind != inventory.KindPi:
		case prefer == "" || n.Boot == prefer:
			return n, nil
		case first == nil:
			first = n
		}
	}
	switch {
	case first != nil:
		return first, nil
	case name == "":
		return nil, fmt.Errorf("%s has no Raspberry Pi", inv.File)
	}
	return nil, fmt.Errorf("%s has no node %s", inv.File, name)
}

// milestones are the console lines worth a progress line of their own.
var milestones = []string{"Welcome to", "Reached target Multi-User", "Cloud-init v.", "SMOKE ", "Kernel panic", "reboot: Power down"}

// Milestone says whether a console line marks a step of the boot (the
// whole console goes to Config.Console).
func Milestone(line string) bool {
	for _, m := range milestones {
		if strings.Contains(line, m) {
			return true
		}
	}
	return false
}
